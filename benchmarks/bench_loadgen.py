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
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from paired_rounds import (  # noqa: E402
    Run,
    add_round_arguments,
    alternate,
    heading,
    print_medians,
    scenario_path,
    start_app,
)

from demo_apps.local.loadgen import KeepAliveClient  # noqa: E402
from demo_apps.local.processes import (  # noqa: E402
    ManagedProcess,
)

Get = Callable[[str], Awaitable[int]]


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
    return Run(name, requests, elapsed, time.process_time() - cpu, errors)


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
    try:
        for track in ("stable", "canary"):
            process, url = start_app(track, track, scenario, folder)
            processes.append(process)
            urls.append(url)
    except BaseException:
        for process in processes:
            process.stop()
        raise
    return processes, urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_arguments(parser, "client")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
    processes, urls = start_apps(scenario_path(args.scenario, folder), folder)
    clients = {"keepalive": with_keepalive, "aiohttp": with_aiohttp}
    try:
        runs = alternate(
            ("keepalive", "aiohttp"),
            args.rounds,
            lambda name: asyncio.run(clients[name](urls, args.concurrency, args.seconds)),
            "CPU",
        )
    finally:
        for process in reversed(processes):
            process.stop()
    print_medians(runs, heading(args), "CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
