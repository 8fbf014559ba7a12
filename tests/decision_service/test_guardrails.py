"""Guardrails are pure functions; each override names itself and none ever promotes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decision_service.guardrails import GuardrailConfig, apply_guardrails, no_data
from decision_service.snapshot import MissingMetricError, VersionMetrics
from tests.decision_service.test_features import snapshot, version

SLO = 200.0
CONFIG = GuardrailConfig()


@pytest.mark.parametrize(
    ("proposed", "canary", "stable", "total", "expected", "guardrail"),
    [
        # policy answers pass through when nothing applies
        ("promote", version(200, 1), version(800, 4), version(2000, 10), "promote", None),
        ("hold", version(200, 1), version(800, 4), version(2000, 10), "hold", None),
        ("abort", version(200, 1), version(800, 4), version(2000, 10), "abort", None),
        # hard error breach, relative to stable: abort whatever the policy says
        (
            "promote",
            version(200, 80),
            version(800, 4),
            version(2000, 100),
            "abort",
            "hard_slo_breach",
        ),
        # the same error rate on stable too (an incident on both): no breach
        ("promote", version(200, 80), version(800, 300), version(2000, 100), "promote", None),
        # hard latency breach: p95 >= 3x SLO and >= 2x stable's, in the window and over the life
        (
            "hold",
            version(200, 1, 300, 700),
            version(800, 4),
            version(2000, 10, 300, 700),
            "abort",
            "hard_slo_breach",
        ),
        # one window past both limits, but the canary's life as good as stable's: the window
        # of a shared incident with errors in clumps (the stress suite's dispersed incidents
        # gave 8 such aborts of canaries no worse than stable in 546), not a breach
        ("hold", version(60, 19), version(1140, 120), version(6000, 30), "hold", None),
        (
            "hold",
            version(200, 1, 300, 9600),
            version(800, 4, 200, 4700),
            version(2000, 10),
            "hold",
            None,
        ),
        # a breach on too few requests is not evidence
        ("promote", version(10, 9), version(800, 4), version(2000, 100), "promote", None),
        # too little evidence over the canary's life: neither promote nor abort
        (
            "promote",
            version(5, 0),
            version(800, 4),
            version(10, 0),
            "hold",
            "insufficient_evidence",
        ),
        ("abort", version(5, 1), version(800, 4), version(10, 1), "hold", "insufficient_evidence"),
        ("hold", version(5, 0), version(800, 4), version(10, 0), "hold", None),
        # a clear regression in the window is never promoted (the live case: 12 errors in 159
        # canary requests vs 0.77 % on stable, below the hard limit; z = 8.0)
        (
            "promote",
            version(159, 12),
            version(3000, 23),
            version(159, 12),
            "hold",
            "regression_veto",
        ),
        # ... but holding or aborting on it is the policy's call
        ("abort", version(159, 12), version(3000, 23), version(159, 12), "abort", None),
        ("hold", version(159, 12), version(3000, 23), version(159, 12), "hold", None),
        # 4x stable's rate on 4 errors is not clear (z = 2.1): the policy may promote
        ("promote", version(200, 4), version(800, 4), version(2000, 10), "promote", None),
    ],
)
def test_guardrail_table(proposed, canary, stable, total, expected, guardrail) -> None:
    result = apply_guardrails(
        proposed, snapshot(canary=canary, stable=stable, canary_cumulative=total), SLO, CONFIG
    )
    assert (result.decision, result.guardrail) == (expected, guardrail)
    assert result.reason
    if guardrail:
        assert (
            guardrail.split("_")[0] in result.reason.lower()
            or result.decision in result.reason.lower()
        )


def test_no_guardrail_ever_promotes_on_its_own() -> None:
    for proposed in ("hold", "abort"):
        for canary in (version(200, 80), version(5, 0), version(200, 1)):
            result = apply_guardrails(proposed, snapshot(canary=canary), SLO, CONFIG)
            assert result.decision != "promote"


_counts = st.floats(0, 1e6, allow_nan=False)
_latency = st.one_of(st.none(), st.floats(0.1, 1e5, allow_nan=False))


@st.composite
def _versions(draw: st.DrawFn) -> VersionMetrics:
    requests = draw(_counts)
    errors = draw(st.floats(0, 1, allow_nan=False)) * requests
    return VersionMetrics(requests, errors, draw(_latency), draw(_latency))


@settings(max_examples=500, deadline=None)
@given(
    proposed=st.sampled_from(["hold", "promote", "abort"]),
    canary=_versions(),
    stable=_versions(),
    canary_total=_versions(),
    stable_total=_versions(),
    weight=st.floats(0, 100),
)
def test_a_promote_only_ever_comes_from_the_policy(
    proposed: str,
    canary: VersionMetrics,
    stable: VersionMetrics,
    canary_total: VersionMetrics,
    stable_total: VersionMetrics,
    weight: float,
) -> None:
    """Whatever the metrics, no guardrail turns hold or abort into promote, and a promote that
    stands is the policy's own (guardrail None)."""
    snap = snapshot(
        step_weight=weight,
        canary=canary,
        stable=stable,
        canary_cumulative=canary_total,
        stable_cumulative=stable_total,
    )
    result = apply_guardrails(proposed, snap, SLO, CONFIG)  # type: ignore[arg-type]
    if result.decision == "promote":
        assert proposed == "promote" and result.guardrail is None


def test_no_data_holds() -> None:
    result = no_data(MissingMetricError("canary.requests", "no requests in the span"))
    assert (result.decision, result.guardrail) == ("hold", "no_data")
    assert "canary.requests" in result.reason


def test_the_veto_names_the_regression_it_saw() -> None:
    result = apply_guardrails(
        "promote",
        snapshot(canary=version(159, 12), stable=version(3000, 23)),
        SLO,
        CONFIG,
    )
    assert result.reason == (
        "The policy proposed promote, but the canary's error rate in this window, 7.55% over "
        "159 requests, is 9.8x stable's 0.77% (z = 8.0 >= 5); holding."
    )
    looser = GuardrailConfig(promote_veto_z=8.5)
    relaxed = apply_guardrails(
        "promote", snapshot(canary=version(159, 12), stable=version(3000, 23)), SLO, looser
    )
    assert relaxed.guardrail is None


def test_stable_at_zero_traffic_uses_its_span() -> None:
    full = snapshot(
        step_weight=100,
        canary=version(500, 250),
        stable=VersionMetrics(0, 0, None, None),
        canary_cumulative=version(2500, 260),
    )
    assert apply_guardrails("promote", full, SLO, CONFIG).guardrail == "hard_slo_breach"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hard_error_rate": 0.0},
        {"hard_error_rate": 1.5},
        {"relative_factor": 0.5},
        {"min_breach_requests": 0},
        {"hard_latency_slo_factor": -1},
        {"promote_veto_z": 0.0},
    ],
)
def test_config_validation(kwargs) -> None:
    with pytest.raises(ValueError):
        GuardrailConfig(**kwargs)
