"""The simulator samples metrics the way production produces them."""

from __future__ import annotations

import numpy as np
import pytest

from decision_service.scenarios import load_scenario
from tests.conftest import SCENARIOS_DIR
from training.simulator import SUB_BUCKETS, RolloutSimulator


def sim(name: str, seed: int = 0) -> RolloutSimulator:
    return RolloutSimulator(
        load_scenario(SCENARIOS_DIR / f"{name}.yaml"), np.random.default_rng(seed), 30.0
    )


def test_traffic_splits_by_weight() -> None:
    s = sim("healthy")
    canary = stable = 0
    for _ in range(200):
        interval = s.next_interval(20.0)
        canary += interval.canary.requests
        stable += interval.stable.requests
        assert interval.canary.scrape_requests.sum() == interval.canary.requests
        assert len(interval.canary.scrape_requests) == SUB_BUCKETS
        assert interval.canary.buckets.sum() == interval.canary.requests
    assert canary / (canary + stable) == pytest.approx(0.2, abs=0.01)


def test_error_rates_follow_the_scenario() -> None:
    s = sim("buggy", 1)
    for _ in range(100):
        s.next_interval(50.0)
    snap = s.snapshot(0)
    expected = s.params.stable_error_rate + s.params.error_additive
    assert snap.canary_cumulative.error_rate == pytest.approx(expected, rel=0.1)
    assert snap.stable_cumulative.error_rate == pytest.approx(s.params.stable_error_rate, rel=0.3)


def test_quantiles_come_from_the_histogram_and_are_noisy_with_few_requests() -> None:
    busy, quiet = [], []
    for seed in range(40):
        s = sim("healthy", seed)
        s.next_interval(50.0)
        busy.append(
            s.snapshot(0).canary.latency_p95_ms
            / (s.params.stable_p50_ms * np.exp(1.645 * s.params.latency_spread))
        )
        q = sim("low_traffic", seed)
        for _ in range(50):
            q.next_interval(50.0)
            snap = q.snapshot(0)
            if snap.canary.requests > 0:
                quiet.append(
                    snap.canary.latency_p95_ms
                    / (q.params.stable_p50_ms * np.exp(1.645 * q.params.latency_spread))
                )
                break
    assert np.median(busy) == pytest.approx(1.0, abs=0.15)
    assert np.std(quiet) > 2 * np.std(busy)


def test_snapshot_without_canary_traffic_has_no_latency() -> None:
    s = sim("low_traffic", 2)
    for _ in range(100):
        interval = s.next_interval(5.0)
        if interval.canary.requests == 0:
            snap = s.snapshot(0)
            assert snap.canary.latency_p95_ms is None and snap.canary.error_rate is None
            return
    pytest.fail("expected an interval without canary requests at 5 % of low traffic")
