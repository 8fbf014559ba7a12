"""Run agents on the same seeded episodes: every agent faces the same canaries.

An episode is identified by ``(scenario, seed)``; its seed fixes the scenario draw (traffic,
rates, effect sizes) and the simulation's randomness, so every agent faces the same canary.
:func:`run_agents` returns one :class:`EpisodeRecord` per agent and episode (the rows of the
per-episode CSV, :data:`EPISODE_COLUMNS`); :mod:`training.report` turns them into statistics.

The shipped policy runs as the service runs it: the environment hands it to the one decision
pipeline (:meth:`training.env.CanaryRolloutEnv.step_policy`), guardrails and step-count rule
included. The classical baselines choose an action and the pipeline applies no guardrail.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import OnnxPolicy
from scenarios import Scenario
from training.baselines import Agent, make_baseline
from training.env import CanaryRolloutEnv, EnvConfig

POLICY = "policy"


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
    """The shipped policy: the environment decides with it through the pipeline, as the
    service does (:meth:`~training.env.CanaryRolloutEnv.step_policy`)."""

    name: ClassVar[str] = POLICY

    def __init__(self, model_path: str | Path) -> None:
        self.policy = OnnxPolicy(model_path)

    def reset(self) -> None:
        return None

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        """The policy's proposal (what the pipeline starts from)."""
        return int(np.argmax(self.policy.q_values(observation)[0]))


def run_episode(agent: Agent, scenario: Scenario, seed: int, config: EnvConfig) -> EpisodeRecord:
    env = CanaryRolloutEnv([scenario], config)
    agent.reset()
    observation, info = env.reset(seed=seed, options={"allow_terminal": True})
    while "outcome" not in info:
        if isinstance(agent, PolicyAgent):
            observation, _, _, _, info = env.step_policy(agent.policy)
        else:
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
