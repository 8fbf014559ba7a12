"""The demo's traffic router and load: Poisson arrivals split between stable and canary by weight.

In a cluster the ingress controller (or Argo's replica counts) splits traffic; here the load
generator does: each request goes to the canary with probability ``weight / 100``, the weight
the driver sets. It runs its own asyncio loop in a background thread, keeps at most
``max_in_flight`` requests open (arrivals beyond that are counted as ``dropped``, never queued
without bound), and records per-second outcomes per version for the timeline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import httpx
import numpy as np


@dataclass
class Bucket:
    """Requests, errors (5xx or failed) and summed latency of one version in one second."""

    requests: int = 0
    errors: int = 0
    latency_seconds: float = 0.0


class LoadGenerator:
    """Sends ``rps`` requests per second, split by the current canary weight."""

    def __init__(
        self,
        stable_url: str,
        canary_url: str,
        rps: float,
        *,
        seed: int = 0,
        max_in_flight: int = 256,
        timeout_seconds: float = 15.0,
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self.urls = {"stable": stable_url.rstrip("/") + "/", "canary": canary_url.rstrip("/") + "/"}
        self.rps = rps
        self.max_in_flight = max_in_flight
        self.timeout_seconds = timeout_seconds
        self._rng = np.random.default_rng([seed, 7])
        self._weight = 0
        self._lock = threading.Lock()
        self.buckets: dict[int, dict[str, Bucket]] = defaultdict(
            lambda: {"stable": Bucket(), "canary": Bucket()}
        )
        self.dropped = 0
        self.started_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def weight(self) -> int:
        return self._weight

    def set_weight(self, weight: int) -> None:
        if not 0 <= weight <= 100:
            raise ValueError(f"weight must be within 0..100, got {weight}")
        self._weight = weight

    def totals(self) -> dict[str, Bucket]:
        with self._lock:
            out = {"stable": Bucket(), "canary": Bucket()}
            for second in self.buckets.values():
                for track, bucket in second.items():
                    out[track].requests += bucket.requests
                    out[track].errors += bucket.errors
                    out[track].latency_seconds += bucket.latency_seconds
            return out

    def _record(self, track: str, started: float, error: bool) -> None:
        now = time.monotonic()
        with self._lock:
            bucket = self.buckets[int(now - self.started_at)][track]
            bucket.requests += 1
            bucket.errors += error
            bucket.latency_seconds += now - started

    async def _one(self, client: httpx.AsyncClient, track: str, gate: asyncio.Semaphore) -> None:
        started = time.monotonic()
        try:
            response = await client.get(self.urls[track])
            error = response.status_code >= 500
        except httpx.HTTPError:
            error = True
        finally:
            gate.release()
        self._record(track, started, error)

    async def _run(self) -> None:
        gate = asyncio.Semaphore(self.max_in_flight)
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=64)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout_seconds) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                next_at += float(self._rng.exponential(1.0 / self.rps))
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                track = "canary" if self._rng.random() * 100 < self._weight else "stable"
                if gate.locked():
                    self.dropped += 1
                    continue
                await gate.acquire()
                task = asyncio.create_task(self._one(client, track, gate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout_seconds)

    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_seconds + 5)
            self._thread = None

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
