"""The observation vector: names, order, bounds, and no made-up values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision_service.features import (
    FEATURE_HIGH,
    FEATURE_LOW,
    FEATURE_NAMES,
    N_FEATURES,
    build_observation,
    named,
)
from decision_service.snapshot import MetricsSnapshot, MissingMetricError, VersionMetrics
from decision_service.statistics import error_llr, two_proportion_z

SLO = 200.0


def version(
    requests: float = 1000, errors: float = 5, p50: float | None = 50.0, p95: float | None = 120.0
) -> VersionMetrics:
    return VersionMetrics(requests, errors, p50, p95)


def snapshot(**overrides: object) -> MetricsSnapshot:
    values: dict[str, object] = {
        "step_weight": 20.0,
        "canary": version(200, 1),
        "stable": version(800, 4),
        "canary_cumulative": version(2000, 10),
        "stable_cumulative": version(20000, 100),
    }
    values.update(overrides)
    return MetricsSnapshot(**values)  # type: ignore[arg-type]


def test_names_are_unique_and_bounds_match() -> None:
    assert len(set(FEATURE_NAMES)) == N_FEATURES == len(FEATURE_LOW) == len(FEATURE_HIGH)
    assert np.all(FEATURE_LOW < FEATURE_HIGH)


def test_equal_versions_give_neutral_comparisons() -> None:
    obs = named(build_observation(snapshot(), 2, SLO))
    assert obs["step_weight"] == pytest.approx(0.2)
    assert obs["measurements_at_step"] == pytest.approx(0.2)
    assert obs["canary_p95_latency"] == pytest.approx(120 / SLO)
    for name in (
        "error_z_total",
        "p95_ratio_total",
        "p50_ratio_total",
        "error_z_window",
        "stable_error_vs_history",
        "canary_error_trend",
    ):
        assert obs[name] == pytest.approx(0.0, abs=1e-6), name
    # equal rates: the likelihood ratio favours "equal" over "twice as many errors"
    assert obs["error_llr_total"] < 0


def test_worse_canary_moves_the_comparisons_up() -> None:
    bad = snapshot(
        canary=version(200, 20, 80, 300),
        canary_cumulative=version(2000, 200, 80, 300),
    )
    obs = named(build_observation(bad, 2, SLO))
    assert obs["error_z_total"] > 1.0
    assert obs["error_llr_total"] > 1.0
    assert obs["p95_ratio_total"] == pytest.approx(math.log2(300 / 120), rel=1e-5)
    assert obs["canary_error_rate"] > obs["stable_error_rate"]


def test_observation_stays_within_bounds_for_extremes() -> None:
    extreme = snapshot(
        canary=version(10**9, 10**9, 10**5, 10**6),
        canary_cumulative=version(10**10, 10**10, 10**5, 10**6),
        stable=version(1, 0, 0.001, 0.001),
        stable_cumulative=version(1, 0, 0.001, 0.001),
    )
    obs = build_observation(extreme, 2, SLO)
    assert np.all(obs >= FEATURE_LOW) and np.all(obs <= FEATURE_HIGH)


@pytest.mark.parametrize(
    ("field", "value", "metric"),
    [
        ("canary", version(0, 0, None, None), "canary.requests"),
        ("canary", version(100, 1, None, 100.0), "canary.latency_p50_ms"),
        ("canary", version(100, 1, 50.0, math.nan), "canary.latency_p95_ms"),
        ("canary_cumulative", version(math.nan, 0), "canary_cumulative.requests"),
        ("stable_cumulative", version(0, 0, None, None), "stable_cumulative.requests"),
        ("canary", version(10, 11), "canary.errors"),
    ],
)
def test_missing_metrics_raise_never_default(
    field: str, value: VersionMetrics, metric: str
) -> None:
    with pytest.raises(MissingMetricError) as caught:
        build_observation(snapshot(**{field: value}), 2, SLO)
    assert caught.value.metric == metric


STABLE_GONE = {
    "no request": version(0, 0, None, None),
    "NaN": version(math.nan, math.nan, None, None),
}


@pytest.mark.parametrize("stable", sorted(STABLE_GONE))
def test_stable_without_window_traffic_uses_its_measured_span_at_100(stable: str) -> None:
    """At 100 % stable serves nothing, so its window is its measurement over the canary's life."""
    at_full_weight = snapshot(step_weight=100.0, stable=STABLE_GONE[stable])
    obs = named(build_observation(at_full_weight, 2, SLO))
    assert obs["stable_p95_latency"] == pytest.approx(120 / SLO)
    assert obs["stable_error_vs_history"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("stable", sorted(STABLE_GONE))
@pytest.mark.parametrize("weight", [0.0, 1.0, 30.0, 50.0, 99.0, 99.9])
def test_below_100_a_missing_stable_window_is_missing_data(weight: float, stable: str) -> None:
    """Below 100 % stable should be serving: a window without its requests is missing data,
    never replaced by its life-long figures (which could be minutes old)."""
    with pytest.raises(MissingMetricError) as caught:
        build_observation(snapshot(step_weight=weight, stable=STABLE_GONE[stable]), 2, SLO)
    assert caught.value.metric == "stable.requests"
    assert f"at weight {weight:g}" in caught.value.detail


def test_at_100_a_stable_window_with_requests_is_still_the_window() -> None:
    """Without traffic routing, weights are pod counts: stable may still serve at 100."""
    obs = named(build_observation(snapshot(step_weight=100.0, stable=version(800, 80)), 2, SLO))
    assert obs["stable_error_rate"] > obs["canary_error_rate"]


def test_both_versions_missing_stable_is_still_an_error() -> None:
    with pytest.raises(MissingMetricError):
        build_observation(
            snapshot(stable=version(0, 0, None, None), stable_cumulative=version(0, 0, None, None)),
            2,
            SLO,
        )


def test_statistics() -> None:
    assert two_proportion_z(0, 100, 0, 100) == 0.0
    assert two_proportion_z(10, 100, 1, 100) > 2.5
    # errors split exactly as traffic: evidence for "equal"
    assert error_llr(10, 100, 10, 100) < 0
    assert error_llr(20, 100, 10, 100) > error_llr(10, 100, 10, 100)


def test_z_of_error_counts_too_small_to_compare_is_zero_not_a_crash() -> None:
    """A subnormal error count (Prometheus' increase() extrapolates, so counts are floats)
    makes the standard error underflow to 0; found by the guardrail property test."""
    assert two_proportion_z(1e-322, 20.0, 0.0, 3.0) == 0.0
    assert two_proportion_z(0.0, 20.0, 1e-322, 3.0) == 0.0


@pytest.mark.parametrize("weight", [-1.0, 100.5])
def test_weight_out_of_range_is_rejected(weight: float) -> None:
    with pytest.raises(ValueError, match="step_weight"):
        build_observation(snapshot(step_weight=weight), 2, SLO)
