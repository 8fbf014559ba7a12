"""The demo app's ``GET /``: plain ASGI (:class:`demo_apps.app.server.ServeRoot`) against FastAPI.

Starts two demo apps on loopback, one after the other in each round, and drives each with the
load generator's :class:`~demo_apps.local.loadgen.KeepAliveClient` (``--concurrency`` requests
in flight, each sent as soon as the last answers) for ``--seconds``:

* ``asgi``: ``python -m demo_apps.app``, the app as the demo and the image run it;
* ``fastapi``: the same FastAPI app with ``GET /`` served through a FastAPI route instead, as it
  was before :class:`ServeRoot` (a plain ``def`` dependency giving the state, which FastAPI runs
  in a worker thread; the counters labelled per request; a ``JSONResponse``): the baseline,
  started by this script.

It prints, per app, the requests per second and the app process' CPU time per request (read
from ``/proc``: Linux only), then their ratios. The scenario defaults to ``instant`` (no drawn
latency, no errors) so that the app, not the scenario, sets the pace. Usage:
``python benchmarks/bench_app.py [--seconds 5] [--concurrency 64] [--rounds 3]
[--scenario instant|NAME|FILE]``. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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
description: Answers at once, without errors, so that the app sets the pace.
traffic: {requests_per_second: 100}
stable: {error_rate: 0.0, latency_p50_ms: 0.001, latency_spread: 0.001}
"""

#: The baseline: the shipped app's FastAPI routes, ``GET /`` added back as a FastAPI route.
FASTAPI_ROOT = """
import asyncio, sys, time
from typing import Annotated
import uvicorn
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from demo_apps.app.server import AppState, create_app

app = create_app().app

def state_of(request: Request) -> AppState:  # sync, as it was: FastAPI runs it in a thread
    return request.app.state.demo

@app.get("/")
async def serve(state: Annotated[AppState, Depends(state_of)]) -> JSONResponse:
    started = time.perf_counter()
    outcome = state.behaviour.outcome(time.time())
    await asyncio.sleep(outcome.latency_seconds)
    track, version = state.settings.app_type, state.version
    code = "500" if outcome.error else "200"
    elapsed = time.perf_counter() - started
    state.requests_total.labels(code, version, track).inc()
    state.duration.labels(version, track).observe(elapsed)
    state.totals.requests += 1
    state.totals.errors += outcome.error
    state.totals.latency_seconds += elapsed
    if outcome.error:
        return JSONResponse({"error": "failed"}, status_code=500)
    return JSONResponse({"version": version, "track": track})

uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


@dataclass
class Run:
    app: str
    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / max(self.requests, 1)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, pid: int, concurrency: int, seconds: float) -> tuple[int, float, float]:
    client = KeepAliveClient(url)
    requests = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal requests
        while time.monotonic() < deadline:
            await client.get()
            requests += 1

    try:
        await asyncio.gather(*(client.get() for _ in range(concurrency)))  # warm-up
        cpu, started = process_cpu_seconds(pid), time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests, time.monotonic() - started, process_cpu_seconds(pid) - cpu
    finally:
        client.close()


def measure(app: str, scenario: str, folder: Path, concurrency: int, seconds: float) -> Run:
    port = free_port()
    if app == "asgi":
        argv = [sys.executable, "-m", "demo_apps.app", "--host", LOOPBACK, "--port", str(port)]
    else:
        argv = [sys.executable, "-c", FASTAPI_ROOT, LOOPBACK, str(port)]
    env = {"APP_TYPE": "stable", "SCENARIO": scenario, "PYTHONPATH": str(REPO_ROOT)}
    process = ManagedProcess(f"app-{app}", argv, loopback_env(env), folder / f"{app}.log").start()
    try:
        url = f"http://{LOOPBACK}:{port}/"
        wait_ready(process, f"{url}healthz", 30)
        assert process.pid is not None
        requests, elapsed, cpu = asyncio.run(drive(url, process.pid, concurrency, seconds))
        return Run(app, requests, elapsed, cpu)
    finally:
        process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per app and round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", default="instant", help="instant, a shipped name or a file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    scenario = args.scenario
    if scenario == "instant":
        scenario = str(folder / "instant.yaml")
        Path(scenario).write_text(INSTANT_SCENARIO)
    runs: dict[str, list[Run]] = {"asgi": [], "fastapi": []}
    for round_number in range(args.rounds):
        order = ["asgi", "fastapi"] if round_number % 2 == 0 else ["fastapi", "asgi"]
        for app in order:
            run = measure(app, scenario, folder, args.concurrency, args.seconds)
            runs[app].append(run)
            print(
                f"round {round_number + 1} {app:<8s} {run.per_second:7.0f} req/s, "
                f"{run.cpu_us_per_request:6.0f} µs app CPU/request",
                flush=True,
            )
    print(
        f"scenario {args.scenario}, {args.concurrency} in flight, {args.seconds:g} s x "
        f"{args.rounds} rounds (medians):"
    )
    median = {
        app: (
            statistics.median(r.per_second for r in rs),
            statistics.median(r.cpu_us_per_request for r in rs),
        )
        for app, rs in runs.items()
    }
    for app, (rps, cpu) in median.items():
        print(f"  {app:<8s} {rps:7.0f} req/s, {cpu:6.0f} µs app CPU/request")
    (a_rps, a_cpu), (f_rps, f_cpu) = median["asgi"], median["fastapi"]
    print(
        f"  asgi / fastapi: {a_rps / f_rps:.2f}x the requests/s, "
        f"{a_cpu / f_cpu:.2f}x the CPU per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
