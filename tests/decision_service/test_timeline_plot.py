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
