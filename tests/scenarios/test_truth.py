"""The truth of a draw: the canary's expected behaviour against stable's, under the tolerance."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from decision_service.tolerance import Tolerance
from scenarios import EpisodeParameters, load_scenarios, resolve_scenario
from scenarios.truth import (
    Schedule,
    episode_judgement,
    episode_truth,
    expected_metrics,
    mixture_quantile,
)
from tests.conftest import SCENARIOS_DIR

DRAWS = 600


def _params(name: str, seed: int = 0) -> EpisodeParameters:
    return EpisodeParameters.draw(resolve_scenario(name), np.random.default_rng(seed))


@pytest.mark.parametrize(
    "scenario",
    load_scenarios([SCENARIOS_DIR, SCENARIOS_DIR / "holdout"]),
    ids=lambda s: s.name,
)
def test_every_files_draws_mostly_mean_what_its_author_meant(scenario) -> None:  # type: ignore[no-untyped-def]
    """A file's ``truth:`` is its author's intent; the computed truth of its draws agrees with
    it at least 95 % of the time (the report shows the exact share per scenario)."""
    rng = np.random.default_rng(11)
    truths = [episode_truth(EpisodeParameters.draw(scenario, rng)) for _ in range(DRAWS)]
    agreement = truths.count(scenario.truth) / DRAWS
    assert agreement >= 0.95, f"{scenario.name}: {agreement:.1%} of draws are {scenario.truth}"


def test_an_equal_canary_is_within_and_its_metrics_are_stables() -> None:
    params = replace(_params("healthy"), error_multiplier=1.0, latency_multiplier=1.0)
    canary, stable = expected_metrics(params)
    for metric in stable:
        assert canary[metric] == pytest.approx(stable[metric], rel=1e-6)
    assert episode_truth(params) == "good"


def test_the_tolerance_decides_near_its_edge() -> None:
    base = replace(_params("healthy"), stable_error_rate=0.01, latency_multiplier=1.0)
    tolerance = Tolerance(error_factor=1.2, error_floor=0.001)
    limit = (1.2 * 0.01 + 0.001) / 0.01  # 1.3x
    assert episode_truth(replace(base, error_multiplier=limit - 0.01), tolerance) == "good"
    assert episode_truth(replace(base, error_multiplier=limit + 0.01), tolerance) == "bad"
    # the floor: a tiny service at 0.01 % may double without it counting
    tiny = replace(base, stable_error_rate=0.0001, error_multiplier=2.0)
    assert episode_truth(tiny, tolerance) == "good"


def test_shared_incidents_cancel_and_stable_incidents_are_not_the_canarys_fault() -> None:
    params = replace(
        _params("healthy"),
        error_multiplier=1.0,
        latency_multiplier=1.0,
        incident_probability=0.5,
        incident_error_rate=0.2,
        stable_incident_probability=0.5,
        stable_incident_error_rate=0.2,
    )
    assert episode_truth(params) == "good"


def test_spikes_count_at_their_expected_rate() -> None:
    params = replace(
        _params("healthy"), stable_error_rate=0.005, error_multiplier=1.0, latency_multiplier=1.0
    )
    canary, _ = expected_metrics(replace(params, spike_probability=0.2, spike_error_rate=0.05))
    assert canary["error_rate"] == pytest.approx(0.005 + 0.2 * 0.05, rel=1e-6)
    rare = replace(params, spike_probability=0.01, spike_error_rate=0.02)
    assert episode_truth(rare) == "good"


def test_drift_counts_where_it_will_be_after_promotion() -> None:
    """A drift too slow to show during a 3.5-minute rollout is bad once the horizon counts."""
    params = replace(
        _params("healthy"),
        stable_error_rate=0.005,
        error_multiplier=1.0,
        drift_starts_after_minutes=0.0,
        drift_error_per_minute=0.0005,
    )
    short = Schedule(horizon_minutes=1.0)
    assert episode_truth(params, schedule=short) == "good"
    assert episode_truth(params) == "bad"


def test_a_load_dependent_bug_counts_at_full_weight() -> None:
    params = replace(
        _params("healthy"),
        stable_error_rate=0.005,
        error_multiplier=1.0,
        load_from_weight=40.0,
        load_error_rate=0.03,
    )
    assert params.load_share(30.0) == 0.0 and params.load_share(100.0) == 1.0
    assert episode_truth(params) == "bad"


def test_a_tail_only_change_moves_p95_not_p50() -> None:
    params = replace(_params("healthy"), latency_multiplier=1.0, spread_multiplier=1.8)
    judgement = episode_judgement(params)
    by_metric = {c.metric: c for c in judgement.comparisons}
    assert by_metric["latency_p50_ms"].within
    assert not by_metric["latency_p95_ms"].within


def test_a_short_cold_start_is_forgiven_a_long_one_is_not() -> None:
    params = replace(
        _params("healthy"),
        error_multiplier=1.0,
        latency_multiplier=1.0,
        cold_start_error_rate=0.05,
        cold_start_latency_multiplier=2.0,
    )
    assert episode_truth(replace(params, cold_start_minutes=1.0)) == "good"
    assert episode_truth(replace(params, cold_start_minutes=60.0)) == "bad"


def test_mixture_quantile_against_a_known_mixture() -> None:
    from scipy.stats import norm

    weights = np.array([0.8, 0.2])
    medians = np.array([50.0, 120.0])
    for q in (0.5, 0.95):
        x = mixture_quantile(q, weights, medians, 0.4)
        cdf = sum(
            w * norm.cdf((math.log(x) - math.log(m)) / 0.4)
            for w, m in zip(weights, medians, strict=True)
        )
        assert cdf == pytest.approx(q, abs=1e-6)
