"""A decision on an old canary against a real Prometheus: its life read whole or kept.

``bench_canary_age.py`` measures the service's side in one process. This one measures both
sides on a real Prometheus: a canary's history (10 % of 60 req/s, 3 hours and a half of 30 s
windows after stable's 10, as the demo apps would have left it: ``training/openmetrics.py``)
is loaded with promtool into a Prometheus served from it, and at canary ages of 10 minutes,
1 hour and 3 hours one decision's measuring is repeated:

* ``full``: what every decision did until round 6 and what the first decision on a canary still
  does (:meth:`PrometheusSource.readings_blocking`, then the shield's evidence over the life);
* ``kept``: a decision with the canary's life kept (:meth:`PrometheusSource.measure_blocking`
  at the same moment, after one decision has built the life: the query of the windows of the
  last 60 s, added to a copy of the life).

For each: the wall time per decision's measuring in this process (the HTTP query included) and
Prometheus' CPU per decision (``/proc``, user + system). Everything runs on the same cores,
one decision at a time.

Usage: ``python benchmarks/bench_aged_canary.py [--decisions 200]`` (``make bench``). Figures
only; needs ``prometheus`` and ``promtool`` (``make prometheus``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.prometheus_source import PrometheusSource, prometheus_client  # noqa: E402
from decision_service.queries import Target, load_templates  # noqa: E402
from decision_service.shield import (  # noqa: E402
    ShieldConfig,
    evidence_from,
    windows_at_current_share,
)
from decision_service.tolerance import Tolerance  # noqa: E402
from demo_apps.local.prometheus import PrometheusServer, find_prometheus  # noqa: E402
from scenarios.sampling import VersionBehaviour  # noqa: E402
from training.openmetrics import EpisodeHistory, create_blocks, write_openmetrics  # noqa: E402
from training.simulator import Interval, sample_version  # noqa: E402

STEP = 30.0
START = 1_764_000_000.0  # the canary's first interval begins (unix seconds, a past day)
AGES = (20, 120, 360)  # windows of the canary's life at the decision
WINDOWS = 420  # of the canary's history: 3 h 30 min
RPS, SHARE = 60.0, 0.1


def history(rng: np.random.Generator) -> EpisodeHistory:
    """A healthy canary at 10 % beside stable, and stable's 10 windows before it."""
    stable = VersionBehaviour(error_rate=0.005, latency_p50_ms=40.0, latency_spread=0.5)
    canary = VersionBehaviour(error_rate=0.005, latency_p50_ms=41.0, latency_spread=0.5)
    total = int(RPS * STEP)
    baseline = tuple(sample_version(total, stable, rng) for _ in range(10))
    intervals = []
    for k in range(WINDOWS):
        n = int(rng.binomial(total, SHARE))
        intervals.append(
            Interval(
                index=k,
                weight=100 * SHARE,
                canary=sample_version(n, canary, rng),
                stable=sample_version(total - n, stable, rng),
                expected_requests=float(total),
            )
        )
    return EpisodeHistory(
        "shop", "checkout", "c0ffee1234", "5ab1e5678a", START, STEP, baseline, tuple(intervals)
    )


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], object], decisions: int, pid: int | None) -> tuple[float, float]:
    """(ms of wall time, ms of Prometheus CPU) per call, over ``decisions`` calls."""
    fn()
    cpu, started = cpu_seconds(pid), time.perf_counter()
    for _ in range(decisions):
        fn()
    wall = (time.perf_counter() - started) / decisions
    return wall * 1000, (cpu_seconds(pid) - cpu) / decisions * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200, help="per age and read")
    args = parser.parse_args()
    binary = find_prometheus()
    if binary is None:
        raise SystemExit("no prometheus binary: make prometheus, or set PROMETHEUS_BIN")
    episode = history(np.random.default_rng(0))
    target = Target("shop", "checkout", episode.canary_hash, episode.stable_hash)
    tolerance, shield = Tolerance(), ShieldConfig()
    with tempfile.TemporaryDirectory(prefix="bench-aged-") as folder:
        openmetrics = Path(folder) / "history.om"
        with openmetrics.open("w", encoding="utf-8") as out:
            samples = write_openmetrics([episode], out)
        create_blocks(openmetrics, Path(folder) / "data")
        with PrometheusServer(binary, [], data_dir=Path(folder) / "data", retention="10y") as prom:
            source = PrometheusSource(
                prometheus_client(prom.url, 60.0, 1),
                load_templates("demo"),
                window="30s",
                window_seconds=STEP,
                timeout_seconds=60.0,
                threads=1,
            )
            print(
                f"{samples:,} samples, Prometheus {prom.url}; per decision, one at a time, "
                f"{args.decisions} each"
            )
            print(f"{'age':>10} {'full ms':>8} {'kept ms':>8} {'ratio':>6}   "
                  f"{'Prometheus CPU full':>19} {'kept':>6} {'ratio':>6}")  # fmt: skip
            try:
                for age in AGES:
                    at = episode.measured_at(age - 1)

                    def full(at: float = at) -> object:
                        snapshot, windows = source.readings_blocking(target, 10.0, at)
                        evidence = evidence_from(windows.baseline, windows.life, tolerance, shield)
                        return (
                            replace(snapshot, evidence=evidence.summary()),
                            windows_at_current_share(windows.life),
                        )

                    def kept(at: float = at) -> object:
                        return source.measure_blocking(target, 10.0, tolerance, shield, at)

                    assert repr(full()) == repr(kept())  # the same answer either way
                    full_ms, full_cpu = timed(full, args.decisions, prom.pid)
                    kept_ms, kept_cpu = timed(kept, args.decisions, prom.pid)
                    print(
                        f"{age:>3} ({age * STEP / 60:>4.0f}m) {full_ms:>8.2f} {kept_ms:>8.2f} "
                        f"{kept_ms / full_ms:>6.2f}   {full_cpu:>19.2f} {kept_cpu:>6.2f} "
                        f"{kept_cpu / full_cpu if full_cpu else float('nan'):>6.2f}"
                    )
            finally:
                source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
