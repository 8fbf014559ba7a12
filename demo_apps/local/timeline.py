"""The demo's timeline picture: weight and decisions, error rate and latency of both versions.

The drawing is shared with the replay (:mod:`decision_service.timeline_plot`); this module turns
the driver's events and the load generator's per-second counts into what it draws.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from decision_service.timeline_plot import (
    DECISION_COLOURS,
    TRACK_COLOURS,
    Mark,
    Timeline,
    TrackSeries,
)
from decision_service.timeline_plot import plot_timeline as draw
from demo_apps.local.driver import Event
from demo_apps.local.loadgen import Bucket

__all__ = ["DECISION_COLOURS", "TRACK_COLOURS", "plot_timeline"]


def _smoothed(
    buckets: Mapping[int, Mapping[str, Bucket]], track: str, window: int
) -> tuple[list[float], list[float], list[float]]:
    """Seconds, error rate and mean latency (ms) over a trailing ``window`` of seconds."""
    if not buckets:
        return [], [], []
    last = max(buckets)
    seconds, rates, latencies = [], [], []
    for second in range(last + 1):
        requests = errors = 0
        latency = 0.0
        for s in range(max(0, second - window + 1), second + 1):
            b = buckets.get(s, {}).get(track)
            if b is not None:
                requests += b.requests
                errors += b.errors
                latency += b.latency_seconds
        if requests:
            seconds.append(float(second))
            rates.append(errors / requests)
            latencies.append(1000.0 * latency / requests)
    return seconds, rates, latencies


#: How an answer's reason quotes both versions' p95 (``decision_service.guardrails``).
QUOTED_P95 = re.compile(r"p95 (\d+(?:\.\d+)?) ms vs (\d+(?:\.\d+)?) ms")


def quoted_p95(events: Sequence[Event], origin: float) -> dict[str, list[tuple[float, float]]]:
    """The canary's and stable's p95 as each answer's reason quotes it (answers that quote none,
    such as the shield's, are skipped)."""
    points: dict[str, list[tuple[float, float]]] = {"canary": [], "stable": []}
    for e in events:
        if e.kind != "measurement":
            continue
        found = QUOTED_P95.search(str(e.data.get("reason", "")))
        if found:
            points["canary"].append((e.time - origin, float(found.group(1))))
            points["stable"].append((e.time - origin, float(found.group(2))))
    return points


def plot_timeline(
    path: Path,
    events: Sequence[Event],
    buckets: Mapping[int, Mapping[str, Bucket]],
    *,
    origin: float,
    title: str,
    window_seconds: int = 3,
    slo_ms: float | None = None,
) -> Path:
    """Write the timeline PNG to ``path``; times are seconds since ``origin`` (monotonic)."""
    verdicts = [e for e in events if e.kind == "verdict"]
    tracks = {}
    for track in TRACK_COLOURS:
        seconds, rates, latencies = _smoothed(buckets, track, window_seconds)
        tracks[track] = TrackSeries(seconds, rates, latencies)
    timeline = Timeline(
        title=title,
        weights=[(e.time - origin, e.weight) for e in events if e.kind == "weight"],
        marks=[
            Mark(e.time - origin, e.weight, e.data.get("decision"), e.data.get("guardrail"))
            for e in events
            if e.kind == "measurement"
        ],
        tracks=tracks,
        end=max([e.time - origin for e in events] + [float(max(buckets, default=1))]),
        error_label=f"error rate (%), {window_seconds} s",
        latency_label=f"mean latency (ms), {window_seconds} s",
        x_label="seconds since traffic started (stable only until the first setWeight)",
        verdict_time=verdicts[-1].time - origin if verdicts else None,
        quoted_p95=quoted_p95(events, origin),
        slo_ms=slo_ms,
    )
    return draw(path, timeline)
