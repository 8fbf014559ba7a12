"""The decision: snapshot → observation → policy → guardrails → the answer Argo sees.

Pure functions (no I/O): :func:`evaluate` turns a snapshot (or the missing metric that kept
one from being built) into the real decision; :func:`answer` applies dry-run mode to it.

The step count (``measurements_at_step``) comes from this process's memory, which can only be
short, never long (a restart, another replica, an eviction: see ``step_memory``). So a
``promote`` stands only if the policy also promotes at every *larger* count up to where the
feature saturates; otherwise the service holds and names the ``step_count`` guardrail. With
that rule a lost count can never produce a promote that the true count would not (the
remaining guardrails do not read the count), whatever the model learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from decision_service.actions import ACTION_NAMES, PROMOTE, Action
from decision_service.features import (
    FEATURE_NAMES,
    MEASUREMENTS_SCALE,
    MetricsSnapshot,
    MissingMetricError,
    build_observation,
    named,
)
from decision_service.guardrails import Guarded, GuardrailConfig, apply_guardrails, no_data
from decision_service.policy import OnnxPolicy
from decision_service.prometheus_source import PrometheusSource, Target

DRY_RUN_GUARDRAIL: Final = "dry_run"
STEP_COUNT_GUARDRAIL: Final = "step_count"
COUNT_INDEX: Final = FEATURE_NAMES.index("measurements_at_step")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The real decision, and what it was made from (``None`` where the policy did not run)."""

    guarded: Guarded
    proposed: Action | None
    q_values: dict[str, float] | None
    observation: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the response says: the decision Argo acts on, the guardrail, the reason."""

    decision: Action
    guardrail: str | None
    reason: str
    dry_run: bool


def evaluate(
    snapshot: MetricsSnapshot | MissingMetricError,
    policy: OnnxPolicy,
    slo_latency_ms: float,
    guardrails: GuardrailConfig,
) -> Evaluation:
    """The real decision for a snapshot; a missing metric (here or in the features) holds."""
    if isinstance(snapshot, MissingMetricError):
        return Evaluation(no_data(snapshot), None, None, None)
    try:
        observation = build_observation(snapshot, slo_latency_ms)
    except MissingMetricError as missing:
        return Evaluation(no_data(missing), None, None, None)
    proposed, q_values = policy.decide(observation)
    guarded = apply_guardrails(proposed, snapshot, slo_latency_ms, guardrails)
    if guarded.decision == "promote":
        doubt = first_count_without_promote(policy, observation, snapshot.measurements_at_step)
        if doubt is not None:
            count, action = doubt
            guarded = Guarded(
                "hold",
                STEP_COUNT_GUARDRAIL,
                f"The policy proposed promote after {snapshot.measurements_at_step} measurements "
                f"at this step, but not after {count} ({action}); this process's step count can "
                "only be short, so holding.",
            )
    return Evaluation(guarded, proposed, q_values, named(observation))


def first_count_without_promote(
    policy: OnnxPolicy, observation: npt.NDArray[np.float32], taken: int
) -> tuple[int, Action] | None:
    """The smallest count above ``taken`` at which the policy would not promote, if any.

    Public so the simulator's evaluation (``training.evaluation``) applies the same rule and
    measures the policy as the service runs it."""
    counts = list(range(max(taken, 0) + 1, MEASUREMENTS_SCALE + 1))
    if not counts:
        return None
    batch = np.repeat(observation[np.newaxis, :], len(counts), axis=0)
    batch[:, COUNT_INDEX] = np.asarray(counts, dtype=np.float32) / MEASUREMENTS_SCALE
    actions = policy.q_values(batch).argmax(axis=1)
    for count, action in zip(counts, actions, strict=True):
        if int(action) != PROMOTE:
            return count, ACTION_NAMES[int(action)]
    return None


def measure_and_evaluate(
    source: PrometheusSource,
    target: Target,
    step_weight: float,
    measurements_at_step: int,
    policy: OnnxPolicy,
    slo_latency_ms: float,
    guardrails: GuardrailConfig,
) -> Evaluation:
    """Query Prometheus for the snapshot, then :func:`evaluate` it.

    Blocking: the caller runs it in the source's thread pool (``source.run``), so one worker
    thread does the queries, the parsing, the features and the ONNX inference of a decision.
    Raises :class:`~decision_service.prometheus_source.PrometheusUnavailable`.
    """
    snapshot: MetricsSnapshot | MissingMetricError
    try:
        snapshot = source.snapshot_blocking(target, step_weight, measurements_at_step)
    except MissingMetricError as missing:
        snapshot = missing
    return evaluate(snapshot, policy, slo_latency_ms, guardrails)


def answer(evaluation: Evaluation, dry_run: bool, dry_run_answer: Action) -> Answer:
    """The answer Argo sees; in dry-run mode the configured safe one (the real one in reason).

    Even in dry-run mode a decision made without data is answered ``hold``: the service never
    says ``promote`` for a canary it could not measure.
    """
    real = evaluation.guarded
    if not dry_run:
        return Answer(real.decision, real.guardrail, real.reason, False)
    shown: Action = "hold" if real.guardrail == "no_data" else dry_run_answer
    real_label = f"{real.decision} ({real.guardrail})" if real.guardrail else real.decision
    return Answer(
        shown,
        DRY_RUN_GUARDRAIL,
        f"Dry run: answering {shown}; the real decision is {real_label}: {real.reason}",
        True,
    )
