"""A simulated episode as Prometheus history: the series the demo apps would have exposed.

:func:`write_openmetrics` writes episodes in the OpenMetrics text format with the demo apps'
metric names and labels (``demo_apps/app/server.py``), as Prometheus would have stored them
after scraping every pod each ``interval / SUB_BUCKETS`` seconds (5 s at 30 s):

* ``http_requests_total{code="200"|"500", version, track}``: counters, cumulative per scrape,
  from the simulator's per-scrape request and error counts;
* ``http_request_duration_seconds_bucket{le}`` (with ``_count`` and ``_sum``): the histogram,
  cumulative per scrape;
* on every series the labels Prometheus attaches in Kubernetes
  (``rollouts/prometheus-scrape-config.yaml``): ``job``, ``namespace``, ``pod``, ``instance``
  and ``rollouts_pod_template_hash``, which the ``demo`` preset selects on.

Both versions' series start at zero, as the demo apps declare their label values up front:
stable ``len(baseline)`` intervals before the canary (its history, the shield's baseline), the
canary when its first interval starts. The last sample of every interval is at the interval's
end, which is where the simulator measures and where a replay evaluates.

**Latency per scrape.** The simulator draws one latency histogram per interval (the per-scrape
counts are requests, errors and a mean latency), and drawing per-scrape histograms would change
every later random draw of the episode. So each interval's histogram is split over its scrapes
deterministically (:func:`split_buckets`): the interval's requests, sorted by bucket, are dealt
to the scrapes in a golden-ratio order, so every scrape gets a stratified share of the interval's
latencies and exactly its own request count. Counts at every interval's end are exact; within an
interval the latency of a weather change that started mid-interval is spread over the whole
interval. A query evaluated at interval ends (the replay parity) sees exactly the simulator's
histograms; one evaluated elsewhere sees a plausible split.

``promtool tsdb create-blocks-from openmetrics FILE DIR`` (:func:`create_blocks`) turns the file
into TSDB blocks that a Prometheus started on ``DIR`` serves.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from training.simulator import SUB_BUCKETS, Interval, VersionInterval

IntArray = npt.NDArray[np.int64]

#: The demo apps' ``version`` label per track (``demo_apps/app/server.py``).
VERSIONS: Final = {"stable": "1.0", "canary": "2.0"}
JOB: Final = "demo-app"
_LE: Final = (*(repr(b) for b in LATENCY_BUCKETS_SECONDS), "+Inf")
#: The golden ratio's fractional part: the order in which an interval's requests are dealt.
_GOLDEN: Final = (math.sqrt(5.0) - 1.0) / 2.0


class PromtoolError(RuntimeError):
    """promtool is missing or refused the file; the message says which and why."""


def pod_template_hash(*parts: object) -> str:
    """A stable, Kubernetes-looking pod-template hash (10 characters) for an episode's version."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).hexdigest()
    return digest[:10]


@dataclass(frozen=True)
class EpisodeHistory:
    """One episode's traffic, placed in time: what Prometheus would hold for it.

    ``start`` is when the canary's first interval began (unix seconds; its first, zero sample);
    interval ``k`` of ``intervals`` ends, and is measured, at ``start + (k + 1) × interval``.
    """

    namespace: str
    rollout: str
    canary_hash: str
    stable_hash: str
    start: float
    interval_seconds: float
    baseline: tuple[VersionInterval, ...]
    intervals: tuple[Interval, ...]

    @property
    def scrape_seconds(self) -> float:
        return self.interval_seconds / SUB_BUCKETS

    def measured_at(self, index: int) -> float:
        """When interval ``index`` ends: where the simulator measured it."""
        return self.start + (index + 1) * self.interval_seconds

    @property
    def first_sample(self) -> float:
        """Stable's first (zero) sample: ``len(baseline)`` intervals before the canary."""
        return self.start - len(self.baseline) * self.interval_seconds

    @property
    def last_sample(self) -> float:
        return self.measured_at(len(self.intervals) - 1) if self.intervals else self.start


def split_buckets(buckets: IntArray, scrape_requests: IntArray) -> IntArray:
    """An interval's latency histogram split over its scrapes: ``(scrapes, buckets)`` counts.

    Row ``j`` sums to ``scrape_requests[j]``, the rows sum to ``buckets``. Deterministic (no
    random draw): the requests, in bucket order, are dealt in the order of ``frac(i × φ)``, so
    each scrape's consecutive share of that order is spread evenly over the latencies.
    """
    buckets = np.asarray(buckets, dtype=np.int64)
    scrape_requests = np.asarray(scrape_requests, dtype=np.int64)
    total = int(buckets.sum())
    if total != int(scrape_requests.sum()):
        raise ValueError(f"{total} requests in the histogram, {scrape_requests.sum()} scraped")
    width = len(buckets)
    if total == 0:
        return np.zeros((len(scrape_requests), width), dtype=np.int64)
    labels = np.repeat(np.arange(width), buckets)
    order = np.argsort((np.arange(total) * _GOLDEN) % 1.0, kind="stable")
    scrape_of = np.repeat(np.arange(len(scrape_requests)), scrape_requests)
    counts = np.bincount(scrape_of * width + labels[order], minlength=len(scrape_requests) * width)
    return counts.reshape(len(scrape_requests), width).astype(np.int64)


@dataclass(frozen=True)
class _Series:
    """One version's cumulative values at each of its sample times."""

    labels: str  # the labels every series of this version carries, rendered
    times: list[float]
    ok: list[int]
    errors: list[int]
    buckets: IntArray  # (times, buckets), cumulative over buckets (le) and over time
    latency_sum: list[float]


def _series(
    history: EpisodeHistory, track: str, intervals: Sequence[VersionInterval], first: float
) -> _Series:
    scrapes = len(intervals) * SUB_BUCKETS
    requests = np.zeros(scrapes + 1, dtype=np.int64)
    errors = np.zeros(scrapes + 1, dtype=np.int64)
    latency = np.zeros(scrapes + 1)
    per_bucket = np.zeros((scrapes + 1, len(_LE)), dtype=np.int64)
    for i, version in enumerate(intervals):
        rows = slice(1 + i * SUB_BUCKETS, 1 + (i + 1) * SUB_BUCKETS)
        requests[rows] = version.scrape_requests
        errors[rows] = version.scrape_errors
        per_bucket[rows] = split_buckets(version.buckets, version.scrape_requests)
        mean = np.nan_to_num(np.asarray(version.scrape_mean_latency_ms, dtype=float))
        latency[rows] = mean * version.scrape_requests / 1000.0
    requests, errors = np.cumsum(requests), np.cumsum(errors)
    cumulative = np.cumsum(np.cumsum(per_bucket, axis=0), axis=1)
    step = history.scrape_seconds
    version_hash = history.canary_hash if track == "canary" else history.stable_hash
    pod = f"{history.rollout}-{version_hash}-{track[:1]}0000"
    labels = (
        f'job="{JOB}",namespace="{history.namespace}",pod="{pod}",instance="{pod}:8080",'
        f'rollouts_pod_template_hash="{version_hash}",version="{VERSIONS[track]}",track="{track}"'
    )
    return _Series(
        labels=labels,
        times=[first + k * step for k in range(scrapes + 1)],
        ok=(requests - errors).tolist(),
        errors=errors.tolist(),
        buckets=cumulative,
        latency_sum=np.cumsum(latency).tolist(),
    )


def _versions(history: EpisodeHistory) -> list[_Series]:
    stable = [*history.baseline, *(interval.stable for interval in history.intervals)]
    canary = [interval.canary for interval in history.intervals]
    return [
        _series(history, "stable", stable, history.first_sample),
        _series(history, "canary", canary, history.start),
    ]


def _ts(t: float) -> str:
    return f"{t:.3f}"


def write_openmetrics(histories: Iterable[EpisodeHistory], out: TextIO) -> int:
    """Write the episodes' series to ``out`` (one OpenMetrics exposition, ``# EOF`` at the end);
    returns the number of samples. Metric families are not interleaved, and each histogram's
    points are grouped by timestamp, as the format requires."""
    all_series = [series for history in histories for series in _versions(history)]
    samples = 0
    out.write("# HELP http_requests Requests served by the demo app, by HTTP status code.\n")
    out.write("# TYPE http_requests counter\n")
    for series in all_series:
        for code, values in (("200", series.ok), ("500", series.errors)):
            prefix = f'http_requests_total{{code="{code}",{series.labels}}} '
            out.writelines(
                f"{prefix}{v} {_ts(t)}\n" for t, v in zip(series.times, values, strict=True)
            )
            samples += len(values)
    out.write("# HELP http_request_duration_seconds Time spent serving a request, seconds.\n")
    out.write("# TYPE http_request_duration_seconds histogram\n")
    for series in all_series:
        bucket_prefixes = [
            f'http_request_duration_seconds_bucket{{le="{le}",{series.labels}}} ' for le in _LE
        ]
        count_prefix = f"http_request_duration_seconds_count{{{series.labels}}} "
        sum_prefix = f"http_request_duration_seconds_sum{{{series.labels}}} "
        rows = series.buckets.tolist()
        for t, row, total in zip(series.times, rows, series.latency_sum, strict=True):
            stamp = _ts(t)
            out.writelines(
                f"{prefix}{v} {stamp}\n" for prefix, v in zip(bucket_prefixes, row, strict=True)
            )
            out.write(f"{count_prefix}{row[-1]} {stamp}\n")
            out.write(f"{sum_prefix}{total!r} {stamp}\n")
        samples += len(rows) * (len(_LE) + 2)
    out.write("# EOF\n")
    return samples


def find_promtool() -> str | None:
    """``$PROMTOOL_BIN``, else ``promtool`` on the PATH, else ``promtool`` next to the
    Prometheus binary (``$PROMETHEUS_BIN``), else ``None``."""
    found = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool")
    if found:
        return found
    prometheus = os.environ.get("PROMETHEUS_BIN")
    if prometheus:
        sibling = Path(prometheus).with_name("promtool")
        if sibling.is_file():
            return str(sibling)
    return None


def create_blocks(
    openmetrics: Path, data_dir: Path, *, promtool: str | None = None, timeout: float = 600.0
) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` into ``data_dir`` (raises PromtoolError)."""
    binary = promtool or find_promtool()
    if binary is None:
        raise PromtoolError(
            "promtool is not installed: Debian's and Ubuntu's `prometheus` package ships it, "
            "as does the release tarball from https://prometheus.io/download/ (or set PROMTOOL_BIN)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PromtoolError(f"promtool took more than {timeout:g} s on {openmetrics}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PromtoolError(f"promtool refused {openmetrics}: " + " | ".join(tail))
