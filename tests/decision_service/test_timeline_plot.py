"""The one timeline picture, drawn for the replay and for the demo (whose drawing moved here so
the replay, in the service's package, can share it: imports point demo_apps → decision_service)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from decision_service.timeline_plot import (
    Mark,
    PlotUnavailable,
    Timeline,
    TrackSeries,
    plot_timeline,
)
from demo_apps.local.driver import Event
from demo_apps.local.loadgen import Bucket
from demo_apps.local.timeline import plot_timeline as plot_demo_timeline


def _timeline() -> Timeline:
    return Timeline(
        title="replay",
        weights=[(0.0, 5.0), (60.0, 10.0)],
        marks=[Mark(30.0, 5.0, "hold"), Mark(60.0, 5.0, "promote"), Mark(90.0, 10.0, "abort")],
        tracks={
            "stable": TrackSeries([30.0, 60.0, 90.0], [0.01, 0.01, 0.01], [80.0, 82.0, 81.0]),
            "canary": TrackSeries([30.0, 60.0, 90.0], [0.01, 0.02, 0.2], [85.0, 90.0, 300.0]),
        },
        end=90.0,
        error_label="error rate (%), 30s window",
        latency_label="p95 latency (ms), 30s window",
        x_label="seconds",
        verdict_time=90.0,
        recorded=[Mark(30.0, 5.0, "hold"), Mark(60.0, 5.0, "promote"), Mark(90.0, 10.0, None)],
        recorded_label="Argo recorded",
    )


def test_the_picture_is_drawn(tmp_path: Path) -> None:
    path = plot_timeline(tmp_path / "out" / "timeline.png", _timeline())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_without_matplotlib_the_error_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match="pip install matplotlib"):
        plot_timeline(tmp_path / "timeline.png", _timeline())


def test_the_demo_draws_its_events_and_load_through_it(tmp_path: Path) -> None:
    events = [
        Event("weight", 100.0, 0, 5, "setWeight"),
        Event("measurement", 103.0, 2, 5, "m", {"decision": "hold"}),
        Event("measurement", 106.0, 2, 5, "m", {"decision": None, "error": "503"}),
        Event("verdict", 107.0, None, 5, "aborted"),
    ]
    buckets = {s: {"stable": Bucket(100, 1, 3.0), "canary": Bucket(5, 1, 0.2)} for s in range(8)}
    path = plot_demo_timeline(tmp_path / "demo.png", events, buckets, origin=100.0, title="t")
    assert path.stat().st_size > 10_000


def test_the_demo_plots_the_p95_its_answers_quote_and_marks_guardrails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the picture is given: the p95 each reason quotes (both versions), the SLO, and each
    decision's guardrail (its marker); answers quoting no p95 (the shield's) add no point."""
    import demo_apps.local.timeline as demo_timeline

    events = [
        Event("weight", 100.0, 0, 5, "setWeight"),
        Event(
            "measurement",
            103.0,
            2,
            5,
            "m",
            {
                "decision": "hold",
                "guardrail": None,
                "reason": "Policy chose hold: canary 0.13% errors over 1586 requests vs stable "
                "0.23%; p95 97 ms vs 88 ms since the canary started.",
            },
        ),
        Event(
            "measurement",
            106.0,
            2,
            5,
            "m",
            {
                "decision": "hold",
                "guardrail": "shield",
                "reason": "The decision was promote, but the shield holds: proof missing.",
            },
        ),
        Event("verdict", 107.0, None, 5, "paused"),
    ]
    drawn: list[Timeline] = []
    monkeypatch.setattr(demo_timeline, "draw", lambda path, t: drawn.append(t) or path)
    buckets = {s: {"stable": Bucket(100, 1, 3.0), "canary": Bucket(5, 1, 0.2)} for s in range(8)}
    demo_timeline.plot_timeline(
        tmp_path / "d.png", events, buckets, origin=100.0, title="t", slo_ms=200.0
    )
    (timeline,) = drawn
    assert timeline.quoted_p95 == {"canary": [(3.0, 97.0)], "stable": [(3.0, 88.0)]}
    assert timeline.slo_ms == 200.0
    assert [(m.decision, m.guardrail) for m in timeline.marks] == [
        ("hold", None),
        ("hold", "shield"),
    ]
    path = plot_timeline(tmp_path / "drawn.png", timeline)
    assert path.stat().st_size > 10_000


def test_every_guardrail_has_its_own_marker() -> None:
    from decision_service.guardrails import GUARDRAIL_NAMES
    from decision_service.timeline_plot import GUARDRAIL_MARKERS, OTHER_GUARDRAIL_MARKER

    markers = [GUARDRAIL_MARKERS[g] for g in (None, *GUARDRAIL_NAMES)]
    assert len(set(markers)) == len(markers)
    assert OTHER_GUARDRAIL_MARKER not in markers


def test_the_title_names_the_weight_an_abort_was_decided_at() -> None:
    from demo_apps.local.demo import decided_at
    from demo_apps.local.driver import Verdict

    events = [
        Event("weight", 0.0, 0, 5, "setWeight"),
        Event("measurement", 3.0, 1, 5, "m", {"decision": "abort"}),
        Event("weight", 3.5, 1, 0, "abort"),
    ]
    assert decided_at(Verdict("aborted", "abort", 0, 1, 1), events) == 5
    assert decided_at(Verdict("paused", "inconclusive", 10, 2, 10), events) == 10
