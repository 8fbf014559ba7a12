"""The demo's timeline picture: weight and decisions, error rate and latency of both versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from demo_apps.local.driver import Event
from demo_apps.local.loadgen import Bucket

DECISION_COLOURS = {"promote": "tab:green", "hold": "tab:gray", "abort": "tab:red", None: "black"}
TRACK_COLOURS = {"stable": "tab:blue", "canary": "tab:orange"}


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


def plot_timeline(
    path: Path,
    events: Sequence[Event],
    buckets: Mapping[int, Mapping[str, Bucket]],
    *,
    origin: float,
    title: str,
    window_seconds: int = 3,
) -> Path:
    """Write the timeline PNG to ``path``; times are seconds since ``origin`` (monotonic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_weight, ax_errors, ax_latency) = plt.subplots(
        3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1]}
    )
    weights = [(e.time - origin, e.weight) for e in events if e.kind == "weight"]
    end = max([e.time - origin for e in events] + [float(max(buckets, default=1))])
    if weights:
        xs = [t for t, _ in weights] + [end]
        ys = [w for _, w in weights] + [weights[-1][1]]
        ax_weight.step(xs, ys, where="post", color="tab:purple", label="canary weight")
    for event in events:
        if event.kind != "measurement":
            continue
        decision = event.data.get("decision")
        ax_weight.scatter(
            event.time - origin,
            event.weight,
            color=DECISION_COLOURS.get(decision, "black"),
            zorder=3,
            s=30,
            marker="o" if decision else "x",
        )
    for decision, colour in DECISION_COLOURS.items():
        ax_weight.scatter(
            [], [], color=colour, label=decision or "error", marker="o" if decision else "x"
        )
    verdicts = [e for e in events if e.kind == "verdict"]
    if verdicts:
        ax_weight.axvline(verdicts[-1].time - origin, color="black", linestyle=":", linewidth=1)
    ax_weight.set_ylabel("canary weight (%)")
    ax_weight.set_ylim(-5, 105)
    ax_weight.legend(loc="upper left", fontsize=8, ncol=5)
    ax_weight.set_title(title)
    for track, colour in TRACK_COLOURS.items():
        seconds, rates, latencies = _smoothed(buckets, track, window_seconds)
        ax_errors.plot(seconds, [100 * r for r in rates], color=colour, label=track)
        ax_latency.plot(seconds, latencies, color=colour, label=track)
    ax_errors.set_ylabel(f"error rate (%), {window_seconds} s")
    ax_errors.legend(loc="upper left", fontsize=8)
    ax_latency.set_ylabel(f"mean latency (ms), {window_seconds} s")
    ax_latency.set_xlabel("seconds since traffic started (stable only until the first setWeight)")
    ax_latency.legend(loc="upper left", fontsize=8)
    for axis in (ax_weight, ax_errors, ax_latency):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
