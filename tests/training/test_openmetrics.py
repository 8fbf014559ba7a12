"""An episode's history as OpenMetrics: valid, the demo apps' names and labels, cumulative per
scrape, the simulator's counts at every interval's end, and loadable by promtool."""

from __future__ import annotations

import io
import itertools
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from scenarios import resolve_scenario
from training.env import BASELINE_WINDOWS
from training.openmetrics import (
    PromtoolError,
    create_blocks,
    find_promtool,
    split_buckets,
    write_openmetrics,
)
from training.replay_parity import (
    CANARY_START,
    LEAD_INTERVALS,
    LinearPolicy,
    RecordedEpisode,
    record_episode,
    service_config,
)
from training.simulator import SUB_BUCKETS, shield_window


@pytest.fixture(scope="module")
def episode() -> RecordedEpisode:
    return record_episode(resolve_scenario("flaky"), 3, LinearPolicy.stand_in(), service_config())


def test_the_split_over_scrapes_keeps_every_count_and_draws_nothing() -> None:
    rng = np.random.default_rng(5)
    buckets = rng.multinomial(997, np.full(26, 1 / 26))
    scrapes = rng.multinomial(997, np.full(SUB_BUCKETS, 1 / SUB_BUCKETS))
    state = rng.bit_generator.state
    split = split_buckets(buckets, scrapes)
    assert rng.bit_generator.state == state
    assert split.shape == (SUB_BUCKETS, 26)
    assert (split.sum(axis=0) == buckets).all()
    assert (split.sum(axis=1) == scrapes).all()
    assert (split == split_buckets(buckets, scrapes)).all()  # deterministic


def test_every_scrape_gets_a_stratified_share_of_the_latencies() -> None:
    """Dealt in golden-ratio order, each scrape's latencies spread like the interval's (not
    the fastest requests to the first scrape)."""
    buckets = np.zeros(26, dtype=np.int64)
    buckets[[2, 10, 20]] = (600, 300, 100)
    scrapes = np.asarray([167, 167, 167, 167, 166, 166])
    split = split_buckets(buckets, scrapes)
    for row, n in zip(split, scrapes, strict=True):
        assert row[[2, 10, 20]] / n == pytest.approx([0.6, 0.3, 0.1], abs=0.02)


def test_a_mismatched_split_is_refused() -> None:
    with pytest.raises(ValueError, match="requests"):
        split_buckets(np.asarray([1, 2]), np.asarray([1, 1]))


_LINE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="[^"]*",?)*)\} (\S+) (\S+)$')


def _parse(episode: RecordedEpisode) -> dict[tuple[str, tuple[tuple[str, str], ...]], list]:
    """The samples by series. (prometheus_client's OpenMetrics parser reads one scrape, not a
    history with several points per histogram: promtool, the real reader, is tested below.)"""
    out = io.StringIO()
    samples = write_openmetrics([episode.history], out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "# EOF"
    assert [line for line in lines if line.startswith("# TYPE")] == [
        "# TYPE http_requests counter",
        "# TYPE http_request_duration_seconds histogram",
    ]
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list] = defaultdict(list)
    for line in lines:
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, line
        labels = tuple(sorted(re.findall(r'([a-z_]+)="([^"]*)"', match[2])))
        series[match[1], labels].append((float(match[4]), float(match[3])))
    assert sum(len(points) for points in series.values()) == samples
    return series


def test_the_history_has_the_demo_apps_names_and_labels_cumulative_per_scrape(
    episode: RecordedEpisode,
) -> None:
    series = _parse(episode)
    names = {name for name, _ in series}
    assert names == {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "http_request_duration_seconds_sum",
    }
    history = episode.history
    for (name, labels), points in series.items():
        label = dict(labels)
        assert label["rollouts_pod_template_hash"] in {history.canary_hash, history.stable_hash}
        assert {"job", "namespace", "pod", "instance", "version", "track"} <= set(label)
        if name == "http_requests_total":
            assert label["code"] in {"200", "500"}
        if name == "http_request_duration_seconds_bucket":
            assert label["le"] in {*(repr(b) for b in LATENCY_BUCKETS_SECONDS), "+Inf"}
        times = [t for t, _ in points]
        values = [v for _, v in points]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert values[0] == 0.0  # declared at 0, as the demo apps do
        assert all(b >= a for a, b in itertools.pairwise(values))  # counters
        step = history.interval_seconds / SUB_BUCKETS
        assert all(b - a == pytest.approx(step) for a, b in itertools.pairwise(times))
        first = history.start if label["track"] == "canary" else history.first_sample
        assert times[0] == first and times[-1] == history.last_sample


def test_every_interval_end_holds_the_simulators_counts(episode: RecordedEpisode) -> None:
    series = _parse(episode)
    history = episode.history

    def at(name: str, track: str, t: float, **labels: str) -> float:
        total = 0.0
        for (n, key), points in series.items():
            label = dict(key)
            if n == name and label["track"] == track and labels.items() <= label.items():
                total += dict(points)[t]
        return total

    assert len(history.baseline) == LEAD_INTERVALS + BASELINE_WINDOWS
    canary_requests = canary_errors = 0
    for k, interval in enumerate(history.intervals):
        end, begin = history.measured_at(k), history.measured_at(k - 1)
        for track, version in (("canary", interval.canary), ("stable", interval.stable)):
            requests = at("http_requests_total", track, end) - at(
                "http_requests_total", track, begin
            )
            errors = at("http_requests_total", track, end, code="500") - at(
                "http_requests_total", track, begin, code="500"
            )
            assert (requests, errors) == (version.requests, version.errors)
            inf = at("http_request_duration_seconds_bucket", track, end, le="+Inf")
            assert inf == at("http_request_duration_seconds_count", track, end)
        canary_requests += interval.canary.requests
        canary_errors += interval.canary.errors
    last = history.last_sample
    assert at("http_requests_total", "canary", last) == canary_requests
    assert at("http_requests_total", "canary", last, code="500") == canary_errors
    # the histogram at an interval's end: the interval's buckets exactly
    k = len(history.intervals) - 1
    window = []
    for le in (*(repr(b) for b in LATENCY_BUCKETS_SECONDS), "+Inf"):
        end = at("http_request_duration_seconds_bucket", "canary", last, le=le)
        previous = history.measured_at(k - 1)
        begin = at("http_request_duration_seconds_bucket", "canary", previous, le=le)
        window.append(end - begin)
    cumulative = np.cumsum(history.intervals[k].canary.buckets)
    assert window == cumulative.tolist()


def test_the_environment_keeps_what_it_drew(episode: RecordedEpisode) -> None:
    """The baseline and every interval are kept (for the history) and are what the shield
    saw: recording them changed nothing."""
    env_windows = [shield_window(v) for v in episode.history.baseline[LEAD_INTERVALS:]]
    assert len(env_windows) == BASELINE_WINDOWS
    assert [d.index for d in episode.decisions] == list(range(len(episode.history.intervals)))
    assert episode.history.start == CANARY_START
    assert math.isclose(
        episode.history.measured_at(0) - episode.history.start, episode.history.interval_seconds
    )


def test_promtool_is_found_or_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMTOOL_BIN", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_BIN", raising=False)
    assert find_promtool() is None
    with pytest.raises(PromtoolError, match=r"prometheus\.io/download"):
        create_blocks(tmp_path / "x.om", tmp_path / "data")


def test_promtool_refusing_a_file_says_why(tmp_path: Path) -> None:
    if find_promtool() is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    bad = tmp_path / "bad.om"
    bad.write_text("this is not openmetrics\n")
    with pytest.raises(PromtoolError, match="refused"):
        create_blocks(bad, tmp_path / "data")
