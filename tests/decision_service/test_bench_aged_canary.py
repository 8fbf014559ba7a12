"""``benchmarks/bench_aged_canary.py`` runs end to end on a real Prometheus: its history loads,
every age reads the same answer whole and kept (the script asserts it), and it prints a row per
age. (Its figures are the benchmark's; nothing here is timed.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, prometheus_binary, promtool_binary

pytestmark = pytest.mark.prometheus


def test_the_aged_canary_benchmark_runs() -> None:
    prometheus, promtool = prometheus_binary(), promtool_binary()
    env = os.environ | {"PROMETHEUS_BIN": prometheus, "PROMTOOL_BIN": promtool}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_aged_canary.py"),
            "--decisions",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()]
    ages = [row[0] for row in rows[2:]]
    assert ages == ["20", "120", "360"], done.stdout
    assert all(len(row) == 9 for row in rows[2:]), done.stdout
