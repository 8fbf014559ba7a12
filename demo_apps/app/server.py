"""The demo web app, run as ``stable`` (v1.0) or ``canary`` (v2.0) by ``APP_TYPE``.

Its behaviour comes from a scenario file (``SCENARIO``: a shipped name such as ``buggy`` or a
path), through :mod:`demo_apps.app.behaviour`: every ``GET /`` spends the latency the scenario
draws (a real ``asyncio.sleep``) and fails with a real HTTP 500 at the scenario's error rate
(over-dispersed per scrape period where the scenario says so).

=========================  =================================================================
``GET /``                  the work: 200 ``{"version", "track"}`` or 500 ``{"error"}``
``GET /metrics``           Prometheus text: ``http_requests_total{code,version,track}`` and the
                           ``http_request_duration_seconds{version,track}`` histogram with
                           :data:`decision_service.histogram.LATENCY_BUCKETS_SECONDS` (the
                           simulator's buckets, so live and simulated quantiles carry the same
                           bucket error); with ``Accept: application/json`` the seed's summary
                           ``{version, scenario, total_requests, error_count, error_rate,
                           avg_latency_ms}``
``GET /healthz``           liveness, with the scenario and the pod-template hash
``PUT /control/weight``    ``{"weight": w}``: the canary's traffic share is now w % (the local
                           traffic router announces every ``setWeight``). It drives the
                           canary's load-dependent regression, its age and its scale-ups' cold
                           starts (:mod:`demo_apps.app.behaviour`). Answers as ``GET /control``
``GET /control``           ``{track, weight, weight_announced, canary_age_seconds,
                           scale_ups}``
=========================  =================================================================

Each weight announcement is also logged, one JSON line on standard output.

The app does not label its own series with the pod-template hash: as in Kubernetes, Prometheus
attaches ``rollouts_pod_template_hash`` to the target (a relabel rule there, a static label in
the local stack's generated config), so the same queries work in both places.

Settings (environment): ``APP_TYPE``, ``SCENARIO``, ``SEED``, ``TIME_SCALE`` (scenario seconds
per wall second), ``INTERVAL_SECONDS`` (scenario seconds per weather draw), ``CLOCK_START``
(unix time shared by both apps; default: start-up), ``POD_TEMPLATE_HASH``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from demo_apps.app.behaviour import DEFAULT_INTERVAL_SECONDS, LiveBehaviour, Track
from scenarios import resolve_scenario

VERSIONS: dict[Track, str] = {"stable": "1.0", "canary": "2.0"}
#: HTTP status code of an answer, by whether it is an error.
CODES: dict[bool, str] = {False: "200", True: "500"}


class AppSettings(BaseSettings):
    """Everything the app reads from its environment (nothing else reads it)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    app_type: Track = Field(description="Which version this process is: stable or canary.")
    scenario: str = Field("healthy", description="Shipped scenario name or a scenario file path.")
    seed: int = Field(0, ge=0, description="Episode draw; both apps of a run share it.")
    time_scale: float = Field(1.0, gt=0, description="Scenario seconds per wall-clock second.")
    interval_seconds: float = Field(
        DEFAULT_INTERVAL_SECONDS, gt=0, description="Scenario seconds per spike/incident draw."
    )
    clock_start: float | None = Field(None, description="Unix time of scenario time zero.")
    pod_template_hash: str = Field("", description="Reported in /healthz and the summary.")


class WeightUpdate(BaseModel):
    """Body of ``PUT /control/weight``."""

    weight: float = Field(ge=0, le=100, allow_inf_nan=False, description="Canary share, %.")


@dataclass
class Totals:
    """Running sums for the JSON summary."""

    requests: int = 0
    errors: int = 0
    latency_seconds: float = 0.0


@dataclass
class AppState:
    settings: AppSettings
    behaviour: LiveBehaviour
    registry: CollectorRegistry
    requests_total: Counter
    duration: Histogram
    #: This process' labelled children: ``served[error]`` counts 500s (True) and 200s (False).
    served: dict[bool, Counter]
    duration_series: Histogram
    totals: Totals = field(default_factory=Totals)

    @property
    def version(self) -> str:
        return VERSIONS[self.settings.app_type]


def build_state(settings: AppSettings) -> AppState:
    scenario = resolve_scenario(settings.scenario)
    started = settings.clock_start if settings.clock_start is not None else time.time()
    behaviour = LiveBehaviour(
        scenario,
        settings.app_type,
        seed=settings.seed,
        started_at=started,
        time_scale=settings.time_scale,
        interval_seconds=settings.interval_seconds,
    )
    registry = CollectorRegistry(auto_describe=True)
    requests_total = Counter(
        "http_requests_total",
        "Requests served by the demo app, by HTTP status code.",
        ["code", "version", "track"],
        registry=registry,
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "Time spent serving a request, seconds.",
        ["version", "track"],
        buckets=LATENCY_BUCKETS_SECONDS,
        registry=registry,
    )
    version, track = VERSIONS[settings.app_type], settings.app_type
    # Declare the label values up front so every series exists (at 0) from the first scrape:
    # `increase()` then counts the first error instead of losing it to a series' birth.
    served = {error: requests_total.labels(code, version, track) for error, code in CODES.items()}
    return AppState(
        settings,
        behaviour,
        registry,
        requests_total,
        duration,
        served,
        duration.labels(version, track),
    )


async def _state(request: Request) -> AppState:
    state: AppState = request.app.state.demo
    return state


State = Annotated[AppState, Depends(_state)]


def create_app(settings: AppSettings | None = None) -> ASGIApp:
    """The app factory; ``settings`` default to the environment.

    ``GET /`` is served by :class:`ServeRoot` in front of the FastAPI app, which keeps every
    other route.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.demo = build_state(settings or AppSettings())
        yield

    app = FastAPI(title="k8s-rollout-agent demo app", lifespan=lifespan)

    @app.get("/metrics")
    async def metrics(request: Request, state: State) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            totals = state.totals
            n = totals.requests
            return JSONResponse(
                {
                    "version": f"{state.version}-{state.settings.app_type}",
                    "scenario": state.behaviour.scenario.name,
                    "total_requests": n,
                    "error_count": totals.errors,
                    "error_rate": totals.errors / n if n else 0.0,
                    "avg_latency_ms": 1000.0 * totals.latency_seconds / n if n else 0.0,
                }
            )
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.put("/control/weight")
    async def put_weight(update: WeightUpdate, state: State) -> dict[str, Any]:
        now = time.time()
        state.behaviour.set_weight(update.weight, now)
        control = state.behaviour.control_state(now)
        print(json.dumps({"event": "weight", **control}), flush=True)
        return control

    @app.get("/control")
    async def control(state: State) -> dict[str, Any]:
        return state.behaviour.control_state(time.time())

    @app.get("/healthz")
    async def healthz(state: State) -> dict[str, str]:
        return {
            "status": "ok",
            "track": state.settings.app_type,
            "version": state.version,
            "scenario": state.behaviour.scenario.name,
            "pod_template_hash": state.settings.pod_template_hash,
        }

    return ServeRoot(app)


def _json_answer(status: int, payload: dict[str, str]) -> tuple[Message, Message]:
    """The two ASGI messages of a JSON answer, encoded once."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


class ServeRoot:
    """``GET /``, the work every simulated user asks for, as plain ASGI; the rest to ``app``.

    The demo sends up to 1,500 requests a second, nearly all to one app at the first steps, on
    a machine the other app, Prometheus, the decision service and the load generator share.
    Through FastAPI (routing, middleware, a dependency run in a worker thread, a JSON
    serialisation per answer) one app served at most about 1,530 requests a second with the
    demo's latencies and 256 in flight, at 630 µs of CPU each: the demo's own rate. On a slow
    day it fell behind, its answers queued, the load generator hit its in-flight limit and
    dropped arrivals (CI: 5-9 % of a healthy run), and the canary saw less traffic than the
    run claimed. The answer needs none of that (the scenario's draw, two labelled counters, two
    messages encoded once): 5,360 requests a second at 101 µs each, 3.5x the rate at 0.16x the
    CPU (``python benchmarks/bench_app.py --scenario healthy --concurrency 256``, medians of 3
    rounds, this 2-core machine; with no drawn latency 65 against 520 µs).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._answers: dict[bool, tuple[Message, Message]] | None = None

    def _encoded(self, state: AppState) -> dict[bool, tuple[Message, Message]]:
        if self._answers is None:
            track, version = state.settings.app_type, state.version
            error = f"{track} v{version} failed (scenario {state.behaviour.scenario.name})"
            self._answers = {
                False: _json_answer(200, {"version": version, "track": track}),
                True: _json_answer(500, {"error": error}),
            }
        return self._answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        state: AppState = self.app.state.demo
        started = time.perf_counter()
        outcome = state.behaviour.outcome(time.time())
        await asyncio.sleep(outcome.latency_seconds)
        elapsed = time.perf_counter() - started
        error = bool(outcome.error)
        state.served[error].inc()
        state.duration_series.observe(elapsed)
        totals = state.totals
        totals.requests += 1
        totals.errors += error
        totals.latency_seconds += elapsed
        start, body = self._encoded(state)[error]
        await send(start)
        await send(body)
