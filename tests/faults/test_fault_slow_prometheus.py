"""A slow Prometheus against the real service process: bounded 503s, never a promote, and
recovery within one deadline of Prometheus recovering.

Prometheus (the project's fake, answering a healthy canary) sits behind a loopback proxy that
answers late (3 s) or drips its answers (one byte every 0.25 s: a per-read timeout never fires).
The model always says promote, so an answer built from a guess would show. Each wave is 24
concurrent decisions for canaries the service has not seen (two queries each) plus a
``/readyz``: three times the 8 query workers. Before the deadline freed the workers, the 503s
came at up to 4.5 s (the template's ``timeoutSeconds`` is 5) and, after a drip, ``/readyz``
stayed 503 for about a minute after Prometheus was healthy again (minutes with a real
Prometheus's larger answers).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus
from tests.support.service import BODY
from tests.support.service_process import ServiceProcess
from tests.support.tcp_proxy import FaultProxy, Mode

#: PROMETHEUS_TIMEOUT_SECONDS, the chart's default: the deadline of a decision.
DEADLINE = 2.0
#: What an answer may take beyond the deadline (event loop, HTTP, a busy test machine).
SLACK = 0.6
#: The AnalysisTemplate's timeoutSeconds: past it Argo counts an Error without an answer.
ARGO_TIMEOUT = 5.0
WAVES, PER_WAVE = 3, 24


def _call(url: str, body: dict[str, str] | None = None) -> tuple[int, float, dict[str, object]]:
    """Status, seconds and JSON answer of a GET (no body) or a POST."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=ARGO_TIMEOUT + 5) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    return status, time.monotonic() - started, json.loads(payload)


@pytest.fixture(scope="module")
def stack(models: dict[str, Path]) -> Iterator[tuple[ServiceProcess, FaultProxy]]:
    with (
        FakePrometheus(demo_prometheus(Traffic(300, 1), Traffic(1200, 4))) as fake,
        FaultProxy(int(fake.url.rsplit(":", 1)[1])) as proxy,
        ServiceProcess(
            {
                "MODEL_PATH": str(models["promote"]),
                "PROMETHEUS_URL": proxy.url,
                "PROMETHEUS_TIMEOUT_SECONDS": str(DEADLINE),
            }
        ) as service,
    ):
        yield service, proxy


@pytest.mark.parametrize(("mode", "delay"), [("drip", 0.25), ("late", 3.0)])
def test_slow_prometheus_gives_bounded_503s_and_the_service_recovers(
    stack: tuple[ServiceProcess, FaultProxy], mode: Mode, delay: float
) -> None:
    service, proxy = stack
    decide = f"{service.url}/v1/decide"
    proxy.set("pass")
    assert _call(decide, BODY)[0] == 200
    proxy.set(mode, delay)
    with ThreadPoolExecutor(max_workers=PER_WAVE + 4) as pool:
        futures = []
        for wave in range(WAVES):
            bodies = [BODY | {"canary_hash": f"{mode}{wave}x{i}"} for i in range(PER_WAVE)]
            futures += [pool.submit(_call, decide, body) for body in bodies]
            futures.append(pool.submit(_call, f"{service.url}/readyz"))
            time.sleep(1.0)
        answers = [future.result() for future in futures]
    statuses = {status for status, _, _ in answers}
    slowest = max(seconds for _, seconds, _ in answers)
    assert statuses == {503}, statuses  # never a decision, so never a promote
    assert {answer["error"] for _, _, answer in answers} <= {"prometheus_unavailable", "not_ready"}
    assert slowest < DEADLINE + SLACK < ARGO_TIMEOUT, f"a 503 took {slowest:.2f}s"

    proxy.set("pass")  # Prometheus is healthy again; the slow answers already sent go on
    healed = time.monotonic()
    ready = decided = None
    while time.monotonic() - healed < DEADLINE + 10:
        ready = _call(f"{service.url}/readyz")
        decided = _call(decide, BODY)
        if ready[0] == 200 and decided[0] == 200:
            break
        time.sleep(0.1)
    recovered = time.monotonic() - healed
    assert ready is not None and ready[0] == 200 and decided is not None and decided[0] == 200
    assert recovered < DEADLINE + SLACK, f"recovered {recovered:.1f}s after Prometheus"
