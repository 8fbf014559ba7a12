"""``histogram_quantile`` pinned to real Prometheus: the same bucket counts, the same answers.

The simulator and the decision service's features estimate latency quantiles with
:func:`decision_service.histogram.histogram_quantile`, and the live demo reads them from
Prometheus' ``histogram_quantile``; the two must agree or live and simulated latencies differ by
more than the buckets' own error. One Prometheus for the module scrapes a synthetic exporter
whose pods each hold one bucket shape (the demo apps' buckets), and every shape's PromQL answer
at q = 0.5, 0.95, 0.99 is compared with the Python function's on the very same counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from decision_service.histogram import LATENCY_BUCKETS_SECONDS, histogram_quantile
from demo_apps.local.prometheus import PrometheusServer
from demo_apps.local.synthetic import SyntheticApp, SyntheticPod, synthetic_prometheus
from tests.conftest import prometheus_binary

pytestmark = pytest.mark.prometheus

QUANTILES = (0.5, 0.95, 0.99)
#: Beyond the last finite bound (10 s): counted in +Inf only.
INF = 20.0

#: Per shape, (latency in seconds, requests) pairs; a latency equal to a bound lands in it.
SHAPES: dict[str, list[tuple[float, int]]] = {
    "all-first-bucket": [(0.005, 100)],
    "all-in-inf": [(INF, 50)],
    "empty-lower-buckets": [(0.5, 40), (2.0, 60)],
    "spread": [(0.01, 5), (0.03, 20), (0.05, 50), (0.2, 20), (1.0, 4), (INF, 1)],
    "tail-in-inf": [(0.02, 90), (INF, 10)],
    "rank-on-a-bound": [(0.1, 50), (0.3, 50)],  # q=0.5: the rank is exactly 0.1's count
    "one-request": [(0.065, 1)],
    "inside-buckets": [(0.012, 3), (0.33, 7), (7.5, 2)],  # between bounds: bucketed all the same
    "no-requests": [],  # Prometheus: NaN; Python: None
}


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[PrometheusServer, dict[str, SyntheticPod]]]:
    binary = prometheus_binary()
    with SyntheticApp() as app:
        pods = {name: app.pod(name, "canary") for name in SHAPES}
        for name, shape in SHAPES.items():
            for latency, requests in shape:
                pods[name].serve(requests, 0, latency)
        # Counts are final before the first scrape: every sample Prometheus holds is the same.
        with synthetic_prometheus(binary, app, scrape_interval="200ms") as prometheus:
            buckets = len(SHAPES) * (len(LATENCY_BUCKETS_SECONDS) + 1)
            prometheus.wait_for(
                "count(http_request_duration_seconds_bucket)",
                lambda result: bool(result) and float(result[0]["value"][1]) == buckets,
            )
            yield prometheus, pods


@pytest.mark.parametrize("q", QUANTILES)
def test_histogram_quantile_matches_prometheus(
    live: tuple[PrometheusServer, dict[str, SyntheticPod]], q: float
) -> None:
    prometheus, pods = live
    answers = {
        series["metric"]["rollouts_pod_template_hash"]: float(series["value"][1])
        for series in prometheus.query(
            f"histogram_quantile({q}, http_request_duration_seconds_bucket)"
        )
    }
    assert set(answers) == set(SHAPES)
    for name, pod in pods.items():
        ours = histogram_quantile(q, LATENCY_BUCKETS_SECONDS, pod.bucket_counts)
        theirs = answers[name]
        if ours is None:
            assert math.isnan(theirs), f"{name}: Prometheus {theirs}, Python None"
        else:
            assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), f"{name} at q={q}"


def test_the_shapes_cover_the_edge_cases(
    live: tuple[PrometheusServer, dict[str, SyntheticPod]],
) -> None:
    """The comparison above is only as good as its shapes: check they reach each edge."""
    _, pods = live
    first, last = LATENCY_BUCKETS_SECONDS[0], LATENCY_BUCKETS_SECONDS[-1]
    assert (
        histogram_quantile(0.99, LATENCY_BUCKETS_SECONDS, pods["all-in-inf"].bucket_counts) == last
    )
    assert histogram_quantile(
        0.5, LATENCY_BUCKETS_SECONDS, pods["all-first-bucket"].bucket_counts
    ) == (pytest.approx(first / 2))
    lower = pods["empty-lower-buckets"].bucket_counts
    assert lower[0] == 0 and lower[LATENCY_BUCKETS_SECONDS.index(0.4)] == 0
    assert histogram_quantile(
        0.5, LATENCY_BUCKETS_SECONDS, pods["rank-on-a-bound"].bucket_counts
    ) == (pytest.approx(0.1))
    assert (
        histogram_quantile(0.5, LATENCY_BUCKETS_SECONDS, pods["no-requests"].bucket_counts) is None
    )
