"""A canary's kept life (``decision_service/canary_life.py``): a decision that reads only the new
windows and adds them to the kept evidence answers exactly what a full read of the whole life
answers on the same windows, and only ever lags the moment asked by a sixth of a window.

Prometheus is replaced by a generator of range answers (every window a deterministic function of
its end, with late samples, broken and missing windows and traffic steps), so the two paths can be
compared decision by decision; ``test_prometheus_live.py`` compares them on a real Prometheus."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest

from decision_service.canary_life import LEAD_SECONDS, MAX_LIVES, SETTLE_SECONDS, grid_point
from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from decision_service.prometheus_answers import PrometheusUnavailable
from decision_service.prometheus_source import (
    BASELINE_WINDOWS,
    PrometheusSource,
    prometheus_client,
)
from decision_service.queries import QUERY_TAG_LABEL, QueryTemplates, Target, load_templates
from decision_service.shield import ShieldConfig, evidence_from, windows_at_current_share
from decision_service.snapshot import MetricsSnapshot
from decision_service.tolerance import Tolerance

STEP = 30.0
START = 1_700_000_000.0  # the canary's start
TARGET = Target("shop", "checkout", canary_hash="7c9d5f6b8", stable_hash="5f8b7c6d4")
TOLERANCE, SHIELD = Tolerance(), ShieldConfig()


def _weight(t: float) -> float:
    """The canary's traffic share: steps of 5, 20, 50 % every 10 minutes (after its start)."""
    if t <= START:
        return 0.0
    return (0.05, 0.2, 0.5, 0.5)[min(int((t - START) // 600), 3)]


class _Served(PrometheusSource):
    """A PrometheusSource whose range queries a generator answers, as Prometheus would: one point
    per window end ``start + k·step`` (to the millisecond), each window drawn from its end alone,
    its newest samples still missing while it ended less than ``late`` seconds before ``now``."""

    def __init__(self, templates: QueryTemplates, *, late: float = 0.0, bad: bool = True) -> None:
        super().__init__(
            prometheus_client("http://127.0.0.1:9", 1.0, 1),
            templates,
            window="30s",
            window_seconds=STEP,
            timeout_seconds=1.0,
        )
        self.now = START
        self.late = late
        self.bad = bad  # broken (NaN) and missing windows among the others
        self.asked: list[tuple[float, float]] = []

    def canary_start_blocking(self, target: Any, queries: Any, at: float) -> float:
        return START

    def query_range_blocking(self, promql: str, start: float, end: float, step: float) -> Any:
        self.asked.append((start, end))
        first_ms, end_ms, step_ms = round(start * 1000), round(end * 1000), round(step * 1000)
        times = [ms / 1000 for ms in range(first_ms, end_ms + 1, step_ms)]
        if self.bad:
            times = [t for t in times if int(t) % 17 != 3]  # no series at all there
        series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
        for t in times:
            for labels, value in self._drawn(t):
                series.setdefault(tuple(sorted(labels.items())), []).append([t, value])
        return [{"metric": dict(k), "values": v} for k, v in series.items()]

    def _drawn(self, t: float) -> list[tuple[dict[str, str], str]]:
        rng = random.Random(round(t * 1000))
        seen = 1.0 if self.now - t >= self.late else 0.8  # a scrape not yet appended
        total = rng.uniform(200, 400) * seen
        out: list[tuple[dict[str, str], str]] = []
        for version, share, error_rate, median in (
            (TARGET.canary_hash, _weight(t), 0.012, 0.045),
            (TARGET.stable_hash, 1.0 - _weight(t), 0.01, 0.04),
        ):
            requests = total * share
            if requests <= 0:
                continue
            errors = requests * error_rate * rng.uniform(0.3, 1.7)
            broken = self.bad and int(t) % 23 == 7
            base = {"rollouts_pod_template_hash": version}
            for code, n in (("200", requests - errors), ("500", errors)):
                labels = base | {QUERY_TAG_LABEL: "window:requests", "code": code}
                out.append((labels, "NaN" if broken and code == "500" else repr(n)))
            for bound in [*LATENCY_BUCKETS_SECONDS, math.inf]:
                below = 1.0 if math.isinf(bound) else 1 / (1 + math.exp(-(bound - median) / 0.01))
                le = "+Inf" if math.isinf(bound) else repr(float(bound))
                labels = base | {QUERY_TAG_LABEL: "window:latency_buckets", "le": le}
                out.append((labels, repr(requests * below)))
        return out


@pytest.fixture(scope="module")
def templates() -> QueryTemplates:
    return load_templates("demo")


def _full_read(source: _Served, at: float) -> tuple[MetricsSnapshot, int]:
    """What a decision read before lives were kept: the whole life on the moment ``at``."""
    snapshot, windows = source.readings_blocking(TARGET, 10.0, at)
    evidence = evidence_from(windows.baseline, windows.life, TOLERANCE, SHIELD)
    return replace(snapshot, evidence=evidence.summary()), windows_at_current_share(windows.life)


def _kept(source: _Served, at: float) -> tuple[MetricsSnapshot, int]:
    return source.measure_blocking(TARGET, 10.0, TOLERANCE, SHIELD, at)


@pytest.mark.parametrize("late", [0.0, 25.0])
def test_decisions_a_window_apart_read_what_a_full_read_reads(
    templates: QueryTemplates, late: float
) -> None:
    """A replay's moments (whole windows apart) and Argo's at an interval equal to the window:
    the kept life gives every decision exactly the full read's snapshot, evidence and step
    count, with late samples, broken and missing windows, traffic steps and a first decision
    before the canary's first window ended."""
    kept, full = _Served(templates, late=late), _Served(templates, late=late)
    first = START + 7.25
    for k in range(90):
        at = first + k * STEP
        kept.now = full.now = at
        assert repr(_kept(kept, at)) == repr(_full_read(full, at)), k
    # after the first, each decision asked only for the windows that had not yet settled
    for start, end in kept.asked[1:]:
        assert end - start == pytest.approx(math.ceil(SETTLE_SECONDS / STEP) * STEP, abs=0.002)
    kept.close()
    full.close()


def test_late_samples_are_read_again_until_settled(templates: QueryTemplates) -> None:
    """The windows of the last SETTLE_SECONDS are re-read at every decision: a kept life built
    while they were still missing samples gives the full read's answer once they arrived."""
    source, reference = _Served(templates, late=25.0), _Served(templates, late=25.0)
    ats = [START + 300.5 + k * STEP for k in range(6)]
    for at in ats:
        source.now = reference.now = at
        _kept(source, at)
    at = ats[-1] + STEP
    source.now = reference.now = at + 30.0  # everything has arrived by the next decision
    assert repr(_kept(source, at)) == repr(_full_read(reference, at))
    source.close()
    reference.close()


def test_jittered_moments_read_the_grid_and_rebuild_past_a_sixth_of_a_window(
    templates: QueryTemplates,
) -> None:
    """Argo's moments drift around the grid: a decision reads the grid point at most a second
    after it or a sixth of a window before it, exactly what a full read on that point reads;
    further off, it rebuilds on its own moment."""
    kept, full = _Served(templates, bad=False), _Served(templates, bad=False)
    rng = random.Random(7)
    at = START + 100.0
    rebuilds = 0
    for k in range(60):
        at += STEP + rng.choice([-0.8, -0.3, 0.0, 0.2, 0.9, 1.7, 4.0, 6.5])
        kept.now = full.now = at
        asked = len(kept.asked)
        snapshot, share = _kept(kept, at)
        start, end = kept.asked[asked]
        rebuilt = end - start > math.ceil(SETTLE_SECONDS / STEP) * STEP + 1
        rebuilds += rebuilt
        assert -min(LEAD_SECONDS, STEP / 6) <= at - end <= STEP / 6 + 0.001, k
        if rebuilt:
            assert end == pytest.approx(at, abs=0.001), k  # on its own moment
        assert repr((snapshot, share)) == repr(_full_read(full, end)), k
    assert 0 < rebuilds < 30
    kept.close()
    full.close()


def test_a_life_per_tolerance_and_shield_and_at_most_max_lives(templates: QueryTemplates) -> None:
    source = _Served(templates, bad=False)
    at = START + 400.0
    source.now = at
    strict = Tolerance(error_factor=1.05)
    loose, _ = source.measure_blocking(TARGET, 10.0, Tolerance(error_factor=3.0), SHIELD, at)
    tight, _ = source.measure_blocking(TARGET, 10.0, strict, SHIELD, at)
    assert loose.evidence is not None and tight.evidence is not None
    assert loose.evidence.tolerance != tight.evidence.tolerance
    assert len(source._lives) == 2
    for i in range(MAX_LIVES + 5):
        other = replace(TARGET, canary_hash=f"c{i}")
        source.measure_blocking(other, 10.0, TOLERANCE, SHIELD, at)
    assert len(source._lives) == MAX_LIVES
    source.close()


def test_a_young_canary_reads_its_baseline_once(templates: QueryTemplates) -> None:
    """The first read asks for stable's baseline windows; the next ones only for new windows."""
    source = _Served(templates, bad=False)
    at = START + 10.0
    source.now = at
    snapshot, _ = _kept(source, at)
    assert snapshot.evidence is not None and snapshot.evidence.canary_requests == 0
    start, end = source.asked[0]
    assert round((end - start) / STEP) == BASELINE_WINDOWS - 1


def test_grid_point() -> None:
    assert grid_point(1000.0, 30.0, 1060.2) == 1060.0
    assert grid_point(1000.0, 30.0, 1059.5) == 1060.0  # up to a second early
    assert grid_point(1000.0, 30.0, 1058.5) is None  # the previous point: 28.5 s late
    assert grid_point(1000.0, 30.0, 1066.0) is None  # more than a sixth of a window late
    assert grid_point(1000.0, 30.0, 1010.0) is None  # not after the kept windows
    assert grid_point(1000.0, 5.0, 1010.9) is None  # a sixth of a 5 s window: 0.83 s
    assert grid_point(1000.0, 5.0, 1010.5) == 1010.0


def test_a_failed_read_leaves_the_kept_life_as_it_was(templates: QueryTemplates) -> None:
    """A decision whose query fails changes nothing: the next one reads the kept life."""
    kept, full = _Served(templates), _Served(templates)
    at = START + 200.0
    for k in range(6):
        kept.now = full.now = at + k * STEP
        if k == 3:
            real = kept.query_range_blocking
            kept.query_range_blocking = _unavailable  # type: ignore[method-assign]
            with pytest.raises(PrometheusUnavailable):
                _kept(kept, at + k * STEP)
            kept.query_range_blocking = real  # type: ignore[method-assign]
            continue
        assert repr(_kept(kept, at + k * STEP)) == repr(_full_read(full, at + k * STEP)), k
    start, end = kept.asked[-1]
    assert end - start < 4 * STEP  # no rebuild: the windows since the last kept one only
    kept.close()
    full.close()


def _unavailable(promql: str, start: float, end: float, step: float) -> Any:
    raise PrometheusUnavailable("timeout", "no answer within 1s")


@pytest.mark.parametrize(("interval", "kept_reads"), [(30.0, 11), (60.0, 11), (45.0, 0)])
def test_an_interval_off_the_grid_reads_the_whole_life_each_time(
    templates: QueryTemplates, interval: float, kept_reads: int
) -> None:
    """A whole multiple of the window stays on the canary's grid; 45 s against a 30 s window
    is half a window off every other time, so every decision reads the whole life (as every
    decision did before lives were kept), with the full read's answer either way."""
    kept, full = _Served(templates, bad=False), _Served(templates, bad=False)
    reads = []
    for k in range(12):
        at = START + 50.0 + k * interval
        kept.now = full.now = at
        asked = len(kept.asked)
        assert repr(_kept(kept, at)) == repr(_full_read(full, at)), k
        start, end = kept.asked[asked]
        reads.append(end - start <= SETTLE_SECONDS + 0.5 * STEP + interval)
    assert sum(reads[1:]) == kept_reads
    kept.close()
    full.close()
