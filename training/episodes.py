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

import gc
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import OnnxPolicy
from decision_service.shield import ShieldConfig
from scenarios import Scenario
from training.baselines import Agent, make_baseline
from training.env import READS, CanaryRolloutEnv, EnvConfig, Reads, ScenarioSource
from training.seeds import episode_seed
from training.stress import STRESS_SALT, family_source

POLICY = "policy"


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    scenario: str
    #: This episode's truth, computed from its draw against the tolerance.
    truth: str
    seed: int
    agent: str
    outcome: str
    blast_radius: int
    decisions: int
    objective: float
    holds: int
    #: ``library``, ``holdout`` or the stress family.
    family: str = "library"
    #: The scenario file's ``truth:`` (what its author meant).
    intent: str = ""
    #: ``equal_or_better``, ``within``, ``between`` or ``beyond_zone``
    #: (:func:`scenarios.truth.episode_class`): what the shield's guarantees are about.
    zone: str = "within"


@dataclass(frozen=True)
class Suite:
    """A set of seeded episodes: one scenario file, or a stress family (a fresh scenario drawn
    from each episode's seed). Picklable, so worker processes build their own sources."""

    name: str
    family: str
    scenario: Scenario | None = None
    stress_family: str | None = None
    salt: str = "eval"

    @classmethod
    def of(cls, scenario: Scenario, family: str = "library") -> Suite:
        return cls(scenario.name, family, scenario=scenario)

    @classmethod
    def stress(cls, family: str) -> Suite:
        return cls(f"stress:{family}", family, stress_family=family, salt=STRESS_SALT)

    def seed(self, index: int) -> int:
        return episode_seed(self.name, index, self.salt)

    def source(self) -> ScenarioSource | list[Scenario]:
        if self.scenario is not None:
            return [self.scenario]
        assert self.stress_family is not None
        return family_source(self.stress_family)


class PolicyAgent:
    """The shipped policy: the environment decides with it through the pipeline, as the
    service does (:meth:`~training.env.CanaryRolloutEnv.step_policy`)."""

    name: ClassVar[str] = POLICY
    reads: ClassVar[Reads] = "observation"

    def __init__(self, model_path: str | Path) -> None:
        self.policy = OnnxPolicy(model_path)

    def reset(self) -> None:
        return None

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        """The policy's proposal (what the pipeline starts from)."""
        return int(np.argmax(self.policy.q_values(observation)[0]))


def run_episode(
    agent: Agent, suite: Suite | Scenario, seed: int, config: EnvConfig
) -> EpisodeRecord:
    return run_episode_agents([(agent, config)], suite, seed)[0]


def run_episode_agents(
    agents: Sequence[tuple[Agent, EnvConfig]], suite: Suite | Scenario, seed: int
) -> list[EpisodeRecord]:
    """Each agent, with its config, on the episode ``seed`` of ``suite``: one record each.

    The episode is drawn and measured up to the first decision once, by the agent that reads
    most (:data:`~training.env.READS`); every other agent then goes on from its own copy of
    that start (:meth:`~training.env.CanaryRolloutEnv.forks`), exactly as if it had reset
    the environment itself."""
    suite = suite if isinstance(suite, Suite) else Suite.of(suite)
    lead = max(range(len(agents)), key=lambda i: READS.index(agents[i][1].reads))
    env = CanaryRolloutEnv(suite.source(), agents[lead][1])
    observation, info = env.reset(seed=seed, options={"allow_terminal": True})
    copies = iter(env.forks([config for i, (_, config) in enumerate(agents) if i != lead]))
    envs = [env if i == lead else next(copies) for i in range(len(agents))]
    return [
        _finish(agent, suite, seed, fork, observation, info)
        for (agent, _), fork in zip(agents, envs, strict=True)
    ]


def _finish(
    agent: Agent,
    suite: Suite,
    seed: int,
    env: CanaryRolloutEnv,
    observation: np.ndarray,
    info: dict[str, Any],
) -> EpisodeRecord:
    """Run ``agent`` from the episode's start (``env`` just reset) to its outcome."""
    agent.reset()
    while "outcome" not in info:
        if isinstance(agent, PolicyAgent):
            observation, _, _, _, info = env.step_policy(agent.policy)
        else:
            observation, _, _, _, info = env.step(agent.act(env, observation))
    return EpisodeRecord(
        scenario=suite.name,
        truth=info["truth"],
        seed=seed,
        agent=agent.name,
        outcome=info["outcome"],
        blast_radius=int(info["blast_radius"]),
        decisions=int(info["decisions"]),
        objective=float(info["objective"]),
        holds=int(info["holds"]),
        family=suite.family,
        intent=info["intent"] if suite.scenario is not None else "",
        zone=info["zone"],
    )


@dataclass(frozen=True)
class AgentSpec:
    """How to build an agent in a worker process (picklable)."""

    name: str
    params: dict[str, Any] | None = None
    model_path: str | None = None
    guardrails: GuardrailConfig | None = None
    shield: ShieldConfig | None = None

    def build(self) -> Agent:
        if self.name == POLICY:
            assert self.model_path is not None
            return PolicyAgent(self.model_path)
        return make_baseline(self.name, self.params)


def _run_batch(
    args: tuple[Sequence[AgentSpec], Suite, list[int], EnvConfig],
) -> list[list[EpisodeRecord]]:
    """Every agent on the ``seeds`` of ``suite``: one list of records per agent."""
    specs, suite, seeds, config = args
    built = [spec.build() for spec in specs]
    agents = [
        (agent, replace(config, guardrails=spec.guardrails, shield=spec.shield, reads=agent.reads))
        for agent, spec in zip(built, specs, strict=True)
    ]
    per_agent: list[list[EpisodeRecord]] = [[] for _ in specs]
    for seed in seeds:
        for records, record in zip(per_agent, run_episode_agents(agents, suite, seed), strict=True):
            records.append(record)
    return per_agent


def _worker_setup() -> None:
    """An evaluation worker keeps what it imported for good and makes many short-lived
    objects: the collector leaves the former alone (``gc.freeze``) and runs less often on the
    latter (about 2 % of a worker's time at Python's default thresholds, none here)."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def run_agents(
    specs: Sequence[AgentSpec],
    suites: Sequence[Suite | Scenario],
    episodes: int,
    config: EnvConfig,
    *,
    salt: str = "eval",
    stress_episodes: int | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[EpisodeRecord]:
    """Every agent on ``episodes`` seeded episodes of every suite (same seeds for all);
    ``stress_episodes`` (default ``episodes``) for stress families.

    A bare scenario is a library suite whose seeds use ``salt``. The records come suite by
    suite, agent by agent (in ``specs`` order), seed by seed."""
    chunk = 250
    tasks = []
    per_suite = []  # how many tasks each suite's seeds made
    for item in suites:
        suite = item if isinstance(item, Suite) else replace(Suite.of(item), salt=salt)
        count = episodes
        if suite.stress_family is not None and stress_episodes is not None:
            count = stress_episodes
        seeds = [suite.seed(i) for i in range(count)]
        starts = range(0, count, chunk)
        tasks += [(specs, suite, seeds[start : start + chunk], config) for start in starts]
        per_suite.append(len(starts))
    batches: list[list[list[EpisodeRecord]]] = []
    if workers <= 1:
        for i, task in enumerate(tasks):
            batches.append(_run_batch(task))
            if progress:
                progress(i + 1, len(tasks))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_worker_setup) as pool:
            for i, batch in enumerate(pool.map(_run_batch, tasks)):
                batches.append(batch)
                if progress:
                    progress(i + 1, len(tasks))
    records: list[EpisodeRecord] = []
    done = iter(batches)
    for count in per_suite:
        suite_batches = [next(done) for _ in range(count)]
        for agent in range(len(specs)):
            for batch in suite_batches:
                records.extend(batch[agent])
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
    "family",
    "zone",
)


def records_as_rows(records: Iterable[EpisodeRecord]) -> Iterable[dict[str, Any]]:
    for record in records:
        row = asdict(record)
        yield {c: row[c] for c in EPISODE_COLUMNS}
