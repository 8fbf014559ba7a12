"""Latency histogram buckets and Prometheus' ``histogram_quantile``, in one place.

The demo apps export ``http_request_duration_seconds`` with :data:`LATENCY_BUCKETS_SECONDS`, and
the simulator produces the same cumulative bucket counts, so a latency quantile is estimated the
same way (and with the same bucket error) in the simulator as by the live Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

LATENCY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.125, 0.15, 0.2,
    0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip


def histogram_quantile(
    q: float, upper_bounds: Sequence[float], cumulative_counts: Sequence[float]
) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative bucket counts.

    ``upper_bounds`` are the finite ``le`` bounds in increasing order; ``cumulative_counts`` has
    one more entry, the ``+Inf`` bucket (the total). Linear interpolation inside the bucket that
    holds the rank, the first bucket starting at 0, a rank in ``+Inf`` giving the highest finite
    bound: as Prometheus does it. ``None`` when the histogram is empty (Prometheus: NaN).
    """
    if len(cumulative_counts) != len(upper_bounds) + 1:
        raise ValueError("cumulative_counts needs one entry per bound plus the +Inf bucket")
    total = cumulative_counts[-1]
    if not total > 0 or math.isnan(q):
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(upper_bounds, cumulative_counts, strict=False):
        if count >= rank:
            in_bucket = count - previous_count
            if in_bucket <= 0:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / in_bucket
        previous_bound, previous_count = bound, count
    return upper_bounds[-1]
