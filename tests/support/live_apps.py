"""The real demo apps on loopback, for tests that compare their counts with the simulator's.

:func:`live_apps` writes a scenario file and starts ``python -m demo_apps.app`` for each track
(separate processes, as the local stack runs them) with a clock start the test knows, so the
test can tell which scenario interval and scrape period every request fell in. :class:`Pool`
sends requests over keep-alive connections and records when each was sent and answered;
:func:`read_counts` parses an app's ``/metrics`` (requests, errors, latency histogram).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from demo_apps.local.loadgen import KeepAliveClient
from demo_apps.local.processes import LOOPBACK, ManagedProcess, free_port, loopback_env, wait_ready


@dataclass(frozen=True)
class LiveApp:
    track: str
    url: str
    process: ManagedProcess


@dataclass(frozen=True)
class Sent:
    """One request: wall time sent and answered, and the status code."""

    sent: float
    answered: float
    status: int

    @property
    def middle(self) -> float:
        return (self.sent + self.answered) / 2.0


@dataclass(frozen=True)
class Counts:
    """An app's ``/metrics``: requests, errors (5xx) and the cumulative latency histogram."""

    requests: float
    errors: float
    buckets: dict[float, float]  # upper bound (seconds, inf for +Inf) -> cumulative count

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.requests - other.requests,
            self.errors - other.errors,
            {le: self.buckets[le] - other.buckets.get(le, 0.0) for le in self.buckets},
        )


@contextlib.contextmanager
def live_apps(
    folder: Path,
    scenario: Mapping[str, Any],
    *,
    tracks: tuple[str, ...] = ("stable", "canary"),
    seed: int = 0,
    time_scale: float = 1.0,
    interval_seconds: float = 30.0,
    clock_start: float | None = None,
) -> Iterator[dict[str, LiveApp]]:
    """The demo apps serving ``scenario`` (a scenario document), stopped on the way out."""
    path = folder / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(dict(scenario), sort_keys=False))
    start = time.time() if clock_start is None else clock_start
    apps: dict[str, LiveApp] = {}
    try:
        for track in tracks:
            port = free_port()
            env = {
                "APP_TYPE": track,
                "SCENARIO": str(path),
                "SEED": str(seed),
                "TIME_SCALE": repr(time_scale),
                "INTERVAL_SECONDS": repr(interval_seconds),
                "CLOCK_START": repr(start),
            }
            argv = [sys.executable, "-m", "demo_apps.app", "--host", LOOPBACK, "--port", str(port)]
            log = folder / "logs" / f"app-{track}.log"
            process = ManagedProcess(f"app-{track}", argv, loopback_env(env), log).start()
            apps[track] = LiveApp(track, f"http://{LOOPBACK}:{port}", process)
        for app in apps.values():
            wait_ready(app.process, f"{app.url}/healthz", 60.0)
        yield apps
    finally:
        for app in apps.values():
            app.process.stop()


def read_counts(url: str, client: httpx.Client | None = None) -> Counts:
    """Requests, errors and the latency histogram of the app at ``url`` (its ``/metrics``);
    pass a ``client`` to read at a well-defined moment (making one takes milliseconds)."""
    if client is None:
        with httpx.Client(trust_env=False, timeout=10.0) as own:
            return read_counts(url, own)
    text = client.get(f"{url}/metrics").text
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                requests += sample.value
                if sample.labels["code"].startswith("5"):
                    errors += sample.value
            elif sample.name == "http_request_duration_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return Counts(requests, errors, buckets)


@contextlib.contextmanager
def timed_reader() -> Iterator[httpx.Client]:
    """A client for :func:`read_counts`, made before the timed part, and no garbage collection
    in this process until it ends: a window of half a second must hold its requests.

    In CI's full run (by then the pytest process holds some 600,000 objects: a full collection
    takes about 0.1 s, a fresh ``httpx.Client`` 30-50 ms) the first window after a weight change
    once held 109 requests instead of the ~1,900 it holds alone, too few to show the effect.
    """
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        gc.collect()
        gc.disable()
        try:
            yield client
        finally:
            gc.enable()


@dataclass(frozen=True)
class Announced:
    """A weight announcement: when (wall time, the middle of the exchange) and the answer."""

    at: float
    state: dict[str, Any]


def put_weight(url: str, weight: float) -> Announced:
    """Announce the canary's traffic share, as the load generator does."""
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        sent = time.time()
        response = client.put(f"{url}/control/weight", json={"weight": weight})
        answered = time.time()
    response.raise_for_status()
    return Announced((sent + answered) / 2, response.json())


def control(url: str) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        answer: dict[str, Any] = client.get(f"{url}/control").json()
    return answer


class Pool:
    """``concurrency`` keep-alive connections to one app; use inside one asyncio loop."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.clients = [KeepAliveClient(url.rstrip("/") + "/") for _ in range(concurrency)]

    async def burst(self, n: int) -> list[Sent]:
        """Send ``n`` requests as fast as the connections allow; every one is answered."""
        left = n
        sent: list[Sent] = []

        async def worker(client: KeepAliveClient) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                at = time.time()
                status = await client.get()
                sent.append(Sent(at, time.time(), status))

        await asyncio.gather(*(worker(c) for c in self.clients))
        return sent

    async def until(self, deadline: float) -> list[Sent]:
        """Send requests back to back until wall time ``deadline``; every one is answered."""
        sent: list[Sent] = []

        async def worker(client: KeepAliveClient) -> None:
            while time.time() < deadline:
                at = time.time()
                status = await client.get()
                sent.append(Sent(at, time.time(), status))

        await asyncio.gather(*(worker(c) for c in self.clients))
        return sent

    def close(self) -> None:
        for client in self.clients:
            client.close()


def log_lines(app: LiveApp) -> list[dict[str, Any]]:
    """The JSON lines an app wrote to its log (its weight announcements)."""
    lines = app.process.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]
