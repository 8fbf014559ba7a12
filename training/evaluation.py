"""Run agents on the same seeded episodes and score them on the one objective.

An episode is identified by ``(scenario, seed)``; its seed fixes the scenario draw (traffic,
rates, effect sizes) and the simulation's randomness, so every agent faces the same canary. The
statistics follow ``docs``/the issue's JSON contract; see :func:`summarise`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from decision_service.actions import HOLD, PROMOTE
from decision_service.decision import COUNT_INDEX, first_count_without_promote
from decision_service.features import MEASUREMENTS_SCALE
from decision_service.guardrails import GuardrailConfig
from decision_service.policy import OnnxPolicy
from scenarios import Scenario
from training.baselines import Agent, make_baseline
from training.env import CanaryRolloutEnv, EnvConfig

POLICY = "policy"
STAT_KEYS = (
    "bad_promotion_rate",
    "healthy_abort_rate",
    "blast_radius_mean",
    "decisions_to_promote_mean",
    "pause_rate",
    "objective_mean",
)


def episode_seed(scenario: str, index: int, salt: str = "eval") -> int:
    """The seed of episode ``index`` of ``scenario`` (stable across runs and agents)."""
    return zlib.crc32(f"{salt}:{scenario}".encode()) * 100_000 + index


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    scenario: str
    truth: str
    seed: int
    agent: str
    outcome: str
    blast_radius: int
    decisions: int
    objective: float
    holds: int


class PolicyAgent:
    """The shipped policy as the service runs it: the ONNX Q-network's greedy action, and a
    ``promote`` only if the policy also promotes at every larger step count (the service's
    ``step_count`` rule, :mod:`decision_service.decision`); the other guardrails run in the env.
    """

    name: ClassVar[str] = POLICY

    def __init__(self, model_path: str | Path) -> None:
        self._policy = OnnxPolicy(model_path)

    def reset(self) -> None:
        return None

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        return service_action(self._policy, observation)


def service_action(policy: OnnxPolicy, observation: np.ndarray) -> int:
    """The action the decision service takes for ``observation`` before the guardrails that
    read the metrics: the greedy one, except a promote the policy would not repeat at a larger
    step count is a hold."""
    action = int(np.argmax(policy.q_values(observation)[0]))
    if action == PROMOTE:
        taken = round(float(observation[COUNT_INDEX]) * MEASUREMENTS_SCALE)
        if first_count_without_promote(policy, observation, taken) is not None:
            return HOLD
    return action


def run_episode(agent: Agent, scenario: Scenario, seed: int, config: EnvConfig) -> EpisodeRecord:
    env = CanaryRolloutEnv([scenario], config)
    agent.reset()
    observation, info = env.reset(seed=seed, options={"allow_terminal": True})
    while "outcome" not in info:
        observation, _, _, _, info = env.step(agent.act(env, observation))
    return EpisodeRecord(
        scenario=scenario.name,
        truth=scenario.truth,
        seed=seed,
        agent=agent.name,
        outcome=info["outcome"],
        blast_radius=int(info["blast_radius"]),
        decisions=int(info["decisions"]),
        objective=float(info["objective"]),
        holds=int(info["holds"]),
    )


@dataclass(frozen=True)
class AgentSpec:
    """How to build an agent in a worker process (picklable)."""

    name: str
    params: dict[str, Any] | None = None
    model_path: str | None = None
    guardrails: GuardrailConfig | None = None

    def build(self) -> Agent:
        if self.name == POLICY:
            assert self.model_path is not None
            return PolicyAgent(self.model_path)
        return make_baseline(self.name, self.params)


def _run_batch(
    args: tuple[AgentSpec, Scenario, list[int], EnvConfig],
) -> list[EpisodeRecord]:
    spec, scenario, seeds, config = args
    agent = spec.build()
    env_config = EnvConfig(
        weights=config.weights,
        patience=config.patience,
        interval_seconds=config.interval_seconds,
        slo_latency_ms=config.slo_latency_ms,
        guardrails=spec.guardrails,
    )
    return [run_episode(agent, scenario, seed, env_config) for seed in seeds]


def run_agents(
    specs: Sequence[AgentSpec],
    scenarios: Sequence[Scenario],
    episodes: int,
    config: EnvConfig,
    *,
    salt: str = "eval",
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[EpisodeRecord]:
    """Every agent on ``episodes`` seeded episodes of every scenario (same seeds for all)."""
    chunk = 250
    tasks = []
    for scenario in scenarios:
        seeds = [episode_seed(scenario.name, i, salt) for i in range(episodes)]
        for spec in specs:
            for start in range(0, episodes, chunk):
                tasks.append((spec, scenario, seeds[start : start + chunk], config))
    records: list[EpisodeRecord] = []
    if workers <= 1:
        for i, task in enumerate(tasks):
            records.extend(_run_batch(task))
            if progress:
                progress(i + 1, len(tasks))
        return records
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, batch in enumerate(pool.map(_run_batch, tasks)):
            records.extend(batch)
            if progress:
                progress(i + 1, len(tasks))
    return records


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return float(np.mean(items)) if items else None


def stats(records: Sequence[EpisodeRecord]) -> dict[str, float | None]:
    """The contract's statistics over a set of episodes of one agent.

    Rates are shares of the *relevant* episodes: bad promotions among bad canaries, aborts
    among good ones (over one scenario, all episodes share a truth, so the other rate is 0).
    Blast radius is the mean over bad canaries; decisions to promote the mean over promoted
    good canaries (``None`` when none was promoted).
    """
    bad = [r for r in records if r.truth == "bad"]
    good = [r for r in records if r.truth == "good"]
    promoted_good = [r.decisions for r in good if r.outcome == "promoted"]
    return {
        "bad_promotion_rate": (sum(r.outcome == "promoted" for r in bad) / len(bad))
        if bad
        else 0.0,
        "healthy_abort_rate": (sum(r.outcome == "aborted" for r in good) / len(good))
        if good
        else 0.0,
        "blast_radius_mean": _mean(r.blast_radius for r in bad) or 0.0,
        "decisions_to_promote_mean": _mean(promoted_good),
        "pause_rate": sum(r.outcome == "paused" for r in records) / len(records),
        "objective_mean": float(np.mean([r.objective for r in records])),
    }


def paired_difference(records: Sequence[EpisodeRecord], agent: str, other: str) -> dict[str, float]:
    """Mean of ``objective(agent) - objective(other)`` over the same episodes, 95 % CI."""
    mine = {(r.scenario, r.seed): r.objective for r in records if r.agent == agent}
    theirs = {(r.scenario, r.seed): r.objective for r in records if r.agent == other}
    keys = sorted(mine.keys() & theirs.keys())
    diffs = np.array([mine[k] - theirs[k] for k in keys])
    mean = float(diffs.mean())
    half = 1.96 * float(diffs.std(ddof=1)) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(diffs)}


def summarise(records: Sequence[EpisodeRecord], episodes: int) -> dict[str, Any]:
    """The report: the contract's shape, plus hold rates and paired comparisons."""
    agents = list(dict.fromkeys(r.agent for r in records))
    scenario_names = list(dict.fromkeys(r.scenario for r in records))
    report: dict[str, Any] = {"episodes_per_scenario": episodes, "scenarios": {}, "overall": {}}
    holds: dict[str, dict[str, float]] = {}
    for name in scenario_names:
        rows = [r for r in records if r.scenario == name]
        entry: dict[str, Any] = {"truth": rows[0].truth, "agents": {}}
        for agent in agents:
            mine = [r for r in rows if r.agent == agent]
            entry["agents"][agent] = stats(mine)
            holds.setdefault(name, {})[agent] = sum(r.holds for r in mine) / max(
                1, sum(r.decisions for r in mine)
            )
        report["scenarios"][name] = entry
    for agent in agents:
        report["overall"][agent] = stats([r for r in records if r.agent == agent])
    report["hold_rate"] = holds
    if POLICY in agents:
        report["paired_objective_vs_policy"] = {
            other: paired_difference(records, POLICY, other) for other in agents if other != POLICY
        }
    return report


def acceptance(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance points, computed from a report (``None`` if no policy ran)."""
    overall = report["overall"]
    if POLICY not in overall:
        return {}
    baselines = {k: v for k, v in overall.items() if k != POLICY}
    if not baselines:
        return {}
    best = max(baselines, key=lambda k: baselines[k]["objective_mean"])
    mine, theirs = overall[POLICY], baselines[best]
    paired = report["paired_objective_vs_policy"]
    beats_all = all(paired[b]["ci_low"] > 0 for b in baselines)
    faster = None
    if mine["decisions_to_promote_mean"] and theirs["decisions_to_promote_mean"]:
        faster = 1.0 - mine["decisions_to_promote_mean"] / theirs["decisions_to_promote_mean"]
    smaller_blast = (
        1.0 - mine["blast_radius_mean"] / theirs["blast_radius_mean"]
        if theirs["blast_radius_mean"]
        else None
    )
    per = report["scenarios"]

    def rate(name: str, key: str) -> float | None:
        return per[name]["agents"][POLICY][key] if name in per else None

    checks = {
        "best_baseline": best,
        "beats_every_baseline_ci": beats_all,
        "bad_promotion_excess_pp": 100
        * (mine["bad_promotion_rate"] - theirs["bad_promotion_rate"]),
        "healthy_abort_excess_pp": 100
        * (mine["healthy_abort_rate"] - theirs["healthy_abort_rate"]),
        "fewer_decisions_to_promote": faster,
        "less_blast_radius": smaller_blast,
        "buggy_promoted": rate("buggy", "bad_promotion_rate"),
        "healthy_aborted": rate("healthy", "healthy_abort_rate"),
        "flaky_aborted": rate("flaky", "healthy_abort_rate"),
        "noisy_neighbour_aborted": rate("noisy_neighbour", "healthy_abort_rate"),
    }
    checks["point_1"] = beats_all
    checks["point_2"] = (
        checks["bad_promotion_excess_pp"] <= 1.0
        and checks["healthy_abort_excess_pp"] <= 2.0
        and ((faster or 0) >= 0.30 or (smaller_blast or 0) >= 0.30)
    )
    checks["point_3"] = (
        (checks["buggy_promoted"] or 0) <= 0.01
        and (checks["healthy_aborted"] or 0) <= 0.05
        and (checks["flaky_aborted"] or 0) <= 0.10
        and (checks["noisy_neighbour_aborted"] or 0) <= 0.10
    )
    return checks


#: Columns of the per-episode CSV (``--episodes-csv``), in order: a public contract.
EPISODE_COLUMNS = (
    "scenario",
    "truth",
    "seed",
    "agent",
    "outcome",
    "blast_radius",
    "decisions",
    "objective",
)


def records_as_rows(records: Iterable[EpisodeRecord]) -> Iterable[dict[str, Any]]:
    for record in records:
        row = asdict(record)
        yield {c: row[c] for c in EPISODE_COLUMNS}
