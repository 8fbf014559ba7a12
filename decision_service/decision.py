"""The decision: snapshot → observation → policy → guardrails → the answer Argo sees.

Pure functions (no I/O): :func:`evaluate` turns a snapshot (or the missing metric that kept
one from being built) into the real decision; :func:`answer` applies dry-run mode to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from decision_service.actions import Action
from decision_service.features import (
    MetricsSnapshot,
    MissingMetricError,
    build_observation,
    named,
)
from decision_service.guardrails import Guarded, GuardrailConfig, apply_guardrails, no_data
from decision_service.policy import OnnxPolicy

DRY_RUN_GUARDRAIL = "dry_run"


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
    return Evaluation(guarded, proposed, q_values, named(observation))


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
