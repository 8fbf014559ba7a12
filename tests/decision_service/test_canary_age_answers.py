"""The canary-age benchmark's range answers (``benchmarks/bench_canary_age.py``) read as a live
one does: the service's parser and readings find the canary's windows and its baseline, and its
life is the sum of its windows. (Its figures are the benchmark's; nothing here is timed.)"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import orjson
import pytest

from decision_service.prometheus_answers import parse_matrix
from decision_service.prometheus_source import BASELINE_WINDOWS, readings_from
from decision_service.queries import load_templates
from tests.conftest import REPO_ROOT


def _bench() -> object:
    spec = importlib.util.spec_from_file_location(
        "bench_canary_age", REPO_ROOT / "benchmarks" / "bench_canary_age.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_canary_age", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("age", [1, 7, 60])
def test_each_age_reads_as_that_many_windows_of_life(age: int) -> None:
    bench = _bench()
    raw = bench.range_answer(age, np.random.default_rng(age))  # type: ignore[attr-defined]
    answer = orjson.loads(raw)
    matrix = parse_matrix(
        answer["data"]["result"],
        load_templates("demo"),
        bench.CANARY,  # type: ignore[attr-defined]
        bench.STABLE,  # type: ignore[attr-defined]
    )
    snapshot, windows = readings_from(
        matrix,
        answer["start"],
        bench.AT,  # type: ignore[attr-defined]
        bench.STEP,  # type: ignore[attr-defined]
        10.0,
    )
    assert len(windows.life) == age
    assert len(windows.baseline) == BASELINE_WINDOWS
    assert snapshot.canary_cumulative.requests == sum(c.requests for c, _ in windows.life)
    assert snapshot.stable_cumulative.requests == sum(s.requests for _, s in windows.life)
    assert snapshot.canary.requests == windows.life[-1][0].requests
    assert snapshot.canary_cumulative.latency_p95_ms is not None
