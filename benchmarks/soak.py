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

Prometheus (and its stall: :meth:`~demo_apps.local.prometheus.PrometheusServer.paused`), the
synthetic exporter and the service process come from :mod:`demo_apps.local`, the launcher the
demo stack and the tests use; the traffic, the service's start and the client from
``benchmarks/decide_load.py`` (shared with ``bench_service.py``). Nothing here imports test code.

Usage: ``python benchmarks/soak.py [--seconds 30] [--stall-seconds 10] [--model PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decide_load import (  # noqa: E402
    DecideClient,
    ServiceStack,
    add_stack_arguments,
    decide_body,
    service_stack,
)

from demo_apps.local.processes import LOOPBACK, memory_kib  # noqa: E402
from demo_apps.local.prometheus import PrometheusServer  # noqa: E402

TOKEN = "soak-token"


def memory_mib(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of ``pid``, MiB."""
    memory = memory_kib(pid)
    return memory["VmRSS"] / 1024, memory["VmHWM"] / 1024


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
        client = DecideClient(port, body, TOKEN)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(client.decide(), request_timeout)
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
    client = DecideClient(port, body, TOKEN)
    try:
        status, _ = await client.decide()
        return status
    finally:
        await client.close()


def stall_prometheus(
    prometheus: PrometheusServer,
    url: str,
    port: int,
    body: bytes,
    stall_seconds: float,
    request_timeout: float,
) -> tuple[Phase, float, float]:
    """SIGSTOP Prometheus under concurrency 16, SIGCONT it: the stall's answers, and the
    seconds from the resume to a 200 decision and to a 200 ``/readyz``."""
    phase = Phase("stall (concurrency 16)")
    with prometheus.paused():
        asyncio.run(hold_load(port, body, 16, stall_seconds, request_timeout, phase))
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
    add_stack_arguments(parser)
    args = parser.parse_args()

    with service_stack(
        args,
        log_prefix="soak-service-",
        log_level="WARNING",
        token=TOKEN,
        prometheus_start_timeout=30,
        stop_grace_seconds=15,
    ) as stack:
        report(args, stack)
    print(f"service log: {stack.log_path}")
    return 0


def report(args: argparse.Namespace, stack: ServiceStack) -> None:
    port, pid = stack.port, stack.pid
    url = f"http://{LOOPBACK}:{port}"
    print(f"service ready (pid {pid}); canary ageing {args.warmup_seconds:.0f} s", flush=True)
    time.sleep(args.warmup_seconds)
    body = decide_body()
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
        stack.prometheus, url, port, body, args.stall_seconds, args.request_timeout
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
