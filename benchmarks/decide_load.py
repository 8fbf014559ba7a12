"""What the service benchmarks share (``bench_service.py`` and ``soak.py``).

* :func:`service_stack` (options from :func:`add_stack_arguments`): a synthetic app, a real
  Prometheus scraping it, the traffic of :func:`traffic` and the service of
  :func:`start_service`, all stopped on the way out;
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

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.policy import DEFAULT_MODEL_PATH  # noqa: E402
from demo_apps.local.processes import (  # noqa: E402
    LOOPBACK,
    ManagedProcess,
    StartError,
    free_port,
    loopback_env,
    wait_ready,
)
from demo_apps.local.prometheus import PrometheusServer  # noqa: E402
from demo_apps.local.synthetic import SyntheticApp, synthetic_prometheus  # noqa: E402

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


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`service_stack`: model, Prometheus binary and scrape interval,
    the service's ANALYSIS_WINDOW and how long the canary ages before any load."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_BIN", "prometheus"))
    parser.add_argument("--scrape-interval", default="5s")
    parser.add_argument("--window", default="30s", help="ANALYSIS_WINDOW of the service")
    parser.add_argument("--warmup-seconds", type=float, default=40.0, help="canary age first")


@dataclass
class ServiceStack:
    """What :func:`service_stack` runs: Prometheus, and the ready service on ``port``."""

    prometheus: PrometheusServer
    service: ManagedProcess
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        pid = self.service.pid
        assert pid is not None, "not started"
        return pid


@contextlib.contextmanager
def service_stack(
    args: argparse.Namespace,
    *,
    log_prefix: str,
    log_level: str,
    token: str | None = None,
    prometheus_start_timeout: float = 20.0,
    stop_grace_seconds: float = 10.0,
) -> Iterator[ServiceStack]:
    """A synthetic app fed by :func:`traffic`, a real Prometheus scraping it and the service
    querying it (options of :func:`add_stack_arguments`); everything stops on the way out.
    The service's log is kept (in a temporary folder named after ``log_prefix``)."""
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no model (train/export it, or pass --model)")
    log_path = Path(tempfile.mkdtemp(prefix=log_prefix)) / "service.log"
    with (
        SyntheticApp() as app,
        synthetic_prometheus(
            args.prometheus,
            app,
            scrape_interval=args.scrape_interval,
            start_timeout=prometheus_start_timeout,
        ) as prometheus,
        traffic(app),
    ):
        service, port = start_service(
            model=args.model,
            prometheus_url=prometheus.url,
            window=args.window,
            log_path=log_path,
            log_level=log_level,
            token=token,
        )
        try:
            yield ServiceStack(prometheus, service, port, log_path)
        finally:
            service.stop(grace_seconds=stop_grace_seconds)


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
