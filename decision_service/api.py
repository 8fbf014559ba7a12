"""The HTTP routes: ``/v1/decide``, ``/v1/model``, ``/healthz``, ``/readyz``, ``/metrics``.

Routes get what they need through typed dependencies (``StateDep``, ``PolicyDep``,
``ReadyDep``) from the :class:`ServiceState` the app's lifespan put on ``app.state``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.security import HTTPBearer

from decision_service import pipeline
from decision_service.guardrails import GuardrailConfig
from decision_service.logs import DECISION_LOGGER
from decision_service.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from decision_service.pipeline import DecisionConfig, Evaluation, answer
from decision_service.policy import OnnxPolicy
from decision_service.prometheus_answers import PrometheusUnavailable
from decision_service.prometheus_source import PrometheusSource
from decision_service.queries import Target
from decision_service.schemas import (
    DecideRequestV1,
    DecisionV1,
    ErrorDetailV1,
    ErrorV1,
    HealthV1,
    ModelV1,
    PolicyV1,
)
from decision_service.settings import Settings
from decision_service.shield import ShieldConfig
from decision_service.snapshot import MetricsSnapshot, MissingMetricError
from decision_service.step_memory import StepMemory
from decision_service.tolerance import Tolerance

log = logging.getLogger(__name__)
decision_log = logging.getLogger(DECISION_LOGGER)


@dataclass
class ServiceState:
    """Everything the routes share, built once per app by the lifespan."""

    settings: Settings
    metrics: ServiceMetrics
    memory: StepMemory = field(default_factory=StepMemory)
    policy: OnnxPolicy | None = None
    policy_error: str | None = "not loaded yet"
    source: PrometheusSource | None = None
    guardrails: GuardrailConfig = field(init=False)
    tolerance: Tolerance = field(init=False)
    shield: ShieldConfig = field(init=False)
    #: The details of the last failed readiness check logged (None: ready, or not yet checked).
    unready_logged: str | None = None

    def __post_init__(self) -> None:
        self.guardrails = self.settings.guardrails()
        self.tolerance = self.settings.tolerance()
        self.shield = self.settings.shield()


class ApiError(Exception):
    """An error answer in the one JSON shape (:class:`ErrorV1`)."""

    def __init__(
        self,
        status_code: int,
        error: str,
        message: str,
        details: list[ErrorDetailV1] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = ErrorV1(error=error, message=message, details=details)
        self.headers = headers


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorV1, "description": "Missing or wrong bearer token (the body is not read)."},
    413: {"model": ErrorV1, "description": "A body over 16 KiB (a decision is under 1 KB)."},
    422: {"model": ErrorV1, "description": "Invalid request; no query was sent."},
    503: {"model": ErrorV1, "description": "Prometheus or the model is unavailable; retry."},
}

# --------------------------------------------------------------------------- dependencies

_bearer = HTTPBearer(auto_error=False, description="The token from API_TOKEN / API_TOKEN_FILE.")


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_state(request: Request) -> ServiceState:
    return _state(request)


StateDep = Annotated[ServiceState, Depends(get_state)]


def _policy(state: ServiceState) -> OnnxPolicy:
    if state.policy is None:
        raise ApiError(503, "model_unavailable", f"The policy is not loaded: {state.policy_error}")
    return state.policy


async def get_policy(request: Request) -> OnnxPolicy:
    return _policy(_state(request))


@dataclass(frozen=True, slots=True)
class Ready:
    """What a decision needs: the state, a loaded policy, a Prometheus source (else 503)."""

    state: ServiceState
    policy: OnnxPolicy
    source: PrometheusSource


async def get_ready(request: Request) -> Ready:
    state = _state(request)
    policy = _policy(state)
    if state.source is None:
        raise ApiError(503, "not_ready", "The Prometheus client is not set up yet.")
    return Ready(state, policy, state.source)


PolicyDep = Annotated[OnnxPolicy, Depends(get_policy)]
# One dependency for the decision path: each one costs FastAPI some work per request.
ReadyDep = Annotated[Ready, Depends(get_ready)]

# --------------------------------------------------------------------------- routes

# The token is checked by decision_service.gate before the body is read; the scheme here only
# documents it in the OpenAPI schema.
v1 = APIRouter(prefix="/v1", dependencies=[Security(_bearer)], responses=ERROR_RESPONSES)
ops = APIRouter(tags=["operations"])


@v1.post("/decide", response_model=DecisionV1, tags=["decisions"])
async def decide(body: DecideRequestV1, ready: ReadyDep) -> DecisionV1:
    """Measure the canary against stable and answer ``promote``, ``hold`` or ``abort``."""
    started = time.perf_counter()
    state, policy, source = ready.state, ready.policy, ready.source
    settings = state.settings
    key = StepMemory.key(body.namespace, body.rollout, body.canary_hash, body.step_weight)
    taken = state.memory.taken(key)
    target = Target(body.namespace, body.rollout, body.canary_hash, body.stable_hash, body.service)
    slo = body.slo_latency_ms or settings.slo_latency
    guardrails = state.guardrails
    if body.hard_error_rate is not None:
        guardrails = guardrails.model_copy(update={"hard_error_rate": body.hard_error_rate})
    # the service's settings as they are unless the request overrides some (most do not)
    tolerance_overrides, shield_overrides = body.tolerance_overrides(), body.shield_overrides()
    tolerance = state.tolerance
    if tolerance_overrides:
        tolerance = tolerance.model_copy(update=tolerance_overrides)
    shield = state.shield
    if shield_overrides:
        shield = shield.model_copy(update=shield_overrides)
    config = DecisionConfig(
        slo_latency_ms=slo,
        guardrails=guardrails,
        tolerance=tolerance,
        shield=shield if shield.enabled else None,
        count=body.count,
        window_seconds=settings.analysis_window_seconds,
    )

    try:
        # One worker thread does the queries, the parsing, the features and the inference.
        evaluation, taken = await source.run(
            partial(
                measure_and_decide,
                source,
                target,
                body.step_weight,
                taken,
                policy,
                config,
                shield,
            )
        )
    except PrometheusUnavailable as exc:
        state.metrics.observe_prometheus_error(exc.kind)
        decision_log.warning(
            "decision failed",
            extra={"fields": {**_request_fields(body), "error": exc.kind, "detail": exc.detail}},
        )
        raise ApiError(503, "prometheus_unavailable", str(exc)) from exc
    shown = answer(evaluation, settings.dry_run, settings.dry_run_answer)
    state.memory.record(key)

    real = evaluation.guarded
    elapsed = time.perf_counter() - started
    state.metrics.observe_decision(
        namespace=body.namespace,
        rollout=body.rollout,
        decision=real.decision,
        guardrail=real.guardrail,
        proposed=evaluation.proposed,
        answer=shown.decision,
        dry_run=shown.dry_run,
        seconds=elapsed,
    )
    observation = evaluation.observation  # named once, for the log and the answer
    decision_log.info(
        "decision",
        extra={
            "fields": {
                **_request_fields(body),
                "measurements_at_step": taken,
                "decision": real.decision,
                "guardrail": real.guardrail,
                "reason": real.reason,
                "proposed": evaluation.proposed,
                "answer": shown.decision,
                "dry_run": shown.dry_run,
                "slo_latency_ms": slo,
                "model": policy.info.label,
                "q_values": evaluation.q_values,
                "observation": observation,
                "duration_ms": round(elapsed * 1000, 3),
            }
        },
    )
    return DecisionV1(
        decision=shown.decision,
        reason=shown.reason,
        guardrail=shown.guardrail,
        policy=PolicyV1(model=policy.info.label, q_values=evaluation.q_values),
        observation=observation,
        dry_run=shown.dry_run,
    )


@v1.get("/model", response_model=ModelV1, tags=["decisions"])
async def model(policy: PolicyDep) -> ModelV1:
    """The loaded policy: name, hash, feature and action names."""
    info = policy.info
    return ModelV1(
        model=info.label,
        name=info.name,
        sha256=info.sha256,
        path=info.path,
        feature_spec_version=info.feature_spec_version,
        feature_names=list(info.feature_names),
        action_names=list(info.action_names),
        training_config_sha256=info.training_config_sha256,
    )


@ops.get("/healthz", response_model=HealthV1)
async def healthz() -> HealthV1:
    """Liveness: the process answers."""
    return HealthV1(status="ok")


@ops.get("/readyz", response_model=HealthV1, responses={503: {"model": ErrorV1}})
async def readyz(state: StateDep) -> HealthV1:
    """Readiness: the model is loaded and Prometheus answers a query.

    The route is open (the kubelet probes it), so its answer names what is wrong only in
    generic words: no Prometheus host or port, no Python error text, no model path. The
    details go to the log, once each time they change (not at every probe).
    """
    problems: list[ErrorDetailV1] = []
    details: dict[str, str] = {}
    if state.policy is None:
        problems.append(ErrorDetailV1(field="model", problem="the model is not loaded"))
        details["model"] = state.policy_error or "not loaded"
    if state.source is None:
        problems.append(ErrorDetailV1(field="prometheus", problem="the client is not set up"))
    else:
        try:
            await state.source.ready()
        except PrometheusUnavailable as exc:
            problem = f"Prometheus is not answering ({exc.kind.replace('_', ' ')})"
            problems.append(ErrorDetailV1(field="prometheus", problem=problem))
            details["prometheus"] = str(exc)
    if problems:
        logged = repr(sorted(details.items()))
        if logged != state.unready_logged:
            state.unready_logged = logged
            log.warning("not ready", extra={"fields": {"event": "not_ready", **details}})
        raise ApiError(
            503,
            "not_ready",
            "Not ready: " + "; ".join(f"{p.field}: {p.problem}" for p in problems),
            details=problems,
        )
    if state.unready_logged is not None:
        state.unready_logged = None
        log.info("ready again", extra={"fields": {"event": "ready"}})
    return HealthV1(status="ok", checks={"model": "ok", "prometheus": "ok"})


@ops.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """The service's own metrics, Prometheus text format."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Measurement:
    """What Prometheus says about a canary at one moment: the snapshot (with the shield's
    evidence) or the missing metric that kept one from being built, and the windows the canary
    spent at its current traffic share (``None`` when the windows could not be read)."""

    snapshot: MetricsSnapshot | MissingMetricError
    windows_at_share: int | None


def measure(
    source: PrometheusSource,
    target: Target,
    step_weight: float,
    tolerance: Tolerance,
    shield: ShieldConfig,
    at: float | None = None,
) -> Measurement:
    """Query Prometheus for the snapshot and the shield's windows at ``at`` (default now).

    The one measuring half of a decision: the route calls it (through
    :func:`measure_and_decide`), and so does the replay (:mod:`decision_service.replay`) with
    the past moment it replays. Blocking. Raises
    :class:`~decision_service.prometheus_answers.PrometheusUnavailable`.
    """
    try:
        snapshot, windows_at_share = source.measure_blocking(
            target, step_weight, tolerance, shield, at
        )
    except MissingMetricError as missing:
        return Measurement(missing, None)
    return Measurement(snapshot, windows_at_share)


def step_count(remembered: int, measurement: Measurement) -> int:
    """The step count a decision uses: the smaller of this process's memory (``remembered``)
    and the windows the canary spent at its current traffic share
    (``shield.windows_at_current_share``): never larger than the truth, after a retried rollout
    or a restart alike."""
    if measurement.windows_at_share is None:
        return remembered
    return min(remembered, measurement.windows_at_share)


def measure_and_decide(
    source: PrometheusSource,
    target: Target,
    step_weight: float,
    remembered: int,
    policy: OnnxPolicy,
    config: DecisionConfig,
    shield: ShieldConfig,
    at: float | None = None,
) -> tuple[Evaluation, int]:
    """:func:`measure`, then :func:`~decision_service.pipeline.decide` with the
    :func:`step_count`; also returns that count.

    Blocking: the route runs it in the source's thread pool (``source.run``). Raises
    :class:`~decision_service.prometheus_answers.PrometheusUnavailable`.
    """
    measurement = measure(source, target, step_weight, config.tolerance, shield, at)
    count = step_count(remembered, measurement)
    return pipeline.decide(measurement.snapshot, count, policy, config), count


def _request_fields(body: DecideRequestV1) -> dict[str, Any]:
    return {
        "event": "decision",
        "namespace": body.namespace,
        "rollout": body.rollout,
        "canary_hash": body.canary_hash,
        "stable_hash": body.stable_hash,
        "service": body.service,
        "step_weight": body.step_weight,
    }
