"""The service's own Prometheus metrics (``GET /metrics``), on a registry per app.

Each app gets its own :class:`CollectorRegistry`, so tests and several apps in one process
never share state. Label values are declared up front: every series exists from the start.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from decision_service.actions import ACTION_NAMES
from decision_service.guardrails import GUARDRAIL_NAMES
from decision_service.policy import ModelInfo
from decision_service.prometheus_answers import ERROR_KINDS, ErrorKind

#: The ``guardrail`` label's values: ``none`` (the policy's choice stood) and every name but
#: ``dry_run``, which labels the answer Argo saw, not the decision (``dry_run`` is its own label).
GUARDRAIL_LABELS: Final = ("none", *(name for name in GUARDRAIL_NAMES if name != "dry_run"))
DURATION_BUCKETS: Final = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
PREFIX: Final = "decision_service"

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]


class ServiceMetrics:
    """The metrics of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            f"{PREFIX}_decisions_total",
            "Decisions computed, by real decision and the guardrail that set it (in dry-run "
            "mode the real decision, not the safe answer Argo saw).",
            ["decision", "guardrail", "dry_run"],
            registry=self.registry,
        )
        self.decision_duration = Histogram(
            f"{PREFIX}_decision_duration_seconds",
            "Time to answer POST /v1/decide with a decision (queries included).",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.query_duration = Histogram(
            f"{PREFIX}_prometheus_query_duration_seconds",
            "Time of one PromQL query to Prometheus (HTTP round trip), successful or not.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.prometheus_errors = Counter(
            f"{PREFIX}_prometheus_errors_total",
            "Decisions answered 503 because Prometheus failed, by kind of failure.",
            ["kind"],
            registry=self.registry,
        )
        self.unauthorized = Counter(
            f"{PREFIX}_unauthorized",
            "Requests to /v1 refused 401 (no or wrong bearer token), before their body was read.",
            registry=self.registry,
        )
        self.body_too_large = Counter(
            f"{PREFIX}_body_too_large",
            "Requests refused 413: a body over the limit (read no further than the limit).",
            registry=self.registry,
        )
        self.model_info = Info(
            f"{PREFIX}_model",
            "The loaded ONNX policy.",
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded",
            "1 when the ONNX policy is loaded and matches the feature module, else 0.",
            registry=self.registry,
        )
        for decision in ACTION_NAMES:
            for guardrail in GUARDRAIL_LABELS:
                for dry_run in ("false", "true"):
                    self.decisions.labels(decision, guardrail, dry_run)
        for kind in ERROR_KINDS:
            self.prometheus_errors.labels(kind)

    def observe_decision(
        self, decision: str, guardrail: str | None, dry_run: bool, seconds: float
    ) -> None:
        self.decisions.labels(decision, guardrail or "none", "true" if dry_run else "false").inc()
        self.decision_duration.observe(seconds)

    def observe_prometheus_error(self, kind: ErrorKind) -> None:
        self.prometheus_errors.labels(kind).inc()

    def set_model(self, info: ModelInfo | None) -> None:
        if info is None:
            self.model_loaded.set(0)
            return
        self.model_loaded.set(1)
        self.model_info.info(
            {
                "model": info.label,
                "name": info.name,
                "sha256": info.sha256,
                "feature_spec_version": info.feature_spec_version,
            }
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
