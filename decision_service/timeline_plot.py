"""The timeline picture: the canary's weight and every decision, each version's error rate and
latency. One drawing for the live demo (``demo_apps/local/timeline.py`` feeds it the driver's
events and the load generator's per-second counts) and the replay (:mod:`decision_service.replay`
feeds it the replayed decisions and each window's figures), so both pictures read the same.

It lives in the service's package because the replay does (imports point one way:
``demo_apps`` → ``decision_service``). matplotlib is an optional extra (``pip install
matplotlib``, part of ``[train]``): it is imported only when a picture is drawn, and
:class:`PlotUnavailable` says how to get it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

DECISION_COLOURS: Final[Mapping[str | None, str]] = {
    "promote": "tab:green",
    "hold": "tab:gray",
    "abort": "tab:red",
    None: "black",
}
TRACK_COLOURS: Final[Mapping[str, str]] = {"stable": "tab:blue", "canary": "tab:orange"}
#: The marker of a decision by the guardrail that made it (none: the policy's own).
GUARDRAIL_MARKERS: Final[Mapping[str | None, str]] = {
    None: "o",
    "shield": "s",
    "step_count": "D",
    "regression_veto": "v",
    "no_data": "P",
    "hard_slo_breach": "^",
    "insufficient_evidence": "<",
    "dry_run": ">",
}
OTHER_GUARDRAIL_MARKER: Final = "h"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True, slots=True)
class Mark:
    """One decision on the weight panel (``decision`` ``None``: an error, drawn as an x)."""

    time: float
    weight: float
    decision: str | None
    guardrail: str | None = None


@dataclass(frozen=True, slots=True)
class TrackSeries:
    """One version's error rate (0-1) and latency (ms) over time."""

    times: Sequence[float]
    error_rates: Sequence[float]
    latencies_ms: Sequence[float]


@dataclass(frozen=True)
class Timeline:
    """Everything one picture shows; times in seconds from the picture's origin."""

    title: str
    weights: Sequence[tuple[float, float]]  # (time, weight) at each weight change
    marks: Sequence[Mark]
    tracks: Mapping[str, TrackSeries]
    end: float
    error_label: str
    latency_label: str
    x_label: str
    verdict_time: float | None = None
    #: Decisions recorded elsewhere (what Argo did), drawn as rings around the marks.
    recorded: Sequence[Mark] = field(default_factory=tuple)
    recorded_label: str = "recorded"
    #: The p95 each answer's reason quotes, per version: (time, ms).
    quoted_p95: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    #: The latency SLO (ms), drawn as a line on the latency panel.
    slo_ms: float | None = None


def _marker(mark: Mark) -> str:
    return GUARDRAIL_MARKERS.get(mark.guardrail, OTHER_GUARDRAIL_MARKER)


def plot_timeline(path: Path, timeline: Timeline) -> Path:
    """Write the picture as a PNG to ``path`` (raises :class:`PlotUnavailable`)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(
            "drawing the timeline needs matplotlib: pip install matplotlib "
            "(or the project's [train] extra)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_weight, ax_errors, ax_latency) = plt.subplots(
        3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1]}
    )
    weights = list(timeline.weights)
    if weights:
        xs = [t for t, _ in weights] + [timeline.end]
        ys = [w for _, w in weights] + [weights[-1][1]]
        ax_weight.step(xs, ys, where="post", color="tab:purple", label="canary weight")
    for mark in timeline.recorded:
        ax_weight.scatter(
            mark.time,
            mark.weight,
            facecolors="none",
            edgecolors=DECISION_COLOURS.get(mark.decision, "black"),
            zorder=2,
            s=110,
            linewidths=1.5,
        )
    guardrails: list[str | None] = []
    for mark in timeline.marks:
        ax_weight.scatter(
            mark.time,
            mark.weight,
            color=DECISION_COLOURS.get(mark.decision, "black"),
            zorder=3,
            s=30,
            marker=_marker(mark) if mark.decision else "x",
        )
        if mark.decision and mark.guardrail not in guardrails:
            guardrails.append(mark.guardrail)
    for decision, colour in DECISION_COLOURS.items():
        ax_weight.scatter(
            [], [], color=colour, label=decision or "error", marker="_" if decision else "x", s=120
        )
    for guardrail in guardrails:
        ax_weight.scatter(
            [],
            [],
            facecolors="none",
            edgecolors="black",
            marker=GUARDRAIL_MARKERS.get(guardrail, OTHER_GUARDRAIL_MARKER),
            label=guardrail or "policy (no guardrail)",
        )
    if timeline.recorded:
        ax_weight.scatter(
            [], [], facecolors="none", edgecolors="black", label=timeline.recorded_label, s=110
        )
    if timeline.verdict_time is not None:
        ax_weight.axvline(timeline.verdict_time, color="black", linestyle=":", linewidth=1)
    ax_weight.set_ylabel("canary weight (%)")
    ax_weight.set_ylim(-5, 105)
    ax_weight.legend(loc="upper left", fontsize=8, ncol=5)
    ax_weight.set_title(timeline.title)
    for track, series in timeline.tracks.items():
        colour = TRACK_COLOURS.get(track, "tab:gray")
        ax_errors.plot(
            series.times, [100 * r for r in series.error_rates], color=colour, label=track
        )
        ax_latency.plot(series.times, series.latencies_ms, color=colour, label=track)
    for track, points in timeline.quoted_p95.items():
        if points:
            ax_latency.scatter(
                [t for t, _ in points],
                [v for _, v in points],
                color=TRACK_COLOURS.get(track, "tab:gray"),
                marker="^",
                s=22,
                zorder=3,
                label=f"{track} p95 as the answers quote it (since the canary started)",
            )
    if timeline.slo_ms is not None:
        ax_latency.axhline(
            timeline.slo_ms,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"SLO {timeline.slo_ms:g} ms",
        )
    ax_errors.set_ylabel(timeline.error_label)
    ax_errors.legend(loc="upper left", fontsize=8)
    ax_latency.set_ylabel(timeline.latency_label)
    ax_latency.set_xlabel(timeline.x_label)
    ax_latency.legend(loc="upper left", fontsize=8)
    for axis in (ax_weight, ax_errors, ax_latency):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
