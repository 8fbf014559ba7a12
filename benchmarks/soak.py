"""Soak run of the decision service against a real local Prometheus (``make soak``).

Starts a synthetic exporter (a canary and a stable version in the demo apps' metric names, fed
continuously, plus other workloads' series), a real ``prometheus`` scraping it, and the service
as users run it (``python -m decision_service``, with a bearer token), then:

1. holds concurrency 64, then 256, for ``--seconds`` each (keep-alive connections, every
   request a full decision) and reports answers by status, errors, p50/p99 latency and
   decisions/s;
2. stalls Prometheus (``SIGSTOP``) for ``--stall-seconds`` under concurrency 16: how the
   decisions fail (503s and how long they took: the deadline is PROMETHEUS_TIMEOUT_SECONDS),
   then resumes it (``SIGCONT``) and reports how long until a decision and ``/readyz`` are
   200 again;
3. reports the service's RSS before the load, after it, and its peak.

An "error" is anything but a 200 during the load phases (a 503, another status, a connection
failure or a request past ``--request-timeout``); during the stall, 503s are the expected
answer and only their latency is judged. Figures only; nothing is asserted.

The Prometheus launcher and the synthetic exporter are small local copies: the shared launcher
is being moved (to ``demo_apps/local/prometheus.py``) and benchmarks do not import from
``tests/``. Point this script at the shared launcher once that move has landed.

Usage: ``python benchmarks/soak.py [--seconds 30] [--stall-seconds 10] [--model PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.histogram import LATENCY_BUCKETS_SECONDS  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH  # noqa: E402

LOOPBACK = "127.0.0.1"
CANARY, STABLE = "7c9d5f6b8", "5f8b7c6d4"
TOKEN = "soak-token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def memory_mib(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of ``pid``, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# --------------------------------------------------------------------------- the exporter


@dataclass
class Pod:
    """Counters of one pod-template hash, in the demo apps' metric names."""

    pod_template_hash: str
    track: str
    requests: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0})
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS_SECONDS) + 1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, requests: int, errors: int, latency_seconds: float) -> None:
        with self.lock:
            self.requests["200"] += requests - errors
            self.requests["500"] += errors
            for i, bound in enumerate(LATENCY_BUCKETS_SECONDS):
                if latency_seconds <= bound:
                    self.buckets[i] += requests
            self.buckets[-1] += requests

    def exposition(self) -> str:
        labels = f'track="{self.track}",rollouts_pod_template_hash="{self.pod_template_hash}"'
        with self.lock:
            lines = [
                f'http_requests_total{{code="{c}",{labels}}} {v}' for c, v in self.requests.items()
            ]
            bounds = [repr(b) for b in LATENCY_BUCKETS_SECONDS] + ["+Inf"]
            lines += [
                f'http_request_duration_seconds_bucket{{{labels},le="{b}"}} {v}'
                for b, v in zip(bounds, self.buckets, strict=True)
            ]
        return "\n".join(lines) + "\n"


class Exporter:
    """``/metrics`` on a loopback port for the pods it holds."""

    def __init__(self) -> None:
        self.pods: list[Pod] = []
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "# TYPE http_requests_total counter\n"
                    "# TYPE http_request_duration_seconds histogram\n"
                    + "".join(pod.exposition() for pod in exporter.pods)
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.address = f"{LOOPBACK}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def pod(self, pod_template_hash: str, track: str) -> Pod:
        pod = Pod(pod_template_hash, track)
        self.pods.append(pod)
        return pod

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def feed(canary: Pod, stable: Pod, stop: threading.Event) -> None:
    """About 10 % canary / 90 % stable traffic with a little noise, until ``stop``."""
    rng = random.Random(1)
    while not stop.wait(0.1):
        canary.serve(10, rng.randint(0, 1), rng.uniform(0.03, 0.06))
        stable.serve(90, rng.randint(0, 2), rng.uniform(0.03, 0.05))


# --------------------------------------------------------------------------- Prometheus


@contextlib.contextmanager
def prometheus(binary: str, target: str, scrape_interval: str) -> Iterator[tuple[str, int]]:
    """A real Prometheus on a free loopback port scraping ``target``: (URL, pid)."""
    folder = Path(tempfile.mkdtemp(prefix="soak-prometheus-"))
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {"job_name": "soak", "honor_labels": True, "static_configs": [{"targets": [target]}]}
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        url = f"http://{LOOPBACK}:{port}"
        try:
            wait_http(f"{url}/-/ready", 30)
            yield url, process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            shutil.rmtree(folder, ignore_errors=True)


def wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> float:
    """Seconds until ``url`` answers 200 (SystemExit past ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError):
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer 200 within {timeout}s")


# --------------------------------------------------------------------------- load


class Client:
    """A minimal HTTP/1.1 keep-alive client: the load generator should cost little CPU."""

    def __init__(self, port: int, body: bytes) -> None:
        self._port = port
        self._request = (
            f"POST /v1/decide HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def decide(self) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self._port)
        assert self._reader is not None
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self._reader.readexactly(length)
        if b"connection: close" in head.lower():
            await self.close()
        return status

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, every answered request
    statuses: dict[str, int] = field(default_factory=dict)
    slowest_503: float = 0.0

    def count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return self.requests - self.statuses.get("200", 0)

    def line(self) -> str:
        ms = np.asarray(self.latencies) * 1000 if self.latencies else np.asarray([0.0])
        return (
            f"{self.name}: {self.requests} requests in {self.seconds:.0f} s "
            f"({self.requests / max(self.seconds, 1e-9):.0f}/s), errors {self.errors} "
            f"{dict(sorted(self.statuses.items()))}, p50 {np.percentile(ms, 50):.0f} ms, "
            f"p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms"
        )


async def hold_load(
    port: int, body: bytes, concurrency: int, seconds: float, request_timeout: float, phase: Phase
) -> None:
    """``concurrency`` clients, each sending decisions back to back for ``seconds``."""
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        client = Client(port, body)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                status = await asyncio.wait_for(client.decide(), request_timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                phase.count(type(exc).__name__)
                await client.close()
                continue
            elapsed = time.monotonic() - started
            phase.latencies.append(elapsed)
            phase.count(str(status))
            if status == 503:
                phase.slowest_503 = max(phase.slowest_503, elapsed)
        await client.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.monotonic() - started


async def _one_decision(port: int, body: bytes) -> int:
    client = Client(port, body)
    try:
        return await client.decide()
    finally:
        await client.close()


def stall_prometheus(
    prometheus_pid: int,
    url: str,
    port: int,
    body: bytes,
    stall_seconds: float,
    request_timeout: float,
) -> tuple[Phase, float, float]:
    """SIGSTOP Prometheus under concurrency 16, SIGCONT it: the stall's answers, and the
    seconds from the resume to a 200 decision and to a 200 ``/readyz``."""
    phase = Phase("stall (concurrency 16)")
    os.kill(prometheus_pid, signal.SIGSTOP)
    try:
        asyncio.run(hold_load(port, body, 16, stall_seconds, request_timeout, phase))
    finally:
        os.kill(prometheus_pid, signal.SIGCONT)
    resumed = time.monotonic()
    decided = ready = None
    while time.monotonic() - resumed < 60 and (decided is None or ready is None):
        if decided is None and asyncio.run(_one_decision(port, body)) == 200:
            decided = time.monotonic() - resumed
        if ready is None:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/readyz", timeout=5) as response,
            ):
                if response.status == 200:
                    ready = time.monotonic() - resumed
        time.sleep(0.02)
    return phase, decided if decided is not None else -1.0, ready if ready is not None else -1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    parser.add_argument("--request-timeout", type=float, default=5.0, help="Argo's timeoutSeconds")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_BIN", "prometheus"))
    parser.add_argument("--scrape-interval", default="5s")
    parser.add_argument("--window", default="30s", help="ANALYSIS_WINDOW of the service")
    parser.add_argument("--warmup-seconds", type=float, default=40.0, help="canary age first")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no model (train/export it, or pass --model)")

    exporter = Exporter()
    canary, stable = exporter.pod(CANARY, "canary"), exporter.pod(STABLE, "stable")
    for i in range(20):  # other workloads' series in the same Prometheus
        exporter.pod(f"other{i:02d}", "stable").serve(100, 1, 0.05)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(canary, stable, stop), daemon=True)
    feeder.start()
    log_path = Path(tempfile.mkdtemp(prefix="soak-service-")) / "service.log"
    try:
        with prometheus(args.prometheus, exporter.address, args.scrape_interval) as (prom, ppid):
            port = free_port()
            env = {
                **os.environ,
                "MODEL_PATH": str(args.model),
                "PROMETHEUS_URL": prom,
                "ANALYSIS_WINDOW": args.window,
                "QUERY_PRESET": "demo",
                "API_TOKEN": TOKEN,
                "LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO_ROOT),
            }
            env.pop("API_TOKEN_FILE", None)
            with log_path.open("wb") as logs:
                service = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "decision_service",
                        "--host",
                        LOOPBACK,
                        "--port",
                        str(port),
                    ],
                    env=env,
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                )
                try:
                    report(args, port, service.pid, ppid)
                finally:
                    service.send_signal(signal.SIGTERM)
                    try:
                        service.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        service.kill()
    finally:
        stop.set()
        feeder.join(timeout=2)
        exporter.close()
    print(f"service log: {log_path}")
    return 0


def report(args: argparse.Namespace, port: int, pid: int, prometheus_pid: int) -> None:
    url = f"http://{LOOPBACK}:{port}"
    wait_http(f"{url}/readyz", 30)
    print(f"service ready (pid {pid}); canary ageing {args.warmup_seconds:.0f} s", flush=True)
    time.sleep(args.warmup_seconds)
    body = json.dumps(
        {
            "namespace": "shop",
            "rollout": "checkout",
            "canary_hash": CANARY,
            "stable_hash": STABLE,
            "step_weight": "10",
        }
    ).encode()
    warm = Phase("warm-up")
    asyncio.run(hold_load(port, body, 4, 3.0, args.request_timeout, warm))
    rss_before, _ = memory_mib(pid)
    phases = []
    for concurrency in args.concurrency:
        phase = Phase(f"concurrency {concurrency}")
        asyncio.run(hold_load(port, body, concurrency, args.seconds, args.request_timeout, phase))
        phases.append(phase)
        print(phase.line(), flush=True)
    rss_after, peak = memory_mib(pid)
    stall, decided, ready = stall_prometheus(
        prometheus_pid, url, port, body, args.stall_seconds, args.request_timeout
    )
    print(
        f"{stall.line()}; slowest 503 {stall.slowest_503 * 1000:.0f} ms\n"
        f"after Prometheus resumed: first 200 decision in {decided:.2f} s, "
        f"/readyz 200 in {ready:.2f} s"
    )
    rss_end, peak_end = memory_mib(pid)
    print(
        f"service RSS: {rss_before:.1f} MiB before the load, {rss_after:.1f} MiB after it "
        f"({rss_after - rss_before:+.1f} MiB), {rss_end:.1f} MiB after the stall; "
        f"peak {max(peak, peak_end):.1f} MiB"
    )
    print(f"model: {args.model}; scrape {args.scrape_interval}, ANALYSIS_WINDOW {args.window}")


if __name__ == "__main__":
    sys.exit(main())
