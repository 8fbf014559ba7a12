"""histogram_quantile on hand-made cases (the comparison with a live Prometheus is in
test_histogram_prometheus.py)."""

from __future__ import annotations

import random

import pytest

from decision_service.histogram import (
    LATENCY_BUCKETS_SECONDS,
    histogram_quantile,
    histogram_quantiles,
)


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


def test_several_quantiles_in_one_pass_are_each_ones_bit_for_bit() -> None:
    """Monotonic counts (a histogram), counts that are not (a span's increases can be), empty
    and negative totals, ranks in the +Inf bucket, equal quantiles."""
    rng = random.Random(5)
    bounds = list(LATENCY_BUCKETS_SECONDS)
    choices = (0.0, 0.0, 1.0, 2.0, 5.0, 100.0)
    for _ in range(20000):
        counts = [rng.choice(choices) + rng.random() * rng.choice((0, 1, 50)) for _ in bounds]
        counts.append(rng.choice((0.0, 3.0, 400.0)))
        if rng.random() < 0.6:
            cumulative, total = [], 0.0
            for c in counts:
                total += c
                cumulative.append(total)
        else:
            cumulative = [c - rng.random() * 4 for c in counts]  # anything, even a fall
        qs = sorted(rng.sample((0.0, 0.01, 0.5, 0.5, 0.95, 0.99, 1.0), k=rng.randint(1, 3)))
        expected = tuple(histogram_quantile(q, bounds, cumulative) for q in qs)
        assert histogram_quantiles(qs, bounds, cumulative) == expected


def test_several_quantiles_need_them_in_increasing_order() -> None:
    cumulative = [1.0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
    with pytest.raises(ValueError, match="increasing"):
        histogram_quantiles((0.95, 0.5), LATENCY_BUCKETS_SECONDS, cumulative)
    with pytest.raises(ValueError, match="increasing"):
        histogram_quantiles((float("nan"),), LATENCY_BUCKETS_SECONDS, cumulative)
