"""Faults with a real Prometheus (250 ms scrapes) scraping synthetic pods, and the real service
process (``python -m decision_service``, a 3 s analysis window) on an always-promote model, so
that a decision made on a guess would show as a promote:

* the stable version's series vanish (its pods stop being scraped): below weight 100 that is
  missing data, hold with ``no_data``; at 100 stable's life-long figures stand in;
* a canary pod restarts (its counters drop to 0): Prometheus' ``increase()`` counts across the
  reset, and the service's counts stay those of an identical pod that did not restart;
* Prometheus is killed: 503s within the deadline, ``/readyz`` 503, never a promote; restarted,
  the service is ready and deciding again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from decision_service.canary_life import LEAD_SECONDS
from tests.conftest import prometheus_binary
from tests.support.live_stack import Rate, feed_by_wall_clock
from tests.support.prometheus import PrometheusServer, SyntheticApp, SyntheticPod
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.prometheus

WINDOW_SECONDS = 3
DEADLINE = 2.0
#: Requests per second, error ratio and latency (s) of the fed pods.
FEED: dict[str, Rate] = {
    "s-keep": (200.0, 0.01, 0.03),
    "s-vanish": (200.0, 0.01, 0.03),
    "c-vanish": (50.0, 0.0, 0.03),
    "c-reset": (60.0, 0.02, 0.03),
    "c-steady": (60.0, 0.02, 0.03),
}


def _restart(pod: SyntheticPod) -> None:
    """The pod's process restarts: every counter of its series is back at 0."""
    with pod.lock:
        pod.requests_by_code = dict.fromkeys(pod.requests_by_code, 0.0)
        pod.bucket_counts = [0.0] * len(pod.bucket_counts)
        pod.latency_sum = 0.0


@contextlib.contextmanager
def _fed_service(
    prometheus: PrometheusServer, pods: dict[str, SyntheticPod], model: Path
) -> Iterator[ServiceProcess]:
    """The pods fed FEED by the wall clock once Prometheus scrapes them, and the service
    (``model``) querying that Prometheus; the feeder stops when the block ends."""
    stop = threading.Event()
    prometheus.wait_for("count(http_requests_total) >= 10")
    feeder = threading.Thread(target=feed_by_wall_clock, args=(pods, FEED, stop), daemon=True)
    feeder.start()
    environment = {
        "MODEL_PATH": str(model),
        "PROMETHEUS_URL": prometheus.url,
        "ANALYSIS_WINDOW": f"{WINDOW_SECONDS}s",
        "PROMETHEUS_TIMEOUT_SECONDS": str(DEADLINE),
        # these tests are about faults on the data path: the shield's partial proof, which a
        # few windows of synthetic traffic cannot give, is off (the full proof stays)
        "SHIELD_PARTIAL_PROOF_WEIGHT": "100",
    }
    try:
        with ServiceProcess(environment) as service:
            yield service
    finally:
        stop.set()
        feeder.join(timeout=2)


@dataclass
class World:
    prometheus: PrometheusServer
    service: ServiceProcess
    pods: dict[str, SyntheticPod]
    stable_app: SyntheticApp  # the app serving only s-vanish


@pytest.fixture(scope="module")
def world(models: dict[str, Path]) -> Iterator[World]:
    with (
        SyntheticApp() as app,
        SyntheticApp() as stable_app,
        PrometheusServer(
            prometheus_binary(), [app.address, stable_app.address], scrape_interval="250ms"
        ) as prometheus,
    ):
        pods = {
            name: (stable_app if name == "s-vanish" else app).pod(
                name, "stable" if name.startswith("s-") else "canary"
            )
            for name in FEED
        }
        with _fed_service(prometheus, pods, models["promote"]) as service:
            time.sleep(WINDOW_SECONDS + 1)  # a full window of traffic
            yield World(prometheus, service, pods, stable_app)


def _decide(
    service: ServiceProcess, canary: str, stable: str, weight: float
) -> tuple[int, dict[str, Any], float]:
    body = {
        "namespace": "shop",
        "rollout": "checkout",
        "canary_hash": canary,
        "stable_hash": stable,
        "step_weight": str(weight),
    }
    request = urllib.request.Request(
        f"{service.url}/v1/decide",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    return status, json.loads(payload), time.monotonic() - started


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_vanished_stable_window_holds_below_100_and_never_promotes(world: World) -> None:
    status, answer, _ = _decide(world.service, "c-vanish", "s-vanish", 30)
    assert status == 200 and (answer["decision"], answer["guardrail"]) == ("promote", None)
    world.stable_app.stop()  # stable's pods are gone: its series go stale in Prometheus
    stopped = time.monotonic()
    answers = []
    while time.monotonic() - stopped < WINDOW_SECONDS + 5:
        status, answer, _ = _decide(world.service, "c-vanish", "s-vanish", 30)
        assert status == 200
        answers.append(answer)
        if answer["guardrail"] == "no_data":
            break
        time.sleep(0.25)
    assert answers[-1]["guardrail"] == "no_data", "stable's window never went missing"
    for weight in (5, 30, 90, 99.5):
        status, answer, _ = _decide(world.service, "c-vanish", "s-vanish", weight)
        assert (status, answer["decision"], answer["guardrail"]) == (200, "hold", "no_data")
        assert "stable.requests" in answer["reason"], answer["reason"]
    # At 100 % stable serves nothing by design: its missing window is not missing data. The
    # policy (this test's always-promote model) decides, and the shield, on by default, lets
    # the promote stand only on proof, which these few seconds of traffic cannot give.
    status, answer, _ = _decide(world.service, "c-vanish", "s-vanish", 100)
    assert status == 200 and answer["guardrail"] != "no_data", answer
    assert (answer["decision"], answer["guardrail"]) in (("promote", None), ("hold", "shield"))


def _counts(answer: dict[str, Any]) -> tuple[float, float]:
    """Canary requests in the window and over its life, from the observation."""
    observation = answer["observation"]
    window = 10 ** (4 * observation["canary_window_requests"]) - 1
    life = 10 ** (5 * observation["canary_total_requests"]) - 1
    return window, life


def test_a_counter_reset_keeps_the_counts_right(world: World) -> None:
    """Two identical canary pods; one restarts. Across the reset the service counts the
    restarted pod's requests as the other's (less what the pod served between its last scrape
    and the restart, at most one scrape's worth: those requests died with the process, and
    the traffic between the two lives' grid points, read on each canary's own grid)."""
    time.sleep(WINDOW_SECONDS)  # both canaries have a full window and some life
    _restart(world.pods["c-reset"])
    restarted = time.monotonic()
    pairs = []
    while time.monotonic() - restarted < WINDOW_SECONDS + 1.5:
        asked = time.monotonic()
        reset = _decide(world.service, "c-reset", "s-keep", 20)
        steady = _decide(world.service, "c-steady", "s-keep", 20)
        apart = time.monotonic() - asked
        assert reset[0] == steady[0] == 200
        assert reset[1]["guardrail"] is None and steady[1]["guardrail"] is None, reset[1]
        pairs.append((_counts(reset[1]), _counts(steady[1]), apart))
        time.sleep(0.2)
    assert len(pairs) >= 5
    rate = FEED["c-reset"][0]
    scrape_worth = rate * 0.25
    # Each canary's life is read on its own grid of windows, up to a sixth of a window before
    # or after the moment it is decided (decision_service.canary_life.grid_point), and the two
    # grids are independent: two lives read `apart` seconds apart may end up to
    # 2 * WINDOW_SECONDS / 6 + apart seconds apart, and differ by that much traffic.
    grids = 2 * min(LEAD_SECONDS, WINDOW_SECONDS / 6)
    for (reset_window, reset_life), (steady_window, steady_life), apart in pairs:
        assert math.isclose(reset_window, steady_window, rel_tol=0.2, abs_tol=scrape_worth + 5)
        offset = rate * (grids + apart)
        assert abs(reset_life - steady_life) <= offset + scrape_worth + 5, (
            reset_life,
            steady_life,
            apart,
        )


@pytest.fixture
def doomed(models: dict[str, Path]) -> Iterator[tuple[PrometheusServer, ServiceProcess]]:
    """A Prometheus of its own, to be killed, and a service querying it."""
    with (
        SyntheticApp() as app,
        PrometheusServer(prometheus_binary(), [app.address], scrape_interval="250ms") as prom,
    ):
        pods = {name: app.pod(name, "stable" if name == "s-keep" else "canary") for name in FEED}
        with _fed_service(prom, pods, models["promote"]) as service:
            yield prom, service


def test_prometheus_killed_is_503_not_ready_never_a_promote_and_recovers(
    doomed: tuple[PrometheusServer, ServiceProcess],
) -> None:
    prometheus, service = doomed
    assert prometheus.pid is not None
    assert _get(f"{service.url}/readyz") == 200
    os.kill(prometheus.pid, signal.SIGKILL)
    time.sleep(0.2)
    for weight in (10, 50, 100):
        status, answer, seconds = _decide(service, "c-steady", "s-keep", weight)
        assert status == 503 and answer["error"] == "prometheus_unavailable", answer
        assert "decision" not in answer and seconds < DEADLINE + 0.6
    assert _get(f"{service.url}/readyz") == 503
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'rollout_agent_prometheus_errors_total{kind="unreachable"} 3.0' in metrics
    assert not any(
        line.startswith("rollout_agent_decisions_total") and not line.endswith(" 0.0")
        for line in metrics.splitlines()
    ), "a decision was counted while Prometheus was dead"

    prometheus.stop()
    prometheus.start()  # the same port, an empty database
    restarted = time.monotonic()
    while _get(f"{service.url}/readyz") != 200:
        assert time.monotonic() - restarted < DEADLINE + 5, "not ready after the restart"
        time.sleep(0.1)
    status, answer, _ = _decide(service, "c-steady", "s-keep", 10)
    assert status == 200 and answer["decision"] in {"hold", "promote"}
