"""Replay parity: the simulator's decisions against the service's, replayed from Prometheus.

Episodes of the library are played in the environment with a policy
(:meth:`~training.env.CanaryRolloutEnv.step_policy`: the simulator's own decision per
measurement), written as Prometheus history (:mod:`training.openmetrics`), turned into TSDB
blocks with promtool, served by a real Prometheus, and replayed at the same instants through the
service's path (:func:`decision_service.replay.replay`: the templates of the ``demo`` preset,
instant and range queries with ``time=``, :func:`decision_service.api.measure`, the pipeline).
:class:`ParityReport` gives the decision agreement and the largest difference per feature.

Two agreements are reported. **As the service**: the replayed step count is the service's,
one replica's memory capped by the windows at the canary's current traffic share
(:func:`decision_service.api.step_count`). **Same count**: the replayed measurement decided
with the simulator's own count, which isolates the Prometheus path (templates, ``increase``,
the histogram) from the service's step-count rule, which the simulator does not model.

Episodes use the evaluation's seeds (``training.episodes.Suite``), so they are the canaries the
evaluation scores. Without the shipped model, :data:`STAND_IN` (a linear Q-network on the
features, :class:`LinearPolicy`) stands in: its choices move with the continuous features, so
a feature that differs between the two paths shows as a different decision.

``python benchmarks/replay_parity.py`` (``make replay-parity``) runs the full figure; the tests
run a few episodes.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from decision_service import pipeline
from decision_service.actions import ACTION_NAMES, Action
from decision_service.features import FEATURE_NAMES
from decision_service.guardrails import GuardrailConfig
from decision_service.pipeline import Policy
from decision_service.prometheus_source import PrometheusSource, prometheus_client
from decision_service.queries import QueryTemplates, Target, load_templates
from decision_service.replay import replay
from decision_service.replay_input import Instant, format_time
from decision_service.shield import ShieldConfig
from scenarios import Scenario
from training.env import CanaryRolloutEnv, EnvConfig
from training.episodes import Suite
from training.openmetrics import EpisodeHistory, create_blocks, pod_template_hash, write_openmetrics

#: When the episodes' canaries start (unix seconds): a fixed past moment on a 2 h block
#: boundary plus room for stable's history, so every run writes the same TSDB.
EPOCH: Final = 1_699_999_200
CANARY_START: Final = EPOCH + 1800
#: Intervals of stable history written before the simulator's baseline windows (copies of its
#: first ones: no random draw). Stable has run longer than the windows the shield reads, as in
#: production; the service must still read exactly BASELINE_WINDOWS of them.
LEAD_INTERVALS: Final = 2

#: The stand-in policy: a linear Q-network on the features (``(feature, action) → weight``),
#: its bias per action in ACTION_NAMES order. Holds by default; promotes as the shield allows it
#: and the count grows, unless the errors or the p95 lean against the canary; aborts as the shield
#: allows it and the evidence against the canary grows.
STAND_IN_BIAS: Final = (0.2, -0.3, -1.0)
STAND_IN: Final[Mapping[tuple[str, str], float]] = {
    ("shield_promote_allowed", "promote"): 0.6,
    ("measurements_at_step", "promote"): 0.4,
    ("shield_error_proof", "promote"): 0.3,
    ("error_z_total", "promote"): -0.3,
    ("p95_ratio_total", "promote"): -0.3,
    ("shield_abort_allowed", "abort"): 0.8,
    ("error_z_total", "abort"): 0.3,
    ("error_llr_total", "abort"): 0.2,
    ("p95_ratio_total", "abort"): 0.3,
    ("shield_error_rejection", "abort"): 0.3,
}


class LinearPolicy:
    """``q = observation @ W + b`` in float32, as the ONNX ``Gemm`` of
    ``tests/support/onnx_models.build_model`` computes it."""

    def __init__(
        self, weights: Mapping[tuple[str, str], float], bias: Sequence[float], name: str
    ) -> None:
        self.matrix = np.zeros((len(FEATURE_NAMES), len(ACTION_NAMES)), dtype=np.float32)
        for (feature, action), weight in weights.items():
            self.matrix[FEATURE_NAMES.index(feature), ACTION_NAMES.index(action)] = weight
        self.bias = np.asarray(bias, dtype=np.float32)
        self.name = name

    @classmethod
    def stand_in(cls) -> LinearPolicy:
        return cls(STAND_IN, STAND_IN_BIAS, "stand-in")

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        rows = np.asarray(observations, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
        q: npt.NDArray[np.float32] = rows @ self.matrix + self.bias
        return q


def service_config() -> EnvConfig:
    """The environment configured as the service runs by default: guardrails and shield on."""
    return EnvConfig(guardrails=GuardrailConfig(), shield=ShieldConfig())


@dataclass(frozen=True, slots=True)
class SimulatedDecision:
    """The simulator's decision at one measurement (the end of interval ``index``)."""

    index: int
    weight: float
    count: int  # measurements already taken at the step
    decision: Action
    guardrail: str | None
    observation: Mapping[str, float] | None


@dataclass(frozen=True)
class RecordedEpisode:
    scenario: str
    seed: int
    outcome: str
    history: EpisodeHistory
    decisions: tuple[SimulatedDecision, ...]


def record_episode(
    scenario: Scenario,
    index: int,
    policy: Policy,
    config: EnvConfig,
    *,
    namespace: str = "replay",
    start: float = CANARY_START,
) -> RecordedEpisode:
    """Play one evaluation episode with ``policy``: every interval is a measurement, answered
    by the pipeline (or ``no_data``, where the environment holds without asking it)."""
    seed = Suite.of(scenario).seed(index)
    env = CanaryRolloutEnv([scenario], config)
    _, info = env.reset(seed=seed, options={"allow_terminal": True})
    decided: dict[int, SimulatedDecision] = {}
    while "outcome" not in info:
        last = env.recent_intervals[-1]
        count = env.measurements_at_step
        _, _, _, _, info = env.step_policy(policy)
        evaluation = env.last_evaluation
        assert evaluation is not None
        decided[last.index] = SimulatedDecision(
            last.index,
            last.weight,
            count,
            evaluation.guarded.decision,
            evaluation.guarded.guardrail,
            evaluation.observation,
        )
    decisions = []
    counts: Counter[float] = Counter()
    for interval in env.history:
        decision = decided.get(interval.index) or SimulatedDecision(
            interval.index, interval.weight, counts[interval.weight], "hold", "no_data", None
        )
        counts[interval.weight] += 1
        decisions.append(decision)
    rollout = f"{scenario.name.replace('_', '-')}-{index}"
    baseline = tuple(env.baseline_intervals)
    history = EpisodeHistory(
        namespace=namespace,
        rollout=rollout,
        canary_hash=pod_template_hash(scenario.name, seed, "canary"),
        stable_hash=pod_template_hash(scenario.name, seed, "stable"),
        start=start,
        interval_seconds=config.interval_seconds,
        baseline=baseline[:LEAD_INTERVALS] + baseline,
        intervals=tuple(env.history),
    )
    return RecordedEpisode(scenario.name, seed, info["outcome"], history, tuple(decisions))


@dataclass(frozen=True, slots=True)
class Compared:
    """One measurement on both sides."""

    scenario: str
    seed: int
    index: int
    weight: float
    simulated: SimulatedDecision
    decision: Action  # replayed, as the service (its step count)
    guardrail: str | None
    same_count_decision: Action  # replayed, decided with the simulator's count
    remembered: int
    count: int
    observation: Mapping[str, float] | None
    same_count_observation: Mapping[str, float] | None
    reason: str


def replay_episode(
    source: PrometheusSource,
    episode: RecordedEpisode,
    policy: Policy,
    config: EnvConfig,
) -> Iterator[Compared]:
    """Replay an episode's measurement instants from Prometheus and pair them with the
    simulator's decisions."""
    history = episode.history
    target = Target(history.namespace, history.rollout, history.canary_hash, history.stable_hash)
    instants = [Instant(history.measured_at(d.index), d.weight) for d in episode.decisions]
    decision_config = config.decision
    shield = config.shield or ShieldConfig()
    replayed = replay(source, target, instants, policy, decision_config, shield)
    for simulated, result in zip(episode.decisions, replayed, strict=True):
        same_count = pipeline.decide(
            result.measurement.snapshot, simulated.count, policy, decision_config
        )
        guarded = result.evaluation.guarded
        yield Compared(
            scenario=episode.scenario,
            seed=episode.seed,
            index=simulated.index,
            weight=simulated.weight,
            simulated=simulated,
            decision=guarded.decision,
            guardrail=guarded.guardrail,
            same_count_decision=same_count.guarded.decision,
            remembered=result.remembered,
            count=result.count,
            observation=result.evaluation.observation,
            same_count_observation=same_count.observation,
            reason=guarded.reason,
        )


@dataclass
class _Tally:
    instants: int = 0
    agree: int = 0
    agree_same_count: int = 0
    episodes: int = 0
    episodes_agree: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "instants": self.instants,
            "agreement": _share(self.agree, self.instants),
            "agreement_same_count": _share(self.agree_same_count, self.instants),
            "episodes": self.episodes,
            "episodes_all_agree": _share(self.episodes_agree, self.episodes),
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class ParityReport:
    """Agreement and feature differences over every compared measurement."""

    total: _Tally = field(default_factory=_Tally)
    per_scenario: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    #: feature -> (largest |simulated - replayed| with the same count, where)
    feature_max: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: instants where one side had an observation and the other answered no_data
    no_data_mismatch: int = 0
    #: instants where the replayed memory is not the simulator's count (must stay 0)
    memory_mismatch: int = 0
    #: instants where the service's count (capped) was below the simulator's
    capped: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)

    def add_episode(self, compared: Sequence[Compared]) -> None:
        if not compared:
            return
        scenario = compared[0].scenario
        all_agree = True
        for c in compared:
            for tally in (self.total, self.per_scenario[scenario]):
                tally.instants += 1
                tally.agree += c.decision == c.simulated.decision
                tally.agree_same_count += c.same_count_decision == c.simulated.decision
            self.memory_mismatch += c.remembered != c.simulated.count
            self.capped += c.count < c.simulated.count
            sim_obs, rep_obs = c.simulated.observation, c.same_count_observation
            if (sim_obs is None) != (rep_obs is None):
                self.no_data_mismatch += 1
            if sim_obs is not None and rep_obs is not None:
                where = f"{c.scenario} seed {c.seed} #{c.index}"
                for name in FEATURE_NAMES:
                    diff = abs(sim_obs[name] - rep_obs[name])
                    if diff > self.feature_max.get(name, (-1.0, ""))[0]:
                        self.feature_max[name] = (diff, where)
            if c.decision != c.simulated.decision:
                all_agree = False
                cause = (
                    "step count" if c.same_count_decision == c.simulated.decision else "measurement"
                )
                self.causes[cause] += 1
                self.disagreements.append(
                    {
                        "scenario": c.scenario,
                        "seed": c.seed,
                        "interval": c.index,
                        "weight": c.weight,
                        "simulated": [c.simulated.decision, c.simulated.guardrail],
                        "replayed": [c.decision, c.guardrail],
                        "same_count": c.same_count_decision,
                        "simulator_count": c.simulated.count,
                        "service_count": c.count,
                        "cause": cause,
                        "largest_feature_differences": _largest(sim_obs, rep_obs),
                        "reason": c.reason,
                    }
                )
        for tally in (self.total, self.per_scenario[scenario]):
            tally.episodes += 1
            tally.episodes_agree += all_agree

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.total.as_dict(),
            "per_scenario": {name: t.as_dict() for name, t in sorted(self.per_scenario.items())},
            "feature_max_difference": {
                name: {"difference": diff, "where": where}
                for name, (diff, where) in sorted(
                    self.feature_max.items(), key=lambda item: -item[1][0]
                )
            },
            "no_data_mismatch": self.no_data_mismatch,
            "memory_mismatch": self.memory_mismatch,
            "service_count_below_simulator": self.capped,
            "disagreement_causes": dict(self.causes),
            "disagreements": self.disagreements,
        }


def _largest(
    simulated: Mapping[str, float] | None, replayed: Mapping[str, float] | None
) -> dict[str, list[float]]:
    if simulated is None or replayed is None:
        return {}
    diffs = sorted(((abs(simulated[n] - replayed[n]), n) for n in FEATURE_NAMES), reverse=True)[:3]
    return {n: [simulated[n], replayed[n]] for d, n in diffs if d > 1e-6}


#: Serves a TSDB folder: given the folder, yields Prometheus' URL while it runs.
Serve = Callable[[Path], AbstractContextManager[str]]


#: The ``demo`` preset's canary start without its 5 s margin: the first sample's time, exact
#: when scrapes are at least 5 s apart (as in the written history). The preset dates the start
#: 5 s early so that it is never late when scrapes are faster than the search's 5 s resolution;
#: the cost is that stable's life figures include the 5 s before the canary (one more scrape
#: here). Replaying with this variant too shows what that margin alone changes.
EXACT_START: Final = (
    'min(min_over_time(timestamp(http_requests_total{rollouts_pod_template_hash="${canary}"})'
    '[1d:5s])) or min(timestamp(http_requests_total{rollouts_pod_template_hash="${canary}"}))'
)


def variants(exact_start: bool = True) -> dict[str, QueryTemplates]:
    """The templates a parity run replays with: the ``demo`` preset as the service runs it,
    and (``exact_start``) the same with :data:`EXACT_START`."""
    demo = load_templates("demo")
    out = {"demo preset": demo}
    if exact_start:
        out["exact start"] = demo.model_copy(update={"canary_start": EXACT_START})
    return out


def run_episodes(
    episodes: Sequence[RecordedEpisode],
    policy: Policy,
    serve: Serve,
    folder: Path,
    reports: Mapping[str, tuple[QueryTemplates, ParityReport]],
    *,
    config: EnvConfig | None = None,
) -> int:
    """Write the episodes' history into one TSDB in ``folder``, serve it with one Prometheus
    and replay every episode with each ``reports`` entry's templates into its report; returns
    the number of samples written. ``folder`` is emptied first and removed after."""
    config = config or service_config()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    openmetrics = folder / "history.om"
    try:
        with openmetrics.open("w", encoding="utf-8") as out:
            samples = write_openmetrics((e.history for e in episodes), out)
        create_blocks(openmetrics, folder / "data")
        openmetrics.unlink()
        window = f"{config.interval_seconds:g}s"
        with serve(folder / "data") as url:
            for templates, report in reports.values():
                source = PrometheusSource(
                    prometheus_client(url, 60.0, 1),
                    templates,
                    window=window,
                    window_seconds=config.interval_seconds,
                    timeout_seconds=60.0,
                    threads=1,
                )
                try:
                    for episode in episodes:
                        report.add_episode(list(replay_episode(source, episode, policy, config)))
                finally:
                    source.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return samples


def run_scenario(
    scenario: Scenario,
    indices: Iterable[int],
    policy: Policy,
    serve: Serve,
    workdir: Path,
    reports: Mapping[str, tuple[QueryTemplates, ParityReport]],
    *,
    config: EnvConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RecordedEpisode]:
    """Record a scenario's episodes and :func:`run_episodes` them (one Prometheus)."""
    config = config or service_config()
    episodes = [record_episode(scenario, i, policy, config) for i in indices]
    samples = run_episodes(episodes, policy, serve, workdir / scenario.name, reports, config=config)
    if progress:
        progress(f"{scenario.name}: {len(episodes)} episodes, {samples:,} samples")
    return episodes


def summary_lines(report: ParityReport) -> list[str]:
    """The figure, for people."""
    data = report.as_dict()
    lines = [
        f"{data['instants']} measurements of {data['episodes']} episodes: decisions agree "
        f"{100 * (data['agreement'] or 0):.2f} % as the service decides "
        f"({100 * (data['agreement_same_count'] or 0):.2f} % with the simulator's step count); "
        f"every decision of an episode agrees in {100 * (data['episodes_all_agree'] or 0):.1f} % "
        "of episodes",
        f"no_data on one side only: {data['no_data_mismatch']}; replayed memory != simulator's "
        f"count: {data['memory_mismatch']}; service count capped below the simulator's: "
        f"{data['service_count_below_simulator']}",
    ]
    for name, t in data["per_scenario"].items():
        lines.append(
            f"  {name:24s} {t['instants']:6d} measurements  {100 * (t['agreement'] or 0):6.2f} % "
            f"(same count {100 * (t['agreement_same_count'] or 0):6.2f} %)"
        )
    lines.append("largest difference per feature (same count):")
    for name, entry in data["feature_max_difference"].items():
        lines.append(f"  {name:28s} {entry['difference']:.3g}  ({entry['where']})")
    if data["disagreement_causes"]:
        lines.append(f"disagreements by cause: {data['disagreement_causes']}")
    return lines


#: The project's AnalysisTemplate metric, as an AnalysisRun carries it (rollouts/base).
_METRIC: Final = {
    "name": "rl-decision",
    "interval": "30s",
    "count": 10,
    "consecutiveSuccessLimit": 1,
    "failureLimit": 0,
    "inconclusiveLimit": 10,
    "consecutiveErrorLimit": 4,
    "successCondition": 'result.decision == "promote"',
    "failureCondition": 'result.decision == "abort"',
    "provider": {
        "web": {
            "method": "POST",
            "url": "http://k8s-rollout-agent.rollout-agent.svc:8080/v1/decide",
            "timeoutSeconds": 5,
            "jsonPath": "{$}",
        }
    },
}
_PHASES: Final = {"promote": "Successful", "hold": "Inconclusive", "abort": "Failed"}


def argo_analysis_runs(episode: RecordedEpisode, steps_per_weight: int = 3) -> list[dict[str, Any]]:
    """The AnalysisRuns Argo would have recorded for a simulated episode (one per step, as
    ``kubectl get analysisrun -o yaml`` prints them): each measurement's time, phase and the
    simulator's answer as its value, the Rollout's args. ``steps_per_weight``: the project's
    Rollout has setWeight, pause, analysis per weight, so weight ``i``'s analysis is step
    ``3 i + 2`` (its ``step-index`` label)."""
    history = episode.history
    runs: list[dict[str, Any]] = []
    by_weight: dict[float, list[SimulatedDecision]] = {}
    for decision in episode.decisions:
        by_weight.setdefault(decision.weight, []).append(decision)
    for i, (weight, decisions) in enumerate(by_weight.items()):
        step_index = steps_per_weight * i + steps_per_weight - 1
        measurements = []
        for d in decisions:
            at = history.measured_at(d.index)
            value = {"decision": d.decision, "guardrail": d.guardrail}
            measurements.append(
                {
                    "phase": _PHASES[d.decision],
                    "startedAt": format_time(at),
                    "finishedAt": format_time(at),
                    "value": json_text(value),
                }
            )
        phases = Counter(m["phase"] for m in measurements)
        last = measurements[-1]["phase"]
        name = f"{history.rollout}-{history.canary_hash}-1-{step_index}"
        runs.append(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AnalysisRun",
                "metadata": {
                    "name": name,
                    "namespace": history.namespace,
                    "labels": {
                        "rollout-type": "Step",
                        "step-index": str(step_index),
                        "rollouts-pod-template-hash": history.canary_hash,
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "argoproj.io/v1alpha1",
                            "kind": "Rollout",
                            "name": history.rollout,
                            "uid": "00000000-0000-0000-0000-000000000000",
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "args": [
                        {"name": "namespace", "value": history.namespace},
                        {"name": "rollout", "value": history.rollout},
                        {"name": "canary-hash", "value": history.canary_hash},
                        {"name": "stable-hash", "value": history.stable_hash},
                        {"name": "step-weight", "value": f"{weight:g}"},
                        {"name": "interval", "value": f"{history.interval_seconds:g}s"},
                        {"name": "count", "value": "10"},
                        {
                            "name": "api-token",
                            "valueFrom": {
                                "secretKeyRef": {"name": "k8s-rollout-agent-token", "key": "token"}
                            },
                        },
                    ],
                    "metrics": [_METRIC],
                },
                "status": {
                    "phase": last,
                    "startedAt": measurements[0]["startedAt"],
                    "metricResults": [
                        {
                            "name": _METRIC["name"],
                            "phase": last,
                            "count": len(measurements),
                            "successful": phases["Successful"],
                            "failed": phases["Failed"],
                            "inconclusive": phases["Inconclusive"],
                            "measurements": measurements,
                        }
                    ],
                },
            }
        )
    return runs


def json_text(value: Mapping[str, Any]) -> str:
    """A measurement's value as Argo stores a JSON result: compact JSON."""
    return json.dumps(value, separators=(",", ":"))
