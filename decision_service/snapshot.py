"""What one decision is built from: each version's counts and latency over two spans.

:class:`MetricsSnapshot` is the plain data object between the measuring side (Prometheus in the
service, the simulator in training) and everything that judges it (features, guardrails,
statistics). It holds, for the canary and the stable version:

* ``canary`` / ``stable``: the last analysis window (requests, errors, p50 and p95 latency);
* ``canary_cumulative`` / ``stable_cumulative``: the canary's whole life so far (counts since its
  pods appeared, selected by its pod-template hash) and the stable version over the same span.
  This accumulated evidence is what lets any replica answer from Prometheus alone
  (``docs/architecture.md``, "Evidence accumulates; any replica can answer").

A metric that is absent is ``NaN`` (counts) or ``None`` (latencies), never a made-up number;
whoever needs it raises :class:`MissingMetricError`, and the decision is ``hold``.
"""

from __future__ import annotations

from dataclasses import dataclass

from decision_service.shield import EvidenceSummary


class MissingMetricError(ValueError):
    """A metric the observation needs is absent (no requests, NaN, empty Prometheus result)."""

    def __init__(self, metric: str, detail: str) -> None:
        super().__init__(f"{metric}: {detail}")
        self.metric = metric
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VersionMetrics:
    """What Prometheus reports for one version over one span of time.

    Latencies are ``None`` when the version served no request in the span (Prometheus then
    returns NaN or nothing): there is no latency to report, and none is invented.
    """

    requests: float
    errors: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one decision is built from (see the module docstring)."""

    step_weight: float
    canary: VersionMetrics
    stable: VersionMetrics
    canary_cumulative: VersionMetrics
    stable_cumulative: VersionMetrics
    #: The shield's evidence over the canary's life, window by window (None: not measured).
    evidence: EvidenceSummary | None = None
