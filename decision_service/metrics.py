"""The service's own Prometheus metrics (``GET /metrics``), on a registry per app.

Each app gets its own :class:`CollectorRegistry`, so tests and several apps in one process
never share state. Every name starts with :data:`PREFIX`, the product's name (the dashboards
and alerts of the chart select on it).

The decision counter is labelled by ``namespace`` and ``rollout``: their cardinality is the
number of Rollouts that ask this process, which a cluster bounds (canary hashes and weights,
which grow with every release, are never labels). Each Rollout gets at most
``len(OUTCOMES)`` series, created together at its first decision, so that ``increase()`` sees
the later ones from zero; past ``max_rollouts`` Rollouts (a caller inventing names) the rest
share the ``_other_`` label values instead of growing the exposition without end. Only
combinations a decision can really have are created (:data:`OUTCOMES`): a dashboard never shows
an impossible ``promote`` set by a guardrail.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Final, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from decision_service.actions import Action
from decision_service.features import FEATURE_SPEC_VERSION
from decision_service.guardrails import GUARDRAIL_NAMES, Guarded, GuardrailName
from decision_service.pipeline import Evaluation, answer
from decision_service.policy import ModelInfo
from decision_service.prometheus_answers import ERROR_KINDS, ErrorKind

#: The product's name, the prefix of every metric (``rollout_agent_decisions_total`` ...).
PREFIX: Final = "rollout_agent"
#: The package whose version ``build_info`` reports.
DISTRIBUTION: Final = "k8s-rollout-agent"


class Outcome(NamedTuple):
    """One possible decision: the real decision, the guardrail that set it (``None``: the
    policy's choice stood) and the policy's proposal (``None``: the policy did not run)."""

    decision: Action
    guardrail: GuardrailName | None
    proposed: Action | None

    def labels(self) -> tuple[str, str, str]:
        """Its ``decision``, ``guardrail`` and ``proposed`` label values (``none`` for None)."""
        return self.decision, self.guardrail or "none", self.proposed or "none"


#: Every outcome :func:`decision_service.pipeline.decide` can return, derived from it (and
#: checked against it by ``tests/decision_service/test_service_metrics.py``):
#:
#: * no data: ``hold``, ``no_data``, the policy does not run;
#: * a hard SLO breach aborts whatever the policy proposed;
#: * too little evidence holds a proposed ``promote`` or ``abort`` (never a ``hold``);
#: * the regression veto holds a proposed ``promote``;
#: * otherwise the proposal stands, guardrail ``none``;
#: * the shield holds a standing ``promote`` or ``abort`` (it leaves a hard breach alone), and
#:   aborts where it requires an abort, whatever was proposed and whatever a guardrail held
#:   (a proposed ``abort`` that stood is the policy's own, guardrail ``none``);
#: * the step-count rule holds a standing ``promote``.
#:
#: So ``promote`` comes only with guardrail ``none``, and no guardrail ever answers ``promote``.
OUTCOMES: Final[tuple[Outcome, ...]] = (
    Outcome("promote", None, "promote"),
    Outcome("hold", None, "hold"),
    Outcome("abort", None, "abort"),
    Outcome("hold", "no_data", None),
    Outcome("abort", "hard_slo_breach", "promote"),
    Outcome("abort", "hard_slo_breach", "hold"),
    Outcome("abort", "hard_slo_breach", "abort"),
    Outcome("hold", "insufficient_evidence", "promote"),
    Outcome("hold", "insufficient_evidence", "abort"),
    Outcome("hold", "regression_veto", "promote"),
    Outcome("hold", "shield", "promote"),
    Outcome("hold", "shield", "abort"),
    Outcome("abort", "shield", "promote"),
    Outcome("abort", "shield", "hold"),
    Outcome("abort", "shield", "abort"),
    Outcome("hold", "step_count", "promote"),
)
#: The ``guardrail`` label's values: ``none`` (the policy's choice stood) and every name but
#: ``dry_run``, which labels the answer Argo saw, not the decision (``dry_run`` is its own label).
GUARDRAIL_LABELS: Final = ("none", *(name for name in GUARDRAIL_NAMES if name != "dry_run"))
#: Rollouts with their own series; the rest are counted under :data:`OTHER`.
MAX_ROLLOUTS: Final = 1000
#: ``namespace`` and ``rollout`` past :data:`MAX_ROLLOUTS` (not a Kubernetes name: no clash).
OTHER: Final = "_other_"
DECISION_LABELS: Final = (
    "namespace",
    "rollout",
    "decision",
    "guardrail",
    "proposed",
    "answer",
    "dry_run",
)
#: How a decision read its canary's life (:meth:`PrometheusSource.measure_blocking`).
LIFE_READS: Final = ("kept", "full")
DURATION_BUCKETS: Final = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

__all__ = ["CONTENT_TYPE_LATEST", "OUTCOMES", "PREFIX", "Outcome", "ServiceMetrics"]


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class ServiceMetrics:
    """The metrics of one app instance.

    ``dry_run`` and ``dry_run_answer`` are the service's settings: with them the answer each
    outcome gets is known, so a Rollout's series are created with the one ``answer`` and
    ``dry_run`` they can have in this process.
    """

    def __init__(
        self,
        *,
        dry_run: bool = False,
        dry_run_answer: Action = "hold",
        max_rollouts: int = MAX_ROLLOUTS,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._dry_run = dry_run
        self._dry_run_answer = dry_run_answer
        self._max_rollouts = max_rollouts
        self._rollouts: set[tuple[str, str]] = set()
        self.decisions = Counter(
            f"{PREFIX}_decisions_total",
            "Decisions computed, by Rollout, real decision, the guardrail that set it, the "
            "policy's proposal and the answer Argo saw (in dry-run mode the real decision is not "
            "the answer).",
            DECISION_LABELS,
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
        self.life_reads = Counter(
            f"{PREFIX}_life_reads_total",
            "Decisions by how they read the canary's life: 'kept' (only the windows after those "
            "of its kept life) or 'full' (the whole life: a canary new to this process, or a "
            "moment more than a sixth of a window off the canary's grid).",
            ["read"],
            registry=self.registry,
        )
        self.canary_lives = Gauge(
            f"{PREFIX}_canary_lives",
            "Canaries whose life this process keeps between decisions.",
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
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1: the service's version, the feature spec it builds observations for and "
            "the Python it runs on.",
            ["version", "feature_spec_version", "python_version"],
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
        self.build_info.labels(_version(), FEATURE_SPEC_VERSION, platform.python_version()).set(1)
        for kind in ERROR_KINDS:
            self.prometheus_errors.labels(kind)
        for read in LIFE_READS:
            self.life_reads.labels(read)

    def answer_for(self, outcome: Outcome) -> Action:
        """The answer Argo sees for ``outcome`` in this process (the pipeline's own rule)."""
        guarded = Guarded(outcome.decision, outcome.guardrail, "")
        evaluation = Evaluation(guarded, outcome.proposed, None, None)
        return answer(evaluation, self._dry_run, self._dry_run_answer).decision

    def _rollout_labels(self, namespace: str, rollout: str) -> tuple[str, str]:
        """The Rollout's label values; its series are created at its first decision."""
        key = (namespace, rollout)
        if key in self._rollouts:
            return key
        if len(self._rollouts) >= self._max_rollouts:
            key = (OTHER, OTHER)
            if key in self._rollouts:
                return key
        self._rollouts.add(key)
        dry_run = "true" if self._dry_run else "false"
        for outcome in OUTCOMES:
            self.decisions.labels(*key, *outcome.labels(), self.answer_for(outcome), dry_run)
        return key

    def observe_decision(
        self,
        *,
        namespace: str,
        rollout: str,
        decision: str,
        guardrail: str | None,
        proposed: str | None,
        answer: str,
        dry_run: bool,
        seconds: float,
    ) -> None:
        """Count one decision: the real one (``decision``, ``guardrail``), the policy's
        ``proposed`` action (``None``: it did not run) and the ``answer`` Argo saw."""
        labels = self._rollout_labels(namespace, rollout)
        self.decisions.labels(
            *labels,
            decision,
            guardrail or "none",
            proposed or "none",
            answer,
            "true" if dry_run else "false",
        ).inc()
        self.decision_duration.observe(seconds)

    def observe_life_read(self, read: str, lives: int) -> None:
        """One decision's read of its canary's life (``kept`` or ``full``), and how many
        lives the process keeps after it."""
        self.life_reads.labels(read).inc()
        self.canary_lives.set(lives)

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
