"""Prometheus's answers, parsed: the window query's series become each version's metrics.

:func:`parse_matrix` sums the window-by-window range query's matrix (see
:mod:`decision_service.queries`) per window and version; its :class:`WindowMatrix` gives the
shield's windows and :class:`~decision_service.snapshot.VersionMetrics` over any of them (one
window, or the canary's life). :func:`parse_start` reads the canary's start time. Latency
quantiles are computed from the bucket counts with
:func:`decision_service.histogram.histogram_quantile`, which follows Prometheus's own
``histogram_quantile``.

An answer that does not fit the contract raises :class:`PrometheusUnavailable` (the decision is
a 503); a count Prometheus did not return stays NaN and a latency ``None`` — never filled in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any, Final, Literal

from decision_service.histogram import histogram_quantile
from decision_service.queries import QUERY_TAG_LABEL, QueryTemplates
from decision_service.shield import VersionWindow
from decision_service.snapshot import VersionMetrics

ErrorKind = Literal["unreachable", "timeout", "http_error", "malformed", "bad_template"]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = (
    "unreachable",
    "timeout",
    "http_error",
    "malformed",
    "bad_template",
)


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer usably: the decision is a 503, never a guess."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"Prometheus {kind.replace('_', ' ')}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail


def _malformed(series: Any) -> PrometheusUnavailable:
    return PrometheusUnavailable(
        "malformed", f"unexpected series in the answer: {str(series)[:200]}"
    )


def _sample_value(series: Any) -> tuple[dict[str, str], float]:
    """Labels and value of one instant-vector series; PrometheusUnavailable if malformed."""
    try:
        labels = series["metric"]
        raw = series["value"][1]
        if not isinstance(labels, dict) or not isinstance(raw, str):
            raise TypeError("unexpected types")
        return labels, float(raw)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _malformed(series) from exc


def _result_list(result: Any) -> list[Any]:
    if not isinstance(result, list):
        raise PrometheusUnavailable(
            "malformed", f"expected an instant vector, got {str(result)[:200]}"
        )
    return result


def parse_start(result: Any) -> float | None:
    """The canary's start (unix seconds) from the ``canary_start`` answer; None if absent."""
    values = [value for _, value in map(_sample_value, _result_list(result))]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def _quantiles(buckets: dict[float, float], scale: float) -> tuple[float | None, float | None]:
    bounds = sorted(b for b in buckets if math.isfinite(b))
    if math.inf not in buckets or not bounds:
        return None, None
    # increase() extrapolates each bucket on its own, so counts can dip; Prometheus'
    # histogram_quantile makes them monotonic the same way.
    cumulative = list(accumulate([buckets[b] for b in bounds] + [buckets[math.inf]], max))
    p50 = histogram_quantile(0.50, bounds, cumulative)
    p95 = histogram_quantile(0.95, bounds, cumulative)
    return (
        p50 * scale if p50 is not None else None,
        p95 * scale if p95 is not None else None,
    )


def _template_error(templates: QueryTemplates, labels: dict[str, str]) -> PrometheusUnavailable:
    """Why a series does not fit the template contract."""
    tag = labels.get(QUERY_TAG_LABEL, "")
    name = tag.partition(":")[2]
    if name not in {"requests", "latency_buckets"}:
        return PrometheusUnavailable("malformed", f"series with unknown tag {tag!r}")
    if templates.version_label not in labels:
        return PrometheusUnavailable(
            "bad_template",
            f"{name} returned a series without the '{templates.version_label}' label: "
            "keep it in 'sum by (...)'",
        )
    if name == "requests":
        return PrometheusUnavailable(
            "bad_template",
            f"requests returned a series without the '{templates.status_label}' label",
        )
    return PrometheusUnavailable(
        "bad_template", "latency_buckets returned a series without a numeric 'le'"
    )


@dataclass(slots=True)
class WindowMatrix:
    """The window-by-window range query's answer, summed per window end and version.

    ``counts[(t, track)]`` is ``[requests, errors]``, ``buckets[(t, track)]`` the raw ``le``
    counts (cumulative over ``le``, as Prometheus returns them); ``broken`` holds the window ends
    where some series was NaN (such a window is left out whole: nothing is filled in);
    ``times`` every window end the answer holds. ``scale`` turns the latency unit into ms.
    """

    counts: dict[tuple[float, str], list[float]]
    buckets: dict[tuple[float, str], dict[float, float]]
    broken: set[float]
    times: set[float]
    scale: float

    def windows(self) -> dict[float, tuple[VersionWindow, VersionWindow]]:
        """``{window end: (canary, stable)}`` for every window end that is not broken."""
        out: dict[float, tuple[VersionWindow, VersionWindow]] = {}
        layouts: dict[tuple[float, ...], _Layout] = {}  # every window has the same buckets
        counts, buckets, scale = self.counts, self.buckets, self.scale
        for t in sorted({t for t, _ in counts} - self.broken):
            out[t] = (
                _version_window(
                    counts.get((t, "canary")), buckets.get((t, "canary")), scale, layouts
                ),
                _version_window(
                    counts.get((t, "stable")), buckets.get((t, "stable")), scale, layouts
                ),
            )
        return out

    def end_near(self, at: float) -> float | None:
        """The window end the answer holds at ``at`` (to the millisecond Prometheus keeps)."""
        nearest = min(self.times, key=lambda t: abs(t - at), default=None)
        return nearest if nearest is not None and abs(nearest - at) < 0.0015 else None

    def metrics(self, ends: Iterable[float], track: str) -> VersionMetrics:
        """One version's :class:`VersionMetrics` over the windows ending at ``ends`` (summed,
        broken ones left out): NaN counts when the version has no series in any of them,
        latencies ``None`` without buckets."""
        totals = Totals()
        for t in ends:
            totals.add(self, t, track)
        return totals.metrics(self.scale)


@dataclass(slots=True)
class Totals:
    """One version's counts and raw ``le`` counts summed over windows, added one window at a
    time (:meth:`WindowMatrix.metrics` sums a set of windows with it; a canary's cached life,
    :mod:`decision_service.canary_life`, keeps one per version and adds each new window)."""

    requests: float = 0.0
    errors: float = 0.0
    counted: bool = False  # whether any window had a count for the version
    histogram: dict[float, float] = field(default_factory=dict)

    def add(self, matrix: WindowMatrix, t: float, track: str) -> None:
        """The window of ``matrix`` ending at ``t`` (nothing when it is broken)."""
        if t in matrix.broken:
            return
        count = matrix.counts.get((t, track))
        if count is not None:
            self.counted = True
            self.requests += count[0]
            self.errors += count[1]
        histogram = self.histogram
        for bound, value in matrix.buckets.get((t, track), {}).items():
            histogram[bound] = histogram.get(bound, 0.0) + value

    def copy(self) -> Totals:
        return Totals(self.requests, self.errors, self.counted, dict(self.histogram))

    def metrics(self, scale: float) -> VersionMetrics:
        """The sums as :class:`VersionMetrics` (``scale`` turns the latency unit into ms)."""
        p50, p95 = _quantiles(self.histogram, scale) if self.histogram else (None, None)
        return VersionMetrics(
            requests=self.requests if self.counted else math.nan,
            errors=self.errors if self.counted else math.nan,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
        )


def parse_matrix(
    result: Any, templates: QueryTemplates, canary: str, stable: str, span: str = "window"
) -> WindowMatrix:
    """The window-by-window range query (a matrix), summed per window end and version.

    Each window's counts come from the ``requests`` and ``latency_buckets`` templates over one
    analysis window; a version with no series at a time has no counts there, and a NaN count
    marks the whole window broken: nothing is filled in.
    """
    if not isinstance(result, list):
        raise PrometheusUnavailable("malformed", f"expected a matrix, got {str(result)[:200]}")
    is_error = re.compile(templates.error_status).fullmatch
    version_label, status_label = templates.version_label, templates.status_label
    tracks = {canary: "canary", stable: "stable"}
    counts: dict[tuple[float, str], list[float]] = {}  # (t, track) -> [requests, errors]
    buckets: dict[tuple[float, str], dict[float, float]] = {}
    broken: set[float] = set()
    for series in result:
        try:
            labels, values = series["metric"], series["values"]
            if not isinstance(labels, dict) or not isinstance(values, list):
                raise TypeError("unexpected types")
        except (KeyError, TypeError) as exc:
            raise _malformed(series) from exc
        tag = labels.get(QUERY_TAG_LABEL, "")
        if tag and not tag.startswith(f"{span}:"):
            continue  # another span's series (the range query asks for one span only)
        name = tag.partition(":")[2]
        track = tracks.get(labels.get(version_label, ""))
        if track is None or name not in {"requests", "latency_buckets"}:
            if version_label in labels and name in {"requests", "latency_buckets"}:
                continue  # another version matched by a user's wider selector
            raise _template_error(templates, labels)
        if name == "requests":
            status = labels.get(status_label)
            if status is None:
                raise _template_error(templates, labels)
            error = bool(is_error(status))
        else:
            try:
                bound = float(labels["le"])
            except (KeyError, ValueError):
                raise _template_error(templates, labels) from None
        try:
            # one loop per kind of series: every point of a decision's answer passes here
            if name == "requests":
                for raw_t, raw_value in values:
                    t, value = float(raw_t), float(raw_value)
                    if value != value:  # NaN
                        broken.add(t)
                        continue
                    slot = counts.get((t, track))
                    if slot is None:
                        counts[t, track] = [value, value if error else 0.0]
                    else:
                        slot[0] += value
                        if error:
                            slot[1] += value
            else:
                for raw_t, raw_value in values:
                    t, value = float(raw_t), float(raw_value)
                    if value != value:
                        broken.add(t)
                        continue
                    histogram = buckets.get((t, track))
                    if histogram is None:
                        buckets[t, track] = {bound: value}
                    else:
                        histogram[bound] = histogram.get(bound, 0.0) + value
        except (TypeError, ValueError) as exc:  # a point that is not [time, "value"]
            raise _malformed(series) from exc
    times = {t for t, _ in counts} | {t for t, _ in buckets} | broken
    scale = 1000.0 if templates.latency_unit == "seconds" else 1.0
    return WindowMatrix(counts, buckets, broken, times, scale)


#: A histogram's layout: its finite bounds in order, the same in ms, and whether it has +Inf.
_Layout = tuple[list[float], tuple[float, ...], bool]


def _version_window(
    count: list[float] | None,
    histogram: dict[float, float] | None,
    scale: float,
    layouts: dict[tuple[float, ...], _Layout],
) -> VersionWindow:
    if count is None:
        return VersionWindow(0.0, 0.0, ())
    requests, errors = count
    if not histogram:
        return VersionWindow(requests, errors, ())
    keys = tuple(histogram)
    layout = layouts.get(keys)
    if layout is None:
        bounds = sorted(b for b in histogram if math.isfinite(b))
        layout = layouts[keys] = (bounds, tuple(b * scale for b in bounds), math.inf in histogram)
    bounds, bounds_ms, has_inf = layout
    if not has_inf:
        return VersionWindow(requests, errors, ())
    cumulative = list(accumulate([histogram[b] for b in bounds] + [histogram[math.inf]], max))
    per_bucket = [cumulative[0]] + [b - a for a, b in pairwise(cumulative)]
    return VersionWindow(requests, errors, tuple(per_bucket), bounds_ms)
