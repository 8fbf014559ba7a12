"""What the server itself bounds, on the real process (``python -m decision_service``): a
request head (request line and headers) over 16 KiB, and more connections than it serves at
once (``decision_service/__main__.py``).

Before, with uvicorn's default parser, a 50 MB header was read whole (the process grew by about
95 MiB) and answered 200.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from decision_service.__main__ import MAX_CONCURRENCY
from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus
from tests.support.memory import peak_growth
from tests.support.prometheus import LOOPBACK
from tests.support.service import BODY
from tests.support.service_process import ServiceProcess

GROWTH_BOUND_MIB = 30.0


@pytest.fixture(scope="module")
def service(models: dict[str, Path]) -> Iterator[ServiceProcess]:
    with (
        FakePrometheus(demo_prometheus(Traffic(300, 1), Traffic(1200, 4))) as fake,
        ServiceProcess({"MODEL_PATH": str(models["hold"]), "PROMETHEUS_URL": fake.url}) as process,
    ):
        yield process


def _decide(service: ServiceProcess) -> int:
    request = urllib.request.Request(
        f"{service.url}/v1/decide",
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _status(sock: socket.socket) -> int | None:
    """The status of the answer on ``sock``, or None if it closed without one."""
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None


def test_a_50_mb_header_is_refused_and_memory_stays_flat(service: ServiceProcess) -> None:
    sent = 0
    with (
        peak_growth(service.pid) as growth,
        socket.create_connection((LOOPBACK, service.port), timeout=30) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ")
        with contextlib.suppress(OSError):  # the server closes the connection: expected
            while sent < 50_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
            sock.sendall(b"\r\n\r\n")
        status = _status(sock)
    assert status in (400, 431, None), status  # refused, never served
    assert sent < 50_000_000, "the whole header was read"
    assert growth.mib < GROWTH_BOUND_MIB, f"peak RSS rose {growth.mib:.1f} MiB"
    assert _decide(service) == 200


def test_past_its_connection_limit_the_server_answers_503_then_recovers(
    service: ServiceProcess,
) -> None:
    """Idle connections up to the limit (a client that connects and sends nothing): the next
    request gets a 503 at once, and once they close, decisions are answered again."""
    idle: list[socket.socket] = []
    try:
        with peak_growth(service.pid) as growth:
            for _ in range(MAX_CONCURRENCY):
                idle.append(socket.create_connection((LOOPBACK, service.port), timeout=10))
            time.sleep(0.5)  # the server has accepted them all
            started = time.monotonic()
            status = _decide(service)
            elapsed = time.monotonic() - started
        assert status == 503 and elapsed < 1.0
        assert growth.mib < GROWTH_BOUND_MIB, f"peak RSS rose {growth.mib:.1f} MiB"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while _decide(service) != 200:
        assert time.monotonic() < deadline, "no decision 10 s after the connections closed"
        time.sleep(0.1)
