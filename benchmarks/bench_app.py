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
import sys
import tempfile
import time
from pathlib import Path

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
    LOOPBACK,
)

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
    def baseline(port: int) -> list[str]:
        return [sys.executable, "-c", FASTAPI_ROOT, LOOPBACK, str(port)]

    process, url = start_app(app, "stable", scenario, folder, None if app == "asgi" else baseline)
    try:
        assert process.pid is not None
        requests, elapsed, cpu = asyncio.run(drive(url, process.pid, concurrency, seconds))
        return Run(app, requests, elapsed, cpu)
    finally:
        process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_arguments(parser, "app")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    scenario = scenario_path(args.scenario, folder)
    runs = alternate(
        ("asgi", "fastapi"),
        args.rounds,
        lambda app: measure(app, scenario, folder, args.concurrency, args.seconds),
        "app CPU",
    )
    print_medians(runs, heading(args), "app CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
