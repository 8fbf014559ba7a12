"""A real Prometheus scraping canaries in known states, for the decision service's tests.

``live_stack()`` starts Prometheus (250 ms scrapes) on a synthetic app fed from a thread by the
wall clock, and stages the canaries below; ``tests/decision_service/test_prometheus_live.py``
uses it once per module. :func:`feed_by_wall_clock` (that thread's loop) also feeds the fault
tests' pods.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from demo_apps.local.prometheus import PrometheusServer
from demo_apps.local.synthetic import SyntheticApp, SyntheticPod, synthetic_prometheus

WINDOW = "3s"
CANARY_SPAN_BURST = (200, 60)  # requests, errors: the c-span canary's first moments
STABLE_SPAN_HISTORY = (1000, 100)  # s-span's requests and errors before c-span appeared


@dataclass
class LiveStack:
    """A real Prometheus scraping canaries in known states (see :func:`live_stack`)."""

    prometheus: PrometheusServer
    app: SyntheticApp
    pods: dict[str, SyntheticPod]
    burst_at: float

    @property
    def url(self) -> str:
        return self.prometheus.url


#: Requests per second, error ratio and latency (seconds) of one fed pod.
Rate = tuple[float, float, float]

#: Requests per second and error ratio of the fed pods, and their latency (seconds).
FEED: dict[str, Rate] = {
    "s-main": (200.0, 0.01, 0.032),
    "s-span": (200.0, 0.01, 0.032),
    "c-healthy": (50.0, 0.0, 0.032),
    "c-broken": (50.0, 0.4, 0.9),
    "c-span": (50.0, 0.0, 0.032),
}


def feed_by_wall_clock(
    pods: Mapping[str, SyntheticPod], rates: Mapping[str, Rate], stop: threading.Event
) -> None:
    """Serve each pod its :data:`Rate` by the wall clock (not by ticks, which a busy machine
    slows) until ``stop``. ``pods`` is read at every tick: a name not in it (yet) is skipped
    and owes nothing."""
    owed = dict.fromkeys(rates, 0.0)
    errors_owed = dict.fromkeys(rates, 0.0)
    last = time.monotonic()
    while not stop.wait(0.05):
        now = time.monotonic()
        elapsed, last = now - last, now
        for name, (rate, error_ratio, latency) in rates.items():
            pod = pods.get(name)
            if pod is None:
                continue
            owed[name] += rate * elapsed
            errors_owed[name] += rate * error_ratio * elapsed
            requests, errors = int(owed[name]), min(int(errors_owed[name]), int(owed[name]))
            owed[name] -= requests
            errors_owed[name] -= errors
            pod.serve(requests, errors, latency)


@contextlib.contextmanager
def live_stack(binary: str) -> Iterator[LiveStack]:
    """A real Prometheus (250 ms scrapes) and a synthetic app, fed from a thread:

    ==========  ===============================================================
    s-main      stable: 200 requests/s, 1 % errors, 32 ms
    s-span      stable like s-main, plus 1000 requests / 100 errors served
                more than 5 s before c-span appeared (outside the canary's life)
    c-healthy   canary: 50 requests/s, no errors, 32 ms
    c-broken    canary: 50 requests/s, 40 % errors, 900 ms
    c-span      canary: a burst of 200 requests / 60 errors when it appeared,
                then like c-healthy (the burst leaves the 3 s window)
    c-idle      canary whose series exist at 0: no request ever
    c-absent    no series at all
    ==========  ===============================================================
    """
    stop = threading.Event()
    with (
        SyntheticApp() as app,
        synthetic_prometheus(binary, app, scrape_interval="250ms") as prom,
    ):
        pods = {
            "s-main": app.pod("s-main", "stable"),
            "s-span": app.pod("s-span", "stable"),
            "c-idle": app.pod("c-idle", "canary"),
        }
        prom.wait_for("count(http_requests_total) >= 6")
        time.sleep(0.6)  # a few scrapes at 0, so increase() counts what follows
        pods["s-span"].serve(*STABLE_SPAN_HISTORY, latency_seconds=0.03)
        feeder = threading.Thread(target=feed_by_wall_clock, args=(pods, FEED, stop), daemon=True)
        feeder.start()
        # The demo preset dates a canary's start up to 5 s early; appear later than that.
        time.sleep(6.0)
        new = {name: app.pod(name, "canary") for name in ("c-healthy", "c-broken", "c-span")}
        prom.wait_for('count(http_requests_total{rollouts_pod_template_hash=~"c-.*"}) >= 8')
        time.sleep(0.6)
        new["c-span"].serve(*CANARY_SPAN_BURST, latency_seconds=0.5)
        burst_at = time.time()
        pods.update(new)
        time.sleep(3.6)  # a full window of the canaries' steady traffic
        prom.wait_for(
            'sum(increase(http_requests_total{rollouts_pod_template_hash="c-healthy"}[3s])) > 100'
        )
        try:
            yield LiveStack(prom, app, pods, burst_at)
        finally:
            stop.set()
            feeder.join(timeout=2)
