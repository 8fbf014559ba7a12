"""What the service benchmarks share (``bench_service.py`` and ``soak.py``).

* :func:`traffic`: the synthetic app's series while the block runs: 20 other workloads, and a
  canary and a stable version fed about 10 % / 90 % with a little noise from a thread;
* :func:`start_service`: the decision service as users run it (``python -m decision_service``)
  on a free loopback port, querying that Prometheus, ready (``/readyz``) on return;
* :class:`DecideClient`: a minimal HTTP/1.1 keep-alive client for ``POST /v1/decide``, so that
  the load generator costs little CPU; :func:`decide_body` is the request both scripts send.

The processes, Prometheus and the synthetic app themselves are :mod:`demo_apps.local`'s (the
launcher the demo stack and the tests use); nothing here imports test code. This module is not
a script: the benchmarks import it from their own folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from demo_apps.local.processes import (  # noqa: E402
    LOOPBACK,
    ManagedProcess,
    StartError,
    free_port,
    loopback_env,
    wait_ready,
)
from demo_apps.local.synthetic import SyntheticApp  # noqa: E402

CANARY, STABLE = "7c9d5f6b8", "5f8b7c6d4"
#: Environment the service must not inherit from the caller's shell: each benchmark says
#: whether it runs with a token.
_INHERITED_SECRETS = ("API_TOKEN", "API_TOKEN_FILE")


def decide_body() -> bytes:
    """The decision request both benchmarks send (canary :data:`CANARY` at weight 10)."""
    return json.dumps(
        {
            "namespace": "shop",
            "rollout": "checkout",
            "canary_hash": CANARY,
            "stable_hash": STABLE,
            "step_weight": "10",
        }
    ).encode()


def _feed(app: SyntheticApp, stop: threading.Event) -> None:
    """About 10 % canary / 90 % stable traffic with a little noise, until ``stop``."""
    canary, stable = app.pod(CANARY, "canary"), app.pod(STABLE, "stable")
    rng = random.Random(1)
    while not stop.wait(0.1):
        canary.serve(10, rng.randint(0, 1), rng.uniform(0.03, 0.06))
        stable.serve(90, rng.randint(0, 2), rng.uniform(0.03, 0.05))


@contextlib.contextmanager
def traffic(app: SyntheticApp) -> Iterator[None]:
    """Other workloads' series in ``app``, and the canary and stable fed while the block runs."""
    for i in range(20):  # other workloads' series in the same Prometheus
        app.pod(f"other{i:02d}", "stable").serve(100, 1, 0.05)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(app, stop), daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join(timeout=2)


def start_service(
    *,
    model: Path,
    prometheus_url: str,
    window: str,
    log_path: Path,
    log_level: str,
    token: str | None = None,
    ready_timeout: float = 30.0,
) -> tuple[ManagedProcess, int]:
    """``python -m decision_service`` (demo preset) on a free port, ready: (process, port).

    With ``token`` the service requires it (``API_TOKEN``); without, it runs open. Neither
    inherits a token from the caller's shell.
    """
    port = free_port()
    env = loopback_env(
        {
            "MODEL_PATH": str(model.resolve()),
            "PROMETHEUS_URL": prometheus_url,
            "ANALYSIS_WINDOW": window,
            "QUERY_PRESET": "demo",
            "LOG_LEVEL": log_level,
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    for name in _INHERITED_SECRETS:
        env.pop(name, None)
    if token is not None:
        env["API_TOKEN"] = token
    service = ManagedProcess(
        "decision-service",
        [sys.executable, "-m", "decision_service", "--host", LOOPBACK, "--port", str(port)],
        env,
        log_path,
    ).start()
    try:
        wait_ready(service, f"http://{LOOPBACK}:{port}/readyz", ready_timeout)
    except StartError:
        service.stop(grace_seconds=15)
        raise
    return service, port


class DecideClient:
    """A minimal HTTP/1.1 keep-alive client for ``POST /v1/decide``: the load generator should
    cost little CPU. It connects on first use (or on :meth:`connect`, to keep the connection's
    set-up out of a measurement) and again after the server closes the connection."""

    def __init__(self, port: int, body: bytes, token: str | None = None) -> None:
        self._port = port
        auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        self._request = (
            f"POST /v1/decide HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self._port)

    async def decide(self) -> tuple[int, bytes]:
        """One decision: the status and the body."""
        if self._writer is None:
            await self.connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self._reader.readexactly(length)
        if b"connection: close" in head.lower():
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
