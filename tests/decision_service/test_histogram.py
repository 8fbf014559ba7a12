"""histogram_quantile on hand-made cases (the comparison with a live Prometheus is in
test_histogram_prometheus.py)."""

from __future__ import annotations

import pytest

from decision_service.histogram import LATENCY_BUCKETS_SECONDS, histogram_quantile


def test_interpolates_inside_the_bucket() -> None:
    bounds = [0.1, 0.2, 0.4]
    # 10 below 0.1, 10 in (0.1, 0.2], none above
    assert histogram_quantile(0.5, bounds, [10, 20, 20, 20]) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, [10, 20, 20, 20]) == pytest.approx(0.15)
    assert histogram_quantile(0.25, bounds, [10, 20, 20, 20]) == pytest.approx(0.05)


def test_rank_in_inf_bucket_gives_highest_bound() -> None:
    assert histogram_quantile(0.99, [0.1, 0.2], [0, 0, 10]) == pytest.approx(0.2)


def test_empty_is_none_not_zero() -> None:
    assert histogram_quantile(0.95, [0.1], [0, 0]) is None


def test_shape_is_checked_and_buckets_increase() -> None:
    with pytest.raises(ValueError):
        histogram_quantile(0.5, [0.1, 0.2], [1, 2])
    assert list(LATENCY_BUCKETS_SECONDS) == sorted(set(LATENCY_BUCKETS_SECONDS))
