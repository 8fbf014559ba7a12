"""Guardrails: pure functions that may override the policy, each naming itself.

They run after the policy, in this order, and the first that applies wins:

==========================  ==========================================================  =========
guardrail                   when                                                        answer
==========================  ==========================================================  =========
``no_data``                 a metric the observation needs is missing (the canary       hold
                            served no request in the window, Prometheus gave NaN)
``hard_slo_breach``         with at least ``min_breach_requests`` canary requests in     abort
                            the window: its error rate ≥ ``hard_error_rate`` and ≥
                            ``relative_factor`` × stable's, or its p95 ≥
                            ``hard_latency_slo_factor`` × SLO and ≥
                            ``relative_factor`` × stable's p95; and over the canary's
                            life, too, that metric ≥ ``relative_factor`` × stable's.
                            Relative to stable, so an incident hitting both versions
                            does not abort a canary; over the life too, so one
                            over-dispersed window in such an incident does not either
``insufficient_evidence``   fewer than ``min_canary_requests`` canary requests over its   hold
                            life: neither promote nor abort on a handful of requests
``regression_veto``         the policy proposes ``promote``, but in the window (with at   hold
                            least ``min_breach_requests`` canary requests) the canary's
                            error rate is ≥ ``relative_factor`` × stable's with a
                            two-proportion z ≥ ``promote_veto_z``: a clear regression
                            is never promoted, whatever the model makes of it
==========================  ==========================================================  =========

No guardrail ever answers ``promote``. ``regression_veto`` exists because a model can be wrong
far from its training data: live, a buggy canary's first window once showed 7.5 % errors
(stable 0.76 %) together with a cold-start p95 of twice stable's, which looked to the policy
like a good canary's transient spike, and it proposed ``promote``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from decision_service.actions import Action
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.statistics import stable_reference, two_proportion_z


class GuardrailConfig(BaseModel):
    """Limits of the guardrails (see the module docstring).

    The one definition: the service's settings (``GUARDRAIL_*``), the Helm values and the
    training config's ``guardrails:`` section are all read into this type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_canary_requests: int = Field(
        20,
        ge=0,
        description="Hold (never promote or let the policy abort) below this many canary "
        "requests over its life.",
    )
    min_breach_requests: int = Field(
        20,
        ge=1,
        description="Canary requests in the window needed before a hard SLO breach aborts.",
    )
    hard_error_rate: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Canary window error rate that aborts (if also relative_factor x stable's).",
    )
    hard_latency_slo_factor: float = Field(
        3.0,
        gt=0,
        allow_inf_nan=False,
        description="Canary window p95 of this many SLOs aborts (if also relative to stable).",
    )
    relative_factor: float = Field(
        2.0,
        ge=1,
        allow_inf_nan=False,
        description="How many times stable's error rate / p95 a breach must also exceed.",
    )
    promote_veto_z: float = Field(
        5.0,
        gt=0,
        allow_inf_nan=False,
        description="A promote becomes hold when the canary's window errors are relative_factor "
        "x stable's with a two-proportion z of at least this.",
    )


#: Every name an answer's ``guardrail`` can hold: the guardrails here, the pipeline's ``shield``
#: and ``step_count`` rules (:mod:`decision_service.pipeline`) and the service's ``dry_run``.
GuardrailName = Literal[
    "no_data",
    "hard_slo_breach",
    "insufficient_evidence",
    "regression_veto",
    "shield",
    "step_count",
    "dry_run",
]
GUARDRAIL_NAMES: Final[tuple[GuardrailName, ...]] = get_args(GuardrailName)


@dataclass(frozen=True, slots=True)
class Guarded:
    """The final decision, which guardrail (if any) set it, and one human sentence."""

    decision: Action
    guardrail: GuardrailName | None
    reason: str


def no_data(error: MissingMetricError) -> Guarded:
    """The answer when the observation cannot be built: hold, never a guess."""
    return Guarded("hold", "no_data", f"Not enough data to decide ({error}); holding.")


def _worse_over_life(canary: float | None, stable: float | None, factor: float) -> bool:
    """Whether the canary's figure over its life is ``factor`` × stable's (stable without one:
    the window alone decides)."""
    if canary is None:
        return False
    return stable is None or canary >= factor * stable


def _hard_breach(
    snapshot: MetricsSnapshot, slo_latency_ms: float, config: GuardrailConfig
) -> str | None:
    canary, stable = snapshot.canary, stable_reference(snapshot)
    if canary.requests < config.min_breach_requests:
        return None
    life_c, life_s = snapshot.canary_cumulative, snapshot.stable_cumulative
    canary_rate, stable_rate = canary.error_rate, stable.error_rate
    if (
        canary_rate is not None
        and stable_rate is not None
        and canary_rate >= config.hard_error_rate
        and canary_rate >= config.relative_factor * stable_rate
        and _worse_over_life(life_c.error_rate, life_s.error_rate, config.relative_factor)
    ):
        return (
            f"canary error rate {canary_rate:.1%} breaches the hard limit "
            f"{config.hard_error_rate:.1%} (stable {stable_rate:.1%})"
        )
    c95, s95 = canary.latency_p95_ms, stable.latency_p95_ms
    if (
        c95 is not None
        and s95 is not None
        and c95 >= config.hard_latency_slo_factor * slo_latency_ms
        and c95 >= config.relative_factor * s95
        and _worse_over_life(life_c.latency_p95_ms, life_s.latency_p95_ms, config.relative_factor)
    ):
        return (
            f"canary p95 {c95:.0f} ms breaches {config.hard_latency_slo_factor:g}x the "
            f"{slo_latency_ms:g} ms SLO (stable {s95:.0f} ms)"
        )
    return None


def apply_guardrails(
    proposed: Action,
    snapshot: MetricsSnapshot,
    slo_latency_ms: float,
    config: GuardrailConfig,
) -> Guarded:
    """Apply the guardrails to the policy's ``proposed`` decision (no I/O, no state)."""
    breach = _hard_breach(snapshot, slo_latency_ms, config)
    if breach is not None:
        return Guarded("abort", "hard_slo_breach", f"Aborting: {breach}.")
    total = snapshot.canary_cumulative.requests
    if total < config.min_canary_requests and proposed != "hold":
        return Guarded(
            "hold",
            "insufficient_evidence",
            f"The policy proposed {proposed}, but the canary has served only {total:.0f} "
            f"requests (< {config.min_canary_requests}); holding for more evidence.",
        )
    if proposed == "promote":
        regression = _clear_regression(snapshot, config)
        if regression is not None:
            return Guarded(
                "hold",
                "regression_veto",
                f"The policy proposed promote, but {regression}; holding.",
            )
    return Guarded(proposed, None, _describe(proposed, snapshot))


def _clear_regression(snapshot: MetricsSnapshot, config: GuardrailConfig) -> str | None:
    """Why promoting would ship a clear error regression (None: it would not)."""
    canary, stable = snapshot.canary, stable_reference(snapshot)
    c_rate, s_rate = canary.error_rate, stable.error_rate
    if canary.requests < config.min_breach_requests or c_rate is None or s_rate is None:
        return None
    z = two_proportion_z(canary.errors, canary.requests, stable.errors, stable.requests)
    # `not >=`: a NaN anywhere never vetoes here (the observation would not have been built)
    if not (c_rate >= config.relative_factor * s_rate and z >= config.promote_veto_z):
        return None
    times = f"{c_rate / s_rate:.1f}x" if s_rate > 0 else "above"
    return (
        f"the canary's error rate in this window, {c_rate:.2%} over {canary.requests:.0f} "
        f"requests, is {times} stable's {s_rate:.2%} (z = {z:.1f} >= {config.promote_veto_z:g})"
    )


def _describe(decision: Action, snapshot: MetricsSnapshot) -> str:
    canary, stable = snapshot.canary_cumulative, snapshot.stable_cumulative
    c_rate, s_rate = canary.error_rate, stable.error_rate
    rates = (
        f"canary {c_rate:.2%} errors over {canary.requests:.0f} requests vs stable {s_rate:.2%}"
        if c_rate is not None and s_rate is not None
        else "error rates unavailable"
    )
    c95, s95 = canary.latency_p95_ms, stable.latency_p95_ms
    latency = (
        f"p95 {c95:.0f} ms vs {s95:.0f} ms" if c95 is not None and s95 is not None else "no p95"
    )
    return f"Policy chose {decision}: {rates}; {latency} since the canary started."
