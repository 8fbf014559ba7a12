"""The demo's traffic router and load: Poisson arrivals split between stable and canary by weight.

In a cluster the ingress controller (or Argo's replica counts) splits traffic; here the load
generator does: each request goes to the canary with probability ``weight / 100``, the weight
the driver sets. It runs its own asyncio loop in a background thread, keeps at most
``max_in_flight`` requests open (arrivals beyond that are counted as ``dropped``, never queued
without bound), and records per-second outcomes per version for the timeline.

Two things the scenario format asks of the router:

* **the traffic profile** (``traffic.profile``): with a :class:`RateProfile` the total rate is
  ``rps`` × ``EpisodeParameters.rate_factor`` of the canary's age in scenario minutes (wall
  seconds since the weight first went above 0, times ``time_scale``; the factor at minute 0
  before that), as the simulator scales each interval's requests. Arrivals are an
  inhomogeneous Poisson process, drawn by thinning a process at the profile's peak rate.
  ``rps`` is the rate at factor 1; ``demo.live_request_rate`` caps it so that the peak stays
  within ``--max-rps``, which keeps the profile's shape exact.
* **the canary's traffic share**: with ``canary_control_url`` every weight set
  (:meth:`LoadGenerator.set_weight`) is announced to the canary app (``PUT /control/weight``)
  just before the traffic shifts, so a load-dependent regression, the canary's age and its
  scale-ups' cold starts follow the weight as in the simulator (why the app is told rather than
  left to infer it from its own rate: :mod:`demo_apps.app.behaviour`).

Requests go over :class:`KeepAliveClient`, a minimal HTTP/1.1 client on pooled keep-alive
connections. With a general-purpose client (httpx) the load generator used a whole core at
about 400 requests per second here and fell to 250-300 when asked for more, which starved the
canary of evidence (the demo was capped at 200, a tenth of what the policy was trained on);
this one sent 2,000 per second to the two demo apps without dropping any, so the demo's load is
limited by the apps, not by the load generator.

Against aiohttp (``TCPConnector(limit=...)``), the obvious general-purpose alternative, it still
costs half the CPU per request: ``python benchmarks/bench_loadgen.py`` (both clients in one
process against the two real demo apps, 64 in flight, 3 rounds of 5 s, medians, on the shared
2-core machine) measured 47 µs of CPU per request and 5,107 req/s for this client against
95 µs and 3,981 req/s for aiohttp 3.14 (1.28x the requests/s); with the demo's own latencies
and 256 in flight (``--scenario healthy --concurrency 256``): 55 against 107 µs, 4,424 against
4,103 req/s. At the demo's 1,500 req/s cap that is 7 % against 14-16 % of one of the two cores
the apps, Prometheus and the decision service share, and no dependency beyond asyncio. Those
figures were bounded by the apps; once the apps answered ``GET /`` as plain ASGI (round 11,
:class:`demo_apps.app.server.ServeRoot`), the same command measured 34 against 111 µs and
17,988 against 8,532 req/s (2.11x).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from demo_apps.local.processes import Lifecycle
from scenarios import EpisodeParameters

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpError(Exception):
    """The server could not be reached or answered something that is not HTTP/1.1."""


class KeepAliveClient:
    """``GET`` one URL over pooled HTTP/1.1 keep-alive connections; returns the status code.

    It reads ``Content-Length`` and chunked bodies. A reused connection the server has closed in
    the meantime (its keep-alive timeout) is retried once on a fresh one, as browsers and httpx
    do; any other failure raises :class:`HttpError`. Why it exists rather than aiohttp: half the
    CPU per request (47 against 95 µs, ``python benchmarks/bench_loadgen.py``; the module
    docstring has the figures).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self._request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: k8s-rollout-agent-demo"
            "\r\n\r\n"
        ).encode("ascii")
        self._idle: list[_Connection] = []

    async def get(self) -> int:
        if self._idle:
            connection = self._idle.pop()
            try:
                return await self._exchange(connection)
            except (HttpError, OSError, asyncio.IncompleteReadError, ValueError):
                pass  # closed while idle (or garbled): one retry on a fresh connection
        try:
            connection = await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {error}") from error
        try:
            return await self._exchange(connection)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            raise HttpError(f"bad response from {self.host}:{self.port}: {error}") from error

    async def _exchange(self, connection: _Connection) -> int:
        reader, writer = connection
        try:
            writer.write(self._request)
            status_line = await reader.readline()
            fields = status_line.split(None, 2)
            if len(fields) < 2 or not fields[0].startswith(b"HTTP/1."):
                raise HttpError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
            status = int(fields[1])
            length: int | None = None
            chunked, keep_alive = False, True
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise HttpError("connection closed inside the headers")
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    keep_alive = b"close" not in value.lower()
            if chunked:
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    await reader.readexactly(size + 2)  # the chunk and its CRLF
                    if size == 0:
                        break
            elif length is not None:
                await reader.readexactly(length)
            else:
                keep_alive = False  # the body runs until the server closes
                await reader.read()
        except BaseException:
            writer.close()
            raise
        if keep_alive:
            self._idle.append(connection)
        else:
            writer.close()
        return status

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


@dataclass(frozen=True)
class RateProfile:
    """The scenario's traffic profile on the demo's clock (see the module docstring)."""

    params: EpisodeParameters
    time_scale: float

    def factor(self, canary_wall_seconds: float) -> float:
        """The factor on the nominal rate ``canary_wall_seconds`` after the canary started."""
        minutes = max(0.0, canary_wall_seconds) * self.time_scale / 60.0
        return self.params.rate_factor(minutes)

    @property
    def peak(self) -> float:
        """The highest factor (the profile is piecewise linear: the highest point's)."""
        return max((factor for _, factor in self.params.traffic_profile), default=1.0)


class ControlError(RuntimeError):
    """The canary app did not take a weight announcement."""


@dataclass
class Bucket:
    """Requests, errors (5xx or failed) and summed latency of one version in one second."""

    requests: int = 0
    errors: int = 0
    latency_seconds: float = 0.0


class LoadGenerator(Lifecycle):
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
        profile: RateProfile | None = None,
        canary_control_url: str | None = None,
    ) -> None:
        """``rps``: the total rate, at profile factor 1 with a ``profile``;
        ``canary_control_url``: the canary app's ``/control/weight``, told every weight."""
        if rps <= 0:
            raise ValueError("rps must be positive")
        if profile is not None and profile.peak <= 0:
            raise ValueError("a traffic profile whose factors are all 0 sends nothing")
        self.urls = {"stable": stable_url.rstrip("/") + "/", "canary": canary_url.rstrip("/") + "/"}
        self.rps = rps
        self.profile = profile
        self.canary_control_url = canary_control_url
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
        #: Monotonic time at which the canary's weight first went above 0 (the profile's 0).
        self.canary_started_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def weight(self) -> int:
        return self._weight

    def set_weight(self, weight: int) -> None:
        """Route ``weight`` percent to the canary, telling the canary app first."""
        if not 0 <= weight <= 100:
            raise ValueError(f"weight must be within 0..100, got {weight}")
        if self.canary_control_url is not None:
            self._announce(weight)
        self._weight = weight
        if weight > 0 and self.canary_started_at is None and self._thread is not None:
            self.canary_started_at = time.monotonic()

    def _announce(self, weight: int, attempts: int = 3) -> None:
        """``PUT /control/weight`` to the canary app; a few tries, then :class:`ControlError`:
        a canary that does not know its share would serve another scenario than the one
        named, and the run would be judged on it."""
        assert self.canary_control_url is not None
        body = json.dumps({"weight": weight}).encode()
        error: Exception | None = None
        for attempt in range(attempts):
            request = urllib.request.Request(
                self.canary_control_url,
                data=body,
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            try:
                with self._no_proxy.open(request, timeout=5) as response:
                    response.read()
                    return
            except (OSError, urllib.error.URLError) as exc:
                error = exc
                time.sleep(0.1 * (attempt + 1))
        raise ControlError(f"{self.canary_control_url}: weight {weight} not taken: {error}")

    def rate_factor(self, now: float) -> float:
        """The profile's factor at monotonic time ``now`` (1 without a profile)."""
        if self.profile is None:
            return 1.0
        started = self.canary_started_at
        return self.profile.factor(0.0 if started is None else now - started)

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

    async def _one(self, client: KeepAliveClient, track: str, gate: asyncio.Semaphore) -> None:
        started = time.monotonic()
        try:
            status = await asyncio.wait_for(client.get(), self.timeout_seconds)
            error = status >= 500
        except (HttpError, TimeoutError):
            error = True
        finally:
            gate.release()
        self._record(track, started, error)

    async def _run(self) -> None:
        gate = asyncio.Semaphore(self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        clients = {track: KeepAliveClient(url) for track, url in self.urls.items()}
        profile = self.profile
        peak = profile.peak if profile is not None else 1.0
        try:
            next_at = time.monotonic()
            while not self._stop.is_set():
                next_at += float(self._rng.exponential(1.0 / (self.rps * peak)))
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Thinning: a candidate at the peak rate is an arrival with probability
                # factor / peak (no draw without a profile: the stream stays as it was).
                if profile is not None and self._rng.random() * peak >= self.rate_factor(next_at):
                    continue
                track = "canary" if self._rng.random() * 100 < self._weight else "stable"
                if gate.locked():
                    self.dropped += 1
                    continue
                await gate.acquire()
                task = asyncio.create_task(self._one(clients[track], track, gate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout_seconds)
        finally:
            for client in clients.values():
                client.close()

    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        if self._weight > 0 and self.canary_started_at is None:
            self.canary_started_at = self.started_at
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_seconds + 5)
            self._thread = None
