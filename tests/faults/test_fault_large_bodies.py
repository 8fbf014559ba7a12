"""Oversized bodies against the real service process (``python -m decision_service``).

A caller without the token gets a 401 before one byte of its body is read; with the token, a
body over 16 KiB is a 413 as soon as the limit is passed (``Content-Length`` or chunked). The
process's peak resident memory is measured around each: before the gate one 50 MB POST
without a token raised it by about 96 MiB, and four parallel 40 MB ones by about 400 MiB.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus
from tests.support.memory import peak_growth
from tests.support.raw_http import RawAnswer, post_large
from tests.support.service import BODY
from tests.support.service_process import ServiceProcess

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: How far the peak RSS may rise above the resident memory before an attack, MiB.
GROWTH_BOUND_MIB = 30.0
MB = 1_000_000


def _decide(service: ServiceProcess, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"{service.url}/v1/decide",
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture(scope="module")
def service(models: dict[str, Path]) -> Iterator[ServiceProcess]:
    """The service with a token, on a healthy fake Prometheus, warmed up by 20 decisions."""
    with (
        FakePrometheus(demo_prometheus(Traffic(300, 1), Traffic(1200, 4))) as fake,
        ServiceProcess(
            {"MODEL_PATH": str(models["hold"]), "PROMETHEUS_URL": fake.url, "API_TOKEN": TOKEN}
        ) as process,
    ):
        assert all(_decide(process, AUTH) == 200 for _ in range(20))
        yield process


def _check(answer: RawAnswer, status: int) -> None:
    assert answer.status == status, answer
    error = json.loads(answer.body)
    assert set(error) == {"error", "message", "details"}
    expected = {401: "unauthorized", 413: "body_too_large"}[status]
    assert error["error"] == expected
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


CASES = {
    "no token, 50 MB, Content-Length": ({}, False, 401),
    "no token, 50 MB, chunked": ({}, True, 401),
    "wrong token, 50 MB, Content-Length": ({"Authorization": "Bearer guess"}, False, 401),
    "token, 50 MB, Content-Length": (AUTH, False, 413),
    "token, 50 MB, chunked": (AUTH, True, 413),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_50_mb_body_is_refused_without_being_read(service: ServiceProcess, case: str) -> None:
    headers, chunked, status = CASES[case]
    with peak_growth(service.pid) as growth:
        answer = post_large(service.port, "/v1/decide", 50 * MB, headers=headers, chunked=chunked)
    _check(answer, status)
    assert answer.sent < 50 * MB, "the answer came only after the whole body"
    assert growth.mib < GROWTH_BOUND_MIB, f"peak RSS rose {growth.mib:.1f} MiB"


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (AUTH, 413)], ids=["no-token", "token"])
def test_four_parallel_40_mb_bodies(
    service: ServiceProcess, headers: dict[str, str], status: int
) -> None:
    answers: list[RawAnswer] = []
    lock = threading.Lock()

    def attack(chunked: bool) -> None:
        answer = post_large(service.port, "/v1/decide", 40 * MB, headers=headers, chunked=chunked)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=attack, args=(i % 2 == 1,)) for i in range(4)]
    with peak_growth(service.pid) as growth:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(answers) == 4
    for answer in answers:
        _check(answer, status)
    assert growth.mib < GROWTH_BOUND_MIB, f"peak RSS rose {growth.mib:.1f} MiB"


def test_an_unauthenticated_non_json_body_is_401_not_422(service: ServiceProcess) -> None:
    answer = post_large(service.port, "/v1/decide", 2000)
    _check(answer, 401)


def _counter(service: ServiceProcess, name: str) -> float:
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


def test_refusals_are_counted_and_logged_and_the_service_still_decides(
    service: ServiceProcess,
) -> None:
    names = ("rollout_agent_unauthorized_total", "rollout_agent_body_too_large_total")
    before = [_counter(service, name) for name in names]
    logged = len(service.log_lines())
    _check(post_large(service.port, "/v1/decide", 5 * MB, headers={"Authorization": "x"}), 401)
    _check(post_large(service.port, "/v1/decide", 5 * MB, headers=AUTH, chunked=True), 413)
    assert [_counter(service, name) - b for name, b in zip(names, before, strict=True)] == [1, 1]
    refused = [line for line in service.log_lines()[logged:] if line.get("event") == "rejected"]
    assert [(line["level"], line["problem"]) for line in refused] == [
        ("INFO", "not a bearer token"),
        ("INFO", "too large"),
    ]
    assert _decide(service, AUTH) == 200
    with urllib.request.urlopen(f"{service.url}/readyz", timeout=10) as response:
        assert response.status == 200
