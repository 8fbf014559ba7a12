"""A gymnasium environment of one canary rollout, decided one analysis interval at a time.

## Description

Argo Rollouts moves traffic to a canary through a schedule of weights (default 5, 10, 20, 40,
60, 80, 100 %). At every step it measures the canary for one analysis interval and asks for a
decision. The agent answers as the decision service would: ``hold`` (measure again at this
weight), ``promote`` (next step; past the last step the rollout completes) or ``abort`` (all
traffic back to stable). The world is a scenario (:mod:`scenarios`) drawn
per episode; traffic and metrics are sampled by :mod:`training.simulator`. Whether the canary is
good or bad is computed per episode from the draw, against the configured tolerance
(:func:`scenarios.truth.episode_truth`); the agent never sees it.

## Action space

``Discrete(3)``: the API's answers, in :data:`decision_service.actions.ACTION_NAMES` order.

| action | name    | effect                                                                 |
|--------|---------|------------------------------------------------------------------------|
| 0      | hold    | one more interval at this weight (Argo: Inconclusive measurement)      |
| 1      | promote | next weight; at the last step the rollout completes (promoted)         |
| 2      | abort   | rollback; the episode ends (aborted)                                    |

## Observation space

``Box(28,)``: :func:`decision_service.features.build_observation` of the snapshot after the
last interval; its docstring has the table. Bounds from ``FEATURE_LOW``/``FEATURE_HIGH``.

## Missing data

The live service answers ``hold`` without consulting the policy when a metric is missing (the
canary served no request in the window). The environment does the same: such an interval is
an automatic hold (it costs time and patience like any other), and the agent is asked only
when an observation can be built.

## The decision

Every action goes through :func:`decision_service.pipeline.decide`, the function the service
answers with: the agent's action is the proposal (:class:`~decision_service.pipeline.FixedAction`),
then, with ``guardrails`` set, the guardrails. :meth:`CanaryRolloutEnv.step_policy` instead
hands the pipeline a policy (the shipped ONNX policy in the evaluation), so the step-count rule
that needs the policy's Q-values at other counts runs too: the episode is decided exactly as
the service would decide it.

## Rewards — the one objective every agent is scored on

Per interval (measurement): ``-COST_PER_DECISION`` (time), and for a bad canary
``-BLAST_COST × canary requests / expected requests per interval`` (requests served by a bad
canary; 1.0 means one interval of all traffic). At the end:

| outcome                      | good canary            | bad canary             |
|------------------------------|------------------------|------------------------|
| promoted past the last step  | ``+REWARD_PROMOTE_GOOD`` | ``-COST_BAD_PROMOTION`` |
| aborted                      | ``-COST_FALSE_ABORT``  | ``+REWARD_ABORT_BAD``  |
| paused (patience exhausted)  | ``-COST_PAUSE``        | ``-COST_PAUSE``        |

A bad promotion costs most, a false abort next; a pause (a human must look) costs less than
either but more than holding a few intervals: a pause with a clear reason beats a guess.
``EnvConfig.pause_cost`` replaces ``COST_PAUSE`` for training only (the shipped recipe trains
with 2, see ``training/configs/dqn.yaml``); every evaluation, tuning and report uses the
objective above. The episode objective, ``info["objective"]`` at
the end, is the sum of all these, including the costs of the intervals measured before the
first decision (identical in expectation for every agent).

## Starting state

Weight = the first of the schedule; one interval is simulated before the first observation.

## Episode end

*Termination*: abort, promotion past the last step, or a pause — ``patience`` measurements at
one step all answered ``hold`` (Argo's ``count``/``inconclusiveLimit``: the rollout pauses for a
human, counted as the end). There is no truncation: patience bounds every episode at
``len(weights) × patience`` intervals.

``info`` carries ``decision`` (after guardrails) and ``proposed`` and, at the end, ``outcome``,
``truth`` (computed for this draw), ``intent`` (the scenario file's ``truth:``), ``scenario``,
``decisions`` (measurements), ``holds`` (of them, answered hold),
``blast_radius`` (requests served by a bad canary) and
``objective``. The properties ``snapshot`` (the metrics behind the observation) and
``recent_intervals`` (the intervals simulated since the last decision, for baselines that
judge raw samples) give the rest.

## What is computed for the agent

``EnvConfig.reads`` says what the agent reads, and nothing else is computed for it: the
policy reads the observation with the shield's verdict in it (``"observation"``, the
default); the shield alone and ``anytime_valid`` read the shield's evidence themselves
(``"evidence"``: the snapshot carries it, the observation has no verdict); the classical
judges read the snapshot's metrics and the raw intervals (``"metrics"``). The world, the
evidence accumulated and the no-data holds are the same at every level (the observation is
built at every level: that is the missing-data check); an evaluation then spends no time on
verdicts that no one reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Final, Literal

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from decision_service.actions import ACTION_NAMES, Action
from decision_service.features import FEATURE_HIGH, FEATURE_LOW, build_observation
from decision_service.guardrails import GuardrailConfig
from decision_service.pipeline import (
    DecisionConfig,
    Evaluation,
    FixedAction,
    Policy,
    decide,
    observe,
)
from decision_service.shield import (
    ShieldConfig,
    ShieldVerdict,
    VersionWindow,
    Windows,
    new_evidence,
)
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.tolerance import DEFAULT_TOLERANCE, Tolerance
from scenarios import Scenario
from scenarios.truth import DEFAULT_HORIZON_MINUTES, Schedule, episode_class, episode_truth
from training.simulator import Interval, RolloutSimulator, VersionInterval, shield_window

DEFAULT_WEIGHTS: Final = (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0)

#: Windows of stable alone before the canary starts (its baseline, as Prometheus has it).
BASELINE_WINDOWS: Final = 10

COST_PER_DECISION: Final = 0.02
BLAST_COST: Final = 2.0
REWARD_PROMOTE_GOOD: Final = 1.0
REWARD_ABORT_BAD: Final = 1.0
COST_BAD_PROMOTION: Final = 10.0
COST_FALSE_ABORT: Final = 5.0
#: What a pause costs in the objective every agent is scored on: a person must look, which is
#: still better than a guess (a false abort costs 5, a bad promotion 10). Training may price it
#: higher (``EnvConfig.pause_cost``, reward shaping; see :class:`EnvConfig`).
COST_PAUSE: Final = 1.0

#: What an agent reads (``EnvConfig.reads``).
Reads = Literal["observation", "evidence", "metrics"]
#: The levels of :data:`Reads`, from least to most.
READS: Final[tuple[Reads, ...]] = ("metrics", "evidence", "observation")

#: Draws the scenario of the next episode from the environment's generator.
ScenarioSource = Callable[[np.random.Generator], Scenario]


@dataclass(frozen=True)
class EnvConfig:
    """Rollout shape and timing (the Rollout's steps and the AnalysisTemplate's metric)."""

    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    patience: int = 10
    interval_seconds: float = 30.0
    slo_latency_ms: float = 200.0
    guardrails: GuardrailConfig | None = None
    #: What "not worse than stable" means: the truth every episode is scored on.
    tolerance: Tolerance = DEFAULT_TOLERANCE
    #: Minutes after full promotion over which the truth judges the canary.
    truth_horizon_minutes: float = DEFAULT_HORIZON_MINUTES
    #: The safety shield in the decision pipeline (None: none). The evidence it reads is
    #: accumulated either way (agents such as the shield alone read it).
    shield: ShieldConfig | None = None
    #: Split traffic by Argo's pod counts for this many replicas (no traffic routing), not by
    #: the step's weight: the service then sees the measured share, as on such a cluster.
    replicas: int | None = None
    #: The pause's cost in the reward. The objective every agent is scored on (evaluation,
    #: tuning, reports) is ``COST_PAUSE``; a training run may price a pause higher (reward
    #: shaping). Priced at 1 in training, the DQN learned to pause healthy canaries the shield
    #: let it complete (v10 completed 14 % of ``healthy`` and none at 200 req/s, where the
    #: shield's own rule completes most); at 2 (the shipped recipe) it completes them; at 3 it
    #: also rolled back canaries with a cold start (``models/evaluation/NOTES.md``).
    pause_cost: float = COST_PAUSE
    #: What the agent reads (see "What is computed for the agent" above): the shield's
    #: verdict is computed for ``"observation"`` only, its evidence summary for that and
    #: ``"evidence"``. A shield in the pipeline needs the verdict: only ``"observation"``.
    reads: Reads = "observation"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weights or any(not 0 < w <= 100 for w in self.weights):
            raise ValueError(f"weights must be within (0, 100], got {self.weights}")
        if list(self.weights) != sorted(self.weights):
            raise ValueError("weights must increase")
        if self.patience < 1 or self.interval_seconds <= 0 or self.slo_latency_ms <= 0:
            raise ValueError("patience, interval_seconds and slo_latency_ms must be positive")
        if self.reads not in READS:
            raise ValueError(f"reads must be one of {READS}, got {self.reads!r}")
        if self.shield is not None and self.reads != "observation":
            raise ValueError("a shield in the pipeline needs its verdict: reads='observation'")

    @property
    def schedule(self) -> Schedule:
        """The nominal rollout the truth is computed for."""
        return Schedule(self.weights, self.interval_seconds, self.truth_horizon_minutes)

    @cached_property
    def decision(self) -> DecisionConfig:
        """The decision pipeline's configuration (the service's, for the same settings)."""
        return DecisionConfig(
            slo_latency_ms=self.slo_latency_ms,
            guardrails=self.guardrails,
            tolerance=self.tolerance,
            shield=self.shield,
            count=self.patience,
            window_seconds=self.interval_seconds,
        )


def library_source(scenarios: Sequence[Scenario]) -> ScenarioSource:
    """Draw uniformly from a fixed list of scenarios."""
    if not scenarios:
        raise ValueError("no scenarios")
    items = list(scenarios)

    def source(rng: np.random.Generator) -> Scenario:
        return items[int(rng.integers(len(items)))]

    return source


class CanaryRolloutEnv(gym.Env[npt.NDArray[np.float32], int]):
    """One canary rollout (see the module docstring for the full specification)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium convention)

    def __init__(
        self, source: ScenarioSource | Sequence[Scenario], config: EnvConfig | None = None
    ):
        super().__init__()
        self.config = config or EnvConfig()
        self._source = source if callable(source) else library_source(source)
        # gymnasium types Env.action_space as Space[int]; Discrete samples numpy integers
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))  # type: ignore[assignment]
        self.observation_space = gym.spaces.Box(FEATURE_LOW, FEATURE_HIGH, dtype=np.float32)
        self._sim: RolloutSimulator | None = None
        self._truth_bad = False
        self._zone = "within"
        self._step_index = 0
        self._measurements = 0
        self._decisions = 0
        self._holds = 0
        self._blast = 0
        self._objective = 0.0
        self._snapshot: MetricsSnapshot | None = None
        self._intervals: list[Interval] = []
        self._last_evaluation: Evaluation | None = None
        self._observed: tuple[npt.NDArray[np.float32], ShieldVerdict | None] | None = None
        self._shield_config = self.config.shield or ShieldConfig()
        self._baseline: list[VersionWindow] = []
        self._life: list[tuple[VersionWindow, VersionWindow]] = []
        self._baseline_intervals: list[VersionInterval] = []
        self._history: list[Interval] = []
        self._evidence = new_evidence(self.config.tolerance, self._shield_config)

    # -- episode mechanics ---------------------------------------------------------------

    @property
    def weight(self) -> float:
        return self.config.weights[self._step_index]

    @property
    def windows(self) -> Windows:
        """The shield's windows so far, as the service reads them from Prometheus."""
        return Windows(tuple(self._baseline), tuple(self._life))

    @property
    def baseline_intervals(self) -> list[VersionInterval]:
        """Stable's intervals before the canary started, with their per-scrape counts (what
        :mod:`training.openmetrics` writes as stable's history)."""
        return self._baseline_intervals

    @property
    def history(self) -> list[Interval]:
        """Every interval of the episode so far, in order (``recent_intervals`` holds only
        those since the last decision)."""
        return self._history

    @property
    def measurements_at_step(self) -> int:
        """Measurements already taken at the current step."""
        return self._measurements

    @property
    def observed_verdict(self) -> tuple[ShieldConfig, ShieldVerdict] | None:
        """The shield's settings and verdict behind the current observation (the features'),
        if it had evidence."""
        if self._observed is None or self._observed[1] is None:
            return None
        return self._shield_config, self._observed[1]

    @property
    def snapshot(self) -> MetricsSnapshot | None:
        """The metrics behind the current observation."""
        return self._snapshot

    @property
    def recent_intervals(self) -> list[Interval]:
        """The intervals simulated since the last decision (raw samples for baselines)."""
        return self._intervals

    @property
    def scenario(self) -> Scenario:
        assert self._sim is not None
        return self._sim.scenario

    def _measure(self) -> tuple[float, npt.NDArray[np.float32] | None, str | None]:
        """Simulate intervals until an observation exists or patience runs out.

        Returns the interval costs, the observation (``None`` if the rollout paused) and the
        outcome (``"paused"`` or ``None``).
        """
        assert self._sim is not None
        cost = 0.0
        self._intervals = []
        while True:
            interval = self._sim.next_interval(self.weight)
            self._intervals.append(interval)
            self._history.append(interval)
            self._decisions += 1
            cost -= COST_PER_DECISION
            if self._truth_bad:
                self._blast += interval.canary.requests
                cost -= BLAST_COST * interval.canary.requests / max(interval.expected_requests, 1.0)
            pair = (shield_window(interval.canary), shield_window(interval.stable))
            self._life.append(pair)
            self._evidence.add(*pair)
            reads = self.config.reads
            snapshot = self._sim.snapshot(None if reads == "metrics" else self._evidence.summary())
            self._snapshot = snapshot
            try:
                if reads == "observation":
                    self._observed = observe(snapshot, self._measurements, self.config.decision)
                else:
                    # observe() without the verdict no one reads (it cannot raise, the
                    # observation's checks can: they are the no-data hold)
                    slo = self.config.slo_latency_ms
                    self._observed = (build_observation(snapshot, self._measurements, slo), None)
                observation = self._observed[0]
            except MissingMetricError:
                # The service's `no_data` answer: an automatic hold.
                self._measurements += 1
                self._holds += 1
                if self._measurements >= self.config.patience:
                    return cost - self.config.pause_cost, None, "paused"
                continue
            return cost, np.clip(observation, FEATURE_LOW, FEATURE_HIGH), None

    def _final_info(self, outcome: str) -> dict[str, Any]:
        return {
            "outcome": outcome,
            "truth": "bad" if self._truth_bad else "good",
            "intent": self.scenario.truth,
            "zone": self._zone,
            "scenario": self.scenario.name,
            "decisions": self._decisions,
            "holds": self._holds,
            "blast_radius": self._blast,
            "objective": self._objective,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        allow_terminal = bool(options and options.get("allow_terminal"))
        for _ in range(100):
            scenario = self._source(self.np_random)
            self._sim = RolloutSimulator(
                scenario,
                self.np_random,
                self.config.interval_seconds,
                replicas=self.config.replicas,
            )
            self._evidence = new_evidence(self.config.tolerance, self._shield_config)
            self._baseline_intervals = self._sim.baseline_windows(BASELINE_WINDOWS)
            self._baseline = [shield_window(w) for w in self._baseline_intervals]
            self._life = []
            self._history = []
            self._observed = None
            for window in self._baseline:
                self._evidence.add_baseline(window)
            truth = episode_truth(self._sim.params, self.config.tolerance, self.config.schedule)
            self._truth_bad = truth == "bad"
            self._zone = episode_class(
                self._sim.params,
                self.config.tolerance,
                self._shield_config.indifference,
                self.config.schedule,
            )
            self._step_index = 0
            self._measurements = 0
            self._decisions = 0
            self._holds = 0
            self._blast = 0
            cost, observation, outcome = self._measure()
            self._objective = cost
            if observation is not None:
                return observation, {}
            if allow_terminal:
                # Paused before the canary ever produced an observation (almost no traffic).
                assert outcome is not None
                final = np.zeros(len(FEATURE_LOW), dtype=np.float32)
                return final, self._final_info(outcome)
            # Training: the agent could not have acted; draw the next episode instead.
        raise RuntimeError("100 draws in a row paused before any observation: no canary traffic")

    def forks(self, configs: Sequence[EnvConfig]) -> list[CanaryRolloutEnv]:
        """Copies of this environment as it stands (just after :meth:`reset`), one per config.

        Each copy carries on exactly as this environment would: the same draw, the same
        measurements so far and the same generator state. Evaluating several agents on one
        seeded episode then draws and measures its start once, not once per agent (a reset is
        about a fifth of an evaluation's time). A copy's config may differ from this one's only
        in what the pipeline applies to a decision (``guardrails``, and ``shield`` while the
        evidence it reads is the same) and in what its agent reads (no more than this one
        computed): what was simulated so far depends on none of them.

        What changes during an episode (the generator, the simulator, the evidence, the lists
        of windows) is copied; what never changes (the scenario, its draw, frozen records such
        as intervals and windows) is shared.
        """
        base = replace(self.config, guardrails=None, shield=None, reads="observation")
        for config in configs:
            if (
                replace(config, guardrails=None, shield=None, reads="observation") != base
                or (config.shield or ShieldConfig()) != self._shield_config
            ):
                raise ValueError(
                    "a fork may differ only in guardrails, in what its agent reads and in "
                    "whether the same shield gates"
                )
            if READS.index(config.reads) > READS.index(self.config.reads):
                raise ValueError(
                    f"a fork cannot read more than what was computed: {config.reads!r} from "
                    f"an environment that reads {self.config.reads!r}"
                )
        copies = []
        for config in configs:
            clone = object.__new__(type(self))
            clone.__dict__.update(
                {
                    name: (type(value)(value) if isinstance(value, list | dict) else value)
                    for name, value in self.__dict__.items()
                }
            )
            rng = _generator_copy(self.np_random)
            clone._np_random = rng  # (gymnasium's setter would also forget the seed)
            clone._sim = None if self._sim is None else self._sim.copy(rng)
            clone._evidence = self._evidence.copy()
            clone.config = config
            copies.append(clone)
        return copies

    def step(
        self, action: int
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """The agent's ``action``, decided by the pipeline (guardrails as configured)."""
        return self.step_policy(FixedAction(int(action)))

    def step_policy(
        self, policy: Policy
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """One step decided by the pipeline with ``policy``, as the service decides it."""
        if self._sim is None or self._snapshot is None:
            raise RuntimeError("call reset() first")
        evaluation = decide(
            self._snapshot, self._measurements, policy, self.config.decision, self._observed
        )
        self._last_evaluation = evaluation
        return self._advance(evaluation)

    @property
    def last_evaluation(self) -> Evaluation | None:
        """The pipeline's output for the last step (decision, guardrail, reason, Q-values)."""
        return self._last_evaluation

    def _advance(
        self, evaluation: Evaluation
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Apply a decision to the rollout, then measure the next interval."""
        decision: Action = evaluation.guarded.decision
        proposed = evaluation.proposed
        reward = 0.0
        outcome: str | None = None
        if decision == "abort":
            reward += REWARD_ABORT_BAD if self._truth_bad else -COST_FALSE_ABORT
            outcome = "aborted"
        elif decision == "promote":
            if self._step_index == len(self.config.weights) - 1:
                reward += -COST_BAD_PROMOTION if self._truth_bad else REWARD_PROMOTE_GOOD
                outcome = "promoted"
            else:
                self._step_index += 1
                self._measurements = 0
        else:
            self._measurements += 1
            self._holds += 1
            if self._measurements >= self.config.patience:
                reward -= self.config.pause_cost
                outcome = "paused"
        observation: npt.NDArray[np.float32] | None = None
        if outcome is None:
            cost, observation, outcome = self._measure()
            reward += cost
        self._objective += reward
        if outcome is not None:
            final = np.zeros(len(FEATURE_LOW), dtype=np.float32)
            return (
                (observation if observation is not None else final),
                reward,
                True,
                False,
                (self._final_info(outcome) | {"decision": decision, "proposed": proposed}),
            )
        assert observation is not None
        return observation, reward, False, False, {"decision": decision, "proposed": proposed}


#: What a copied generator's bit generator is made from before it takes the original's state
#: (made once: seeding from a ready sequence costs less than from a number).
_COPY_SEED: Final = np.random.SeedSequence(0)


def _generator_copy(rng: np.random.Generator) -> np.random.Generator:
    """A generator in ``rng``'s state that draws on independently of it."""
    bits = type(rng.bit_generator)(_COPY_SEED)
    bits.state = rng.bit_generator.state
    return np.random.Generator(bits)
