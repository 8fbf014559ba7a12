"""The load generator's HTTP client (:class:`KeepAliveClient`) against aiohttp, on real demo apps.

Starts the stable and canary demo apps (``python -m demo_apps.app`` on loopback, as the demo
stack does) and, in this one process, drives them with each client in turn, the same number of
requests in flight (``--concurrency``, half on each app) for ``--seconds`` each, the order
alternating over ``--rounds`` rounds:

* ``keepalive``: :class:`demo_apps.local.loadgen.KeepAliveClient`, one per app;
* ``aiohttp``: one ``aiohttp.ClientSession`` with ``TCPConnector(limit=concurrency)``, the body
  read as the keep-alive client reads it.

It prints, per client, requests per second and this process' CPU time per request (the
client's cost: the apps run in other processes), then their ratios. By default the apps serve
an ``instant`` scenario (no drawn latency, no errors) so that the clients, not the scenario's
latency, set the pace; ``--scenario healthy`` measures with the demo's own latencies. The apps
share the machine with the client, as in the demo, so a client that costs more CPU also leaves
less to the apps.

Usage: ``python benchmarks/bench_loadgen.py [--seconds 5] [--concurrency 64] [--rounds 3]
[--scenario instant|NAME|FILE]``. Needs aiohttp (the ``dev`` extra). Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from demo_apps.local.loadgen import KeepAliveClient  # noqa: E402
from demo_apps.local.processes import (  # noqa: E402
    LOOPBACK,
    ManagedProcess,
    free_port,
    loopback_env,
    wait_ready,
)

INSTANT_SCENARIO = """\
name: instant
truth: good
description: Answers at once, without errors, so that the load generator's client sets the pace.
traffic: {requests_per_second: 100}
stable: {error_rate: 0.0, latency_p50_ms: 0.001, latency_spread: 0.001}
"""

Get = Callable[[str], Awaitable[int]]


@dataclass
class Run:
    client: str
    requests: int
    errors: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / max(self.requests, 1)


async def drive(name: str, get: Get, urls: list[str], concurrency: int, seconds: float) -> Run:
    """``concurrency`` workers, each sending its next request as soon as the last one answers."""
    requests = errors = 0
    deadline = 0.0

    async def worker(url: str) -> None:
        nonlocal requests, errors
        while time.monotonic() < deadline:
            status = await get(url)
            requests += 1
            errors += status >= 500

    for url in urls:  # warm-up: connections open, the apps' first requests served
        await asyncio.gather(*(get(url) for _ in range(concurrency // len(urls))))
    cpu, started = time.process_time(), time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    return Run(name, requests, errors, elapsed, time.process_time() - cpu)


async def with_keepalive(urls: list[str], concurrency: int, seconds: float) -> Run:
    clients = {url: KeepAliveClient(url) for url in urls}
    try:
        return await drive("keepalive", lambda url: clients[url].get(), urls, concurrency, seconds)
    finally:
        for client in clients.values():
            client.close()


async def with_aiohttp(urls: list[str], concurrency: int, seconds: float) -> Run:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        return await drive("aiohttp", get, urls, concurrency, seconds)


def start_apps(scenario: str, folder: Path) -> tuple[list[ManagedProcess], list[str]]:
    processes, urls = [], []
    for track in ("stable", "canary"):
        port = free_port()
        argv = [sys.executable, "-m", "demo_apps.app", "--host", LOOPBACK, "--port", str(port)]
        env = {"APP_TYPE": track, "SCENARIO": scenario, "PYTHONPATH": str(REPO_ROOT)}
        process = ManagedProcess(f"app-{track}", argv, loopback_env(env), folder / f"{track}.log")
        processes.append(process.start())
        urls.append(f"http://{LOOPBACK}:{port}/")
    for process, url in zip(processes, urls, strict=True):
        wait_ready(process, f"{url}healthz", 30)
    return processes, urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per client and round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", default="instant", help="instant, a shipped name or a file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
    scenario = args.scenario
    if scenario == "instant":
        scenario = str(folder / "instant.yaml")
        Path(scenario).write_text(INSTANT_SCENARIO)
    processes, urls = start_apps(scenario, folder)
    runs: dict[str, list[Run]] = {"keepalive": [], "aiohttp": []}
    try:
        for round_number in range(args.rounds):
            order = [with_keepalive, with_aiohttp]
            for measure in order if round_number % 2 == 0 else order[::-1]:
                run = asyncio.run(measure(urls, args.concurrency, args.seconds))
                runs[run.client].append(run)
                print(
                    f"round {round_number + 1} {run.client:<9s} {run.per_second:7.0f} req/s, "
                    f"{run.cpu_us_per_request:6.0f} µs CPU/request, {run.errors} errors",
                    flush=True,
                )
    finally:
        for process in reversed(processes):
            process.stop()
    print(
        f"scenario {args.scenario}, {args.concurrency} in flight, {args.seconds:g} s x "
        f"{args.rounds} rounds (medians):"
    )
    median = {
        name: (
            statistics.median(r.per_second for r in rs),
            statistics.median(r.cpu_us_per_request for r in rs),
        )
        for name, rs in runs.items()
    }
    for name, (rps, cpu) in median.items():
        print(f"  {name:<9s} {rps:7.0f} req/s, {cpu:6.0f} µs CPU/request")
    (k_rps, k_cpu), (a_rps, a_cpu) = median["keepalive"], median["aiohttp"]
    print(
        f"  keepalive / aiohttp: {k_rps / a_rps:.2f}x the requests/s, "
        f"{k_cpu / a_cpu:.2f}x the CPU per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
