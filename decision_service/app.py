"""The FastAPI application: ``create_app(settings=None)`` wires the parts; nothing heavy at import.

The lifespan loads the ONNX policy and sets up the Prometheus client (one session, one thread
pool) on ``app.state.service``. A model that is missing, corrupt or does not match the feature
module is logged and leaves the service unready (``/readyz`` 503, ``/v1/decide`` 503): it never
serves a decision from a misread observation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from decision_service.actions import ACTION_NAMES
from decision_service.api import ApiError, ServiceState, ops, v1
from decision_service.features import N_FEATURES
from decision_service.gate import Gate
from decision_service.metrics import ServiceMetrics
from decision_service.policy import OnnxPolicy, PolicyLoadError
from decision_service.prometheus_source import PrometheusSource, prometheus_client
from decision_service.queries import load_templates
from decision_service.schemas import ErrorDetailV1, ErrorV1
from decision_service.settings import Settings

log = logging.getLogger(__name__)

API_VERSION: Final = "1"
#: Worker threads (and pooled HTTP connections) for Prometheus queries. More threads than
#: this only fight over the GIL: measured on 2 cores, 8 served concurrency 16 best.
QUERY_THREADS: Final = 8
_MAX_MESSAGE: Final = 1000


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    settings = state.settings
    try:
        state.policy = _load_policy(settings)
        state.policy_error = None
        log.info(
            "model loaded",
            extra={"fields": {"model": state.policy.info.label, "path": state.policy.info.path}},
        )
    except PolicyLoadError as exc:
        state.policy, state.policy_error = None, str(exc)
        log.error("model refused; not ready", extra={"fields": {"error": str(exc)}})
    state.metrics.set_model(state.policy.info if state.policy else None)
    client = prometheus_client(
        settings.prometheus_url, settings.prometheus_timeout_seconds, QUERY_THREADS
    )
    state.source = PrometheusSource(
        client,
        app.state.templates,
        window=settings.analysis_window,
        window_seconds=settings.analysis_window_seconds,
        timeout_seconds=settings.prometheus_timeout_seconds,
        threads=QUERY_THREADS,
        on_query=state.metrics.query_duration.observe,
        on_read=state.metrics.observe_life_read,
    )
    if settings.bearer_token is None:
        log.warning("no API_TOKEN or API_TOKEN_FILE: /v1 endpoints accept unauthenticated calls")
    if settings.dry_run:
        log.warning("dry-run mode: Argo sees %r (hold on missing data)", settings.dry_run_answer)
    try:
        yield
    finally:
        state.source.close()
        state.source = None


def _load_policy(settings: Settings) -> OnnxPolicy:
    """The policy, refused unless one test inference gives finite Q-values of the right shape
    (a model can load yet fail to run, e.g. a layer with a mismatched bias)."""
    policy = OnnxPolicy(settings.model_path)
    try:
        q_values = policy.q_values(np.zeros((1, N_FEATURES), dtype=np.float32))
    except Exception as exc:  # onnxruntime raises several private exception types
        raise PolicyLoadError(f"{settings.model_path}: fails a test inference: {exc}") from exc
    if q_values.shape != (1, len(ACTION_NAMES)) or not np.isfinite(q_values).all():
        raise PolicyLoadError(
            f"{settings.model_path}: a test inference gave {q_values.tolist()}, "
            f"not {len(ACTION_NAMES)} finite Q-values"
        )
    return policy


def create_app(settings: Settings | None = None) -> FastAPI:
    """The decision service as an ASGI app (settings from the environment by default).

    Raises :class:`~decision_service.queries.TemplateError` for an unusable
    templates file: a configuration error stops the process at start-up.
    """
    settings = settings or Settings()
    templates = load_templates(settings.query_preset, settings.query_templates_file)
    app = FastAPI(
        title="k8s-rollout-agent decision service",
        version=API_VERSION,
        summary="RL canary analysis for Argo Rollouts' web metric provider.",
        lifespan=lifespan,
    )
    metrics = ServiceMetrics(dry_run=settings.dry_run, dry_run_answer=settings.dry_run_answer)
    state = ServiceState(settings=settings, metrics=metrics)
    app.state.service = state
    app.state.templates = templates
    app.include_router(v1)
    app.include_router(ops)
    _install_error_handlers(app)
    # The token and the body size are checked here, before FastAPI reads any body.
    app.add_middleware(Gate, token=settings.bearer_token, metrics=state.metrics)
    return app


def _error(status: int, body: ErrorV1, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[ErrorDetailV1]:
    details = []
    for item in exc.errors():
        loc = [str(part) for part in item.get("loc", ()) if part != "body"]
        kind = item.get("type", "")
        problem = {
            "extra_forbidden": "unknown field",
            "missing": "required field is missing",
            "json_invalid": "the body is not valid JSON",
        }.get(kind, str(item.get("msg", "invalid")).removeprefix("Value error, "))
        details.append(ErrorDetailV1(field=".".join(loc) or "body", problem=problem))
    return details


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.body, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        message = "Invalid request: " + "; ".join(f"{d.field}: {d.problem}" for d in details)
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        return _error(422, ErrorV1(error="invalid_request", message=message, details=details))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI could not even parse (e.g. not UTF-8)
            detail = ErrorDetailV1(field="body", problem=f"unreadable body: {exc.detail}")
            message = f"Invalid request: body: {detail.problem}"
            body = ErrorV1(error="invalid_request", message=message, details=[detail])
            return _error(422, body)
        codes = {404: "not_found", 405: "method_not_allowed"}
        body = ErrorV1(
            error=codes.get(exc.status_code, f"http_{exc.status_code}"), message=str(exc.detail)
        )
        return _error(exc.status_code, body, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, ErrorV1(error="internal_error", message="Internal error; see the logs."))
