"""Argo's assessment of an analysis metric, and when its next measurement is due.

Part of the local Argo semantics (the overview is in :mod:`demo_apps.local.manifests`).

* **Assessment** of a metric after each measurement: failed > ``failureLimit`` → Failed;
  inconclusive > ``inconclusiveLimit`` → Inconclusive; consecutive errors >
  ``consecutiveErrorLimit`` (default 4) → Error (later checks win, as in the controller);
  consecutive successes ≥ ``consecutiveSuccessLimit`` → Successful; ``count`` reached →
  Inconclusive when both a failure limit and a success limit apply and the success limit was
  not met, Failed when only the success limit applies, else Successful.
* **The next measurement**: Error measurements do not count toward ``count``; after one, the
  next measurement comes after the error retry interval (Argo: 10 s) instead of ``interval``.
* **History**: the counters cover every measurement, but only the last 10 measurements are kept
  (``DefaultMeasurementHistoryLimit``), or the limit of a ``measurementRetention`` rule matching
  the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from demo_apps.local.conditions import Phase
from demo_apps.local.web import Measurement, WebMetric

#: Argo's ``DefaultErrorRetryInterval``.
DEFAULT_ERROR_RETRY_SECONDS = 10.0
#: Argo's ``DefaultMeasurementHistoryLimit``: measurements kept per metric.
DEFAULT_MEASUREMENT_HISTORY_LIMIT = 10


@dataclass
class MetricResult:
    """The counters Argo keeps per metric in an AnalysisRun's status."""

    measurements: list[Measurement] = field(default_factory=list)
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    #: Measurements kept (the oldest are dropped; the counters keep counting).
    history_limit: int = DEFAULT_MEASUREMENT_HISTORY_LIMIT

    def record(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        del self.measurements[: max(0, len(self.measurements) - self.history_limit)]
        if measurement.phase == "Error":
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if measurement.phase == "Successful":
            self.successful += 1
            self.consecutive_success += 1
            return
        self.consecutive_success = 0
        if measurement.phase == "Failed":
            self.failed += 1
        else:
            self.inconclusive += 1


def assess(metric: WebMetric, result: MetricResult) -> tuple[Phase | None, str]:
    """The metric's phase after the last measurement, ``None`` while it still runs."""
    phase: Phase | None = None
    message = ""
    if metric.failure_limit >= 0 and result.failed > metric.failure_limit:
        phase, message = (
            "Failed",
            f"failed ({result.failed}) > failureLimit ({metric.failure_limit})",
        )
    if result.inconclusive > metric.inconclusive_limit:
        phase = "Inconclusive"
        message = (
            f"inconclusive ({result.inconclusive}) > inconclusiveLimit "
            f"({metric.inconclusive_limit})"
        )
    if result.consecutive_error > metric.consecutive_error_limit:
        phase = "Error"
        message = (
            f"consecutiveErrors ({result.consecutive_error}) > consecutiveErrorLimit "
            f"({metric.consecutive_error_limit})"
        )
    if phase is not None:
        return phase, message
    success_limit = metric.consecutive_success_limit
    if success_limit > 0 and result.consecutive_success >= success_limit:
        return "Successful", (
            f"consecutiveSuccesses ({result.consecutive_success}) >= consecutiveSuccessLimit "
            f"({success_limit})"
        )
    if metric.count is not None and result.count >= metric.count:
        failure_applies = metric.failure_limit >= 0
        if success_limit > 0 and failure_applies:
            return "Inconclusive", (
                f"count ({metric.count}) reached: failures ({result.failed}) <= failureLimit "
                f"({metric.failure_limit}) and consecutiveSuccesses "
                f"({result.consecutive_success}) < consecutiveSuccessLimit ({success_limit})"
            )
        if success_limit > 0:
            return "Failed", f"count ({metric.count}) reached without {success_limit} successes"
        return "Successful", f"count ({metric.count}) reached"
    return None, ""


def next_measurement_delay(
    metric: WebMetric, last: Measurement, error_retry_seconds: float
) -> float:
    """Seconds from the end of ``last`` to the next measurement."""
    if last.phase == "Error":
        return error_retry_seconds
    if metric.interval_seconds is None:
        return 0.0
    return metric.interval_seconds
