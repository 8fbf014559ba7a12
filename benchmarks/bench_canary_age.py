"""What one decision costs the service as its canary ages, with its life read whole or kept.

A full read (:meth:`PrometheusSource.readings_blocking`) takes the canary's whole life, window
by window, from one range query (``docs/queries.md``), and the shield's evidence is rebuilt
from those windows. Until the service kept each canary's life between decisions
(:mod:`decision_service.canary_life`) every decision did that; it still does it for a canary
it has not seen, or whose moment is off its grid. The cost of each stage is here, in one
process and one thread, on range answers shaped as the demo preset's (two status codes and
26 latency buckets per version, binomial noise) for canaries of growing age:

* ``json``: decoding the answer (orjson, as the service does);
* ``parse``: :func:`decision_service.prometheus_answers.parse_matrix`;
* ``readings``: the snapshot and the shield's windows (:func:`prometheus_source.readings_from`);
* ``evidence``: the shield's evidence over the life (:func:`shield.evidence_from`);
* ``decide``: :func:`decision_service.pipeline.decide` (features, policy, guardrails, shield).

The first row (a canary one window old, as ``bench_service.py`` measures it) is the baseline:
``vs 1 window`` is each age's full read against it. ``kept`` is a decision with the life kept
(:meth:`PrometheusSource.measure_blocking`: the answer of its two newest windows decoded and
parsed, the kept life copied and those windows added, the snapshot with the evidence's
summary, the decision), and ``kept/full`` that against the full read. Prometheus' own cost
(one ``increase()`` per window and series it evaluates) is not measured here: it too grows
with the windows a query asks for.

Usage: ``python benchmarks/bench_canary_age.py [--model PATH]``. Figures only.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.canary_life import Life  # noqa: E402
from decision_service.guardrails import GuardrailConfig  # noqa: E402
from decision_service.histogram import LATENCY_BUCKETS_SECONDS  # noqa: E402
from decision_service.pipeline import DecisionConfig, decide  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy  # noqa: E402
from decision_service.prometheus_answers import parse_matrix  # noqa: E402
from decision_service.prometheus_source import BASELINE_WINDOWS, readings_from  # noqa: E402
from decision_service.queries import QUERY_TAG_LABEL, load_templates  # noqa: E402
from decision_service.shield import ShieldConfig, evidence_from, new_evidence  # noqa: E402
from decision_service.tolerance import Tolerance  # noqa: E402

CANARY, STABLE = "7c9d5f6b8", "5f8b7c6d4"
STEP = 30.0
AT = 1_700_000_000.0
AGES = (1, 10, 20, 60, 120, 360)  # canary windows (360: the most a full read reads)
#: Windows a decision with a kept life reads again (60 s of 30 s windows: canary_life)
FRESH = 2


def range_answer(age: int, rng: np.random.Generator) -> bytes:
    """The range answer for a canary ``age`` windows old: 10 % of 2,000 requests per window,
    0.5 % errors, latencies around 40 ms; stable's BASELINE_WINDOWS before it."""
    points = age + BASELINE_WINDOWS
    times = [AT - (points - 1 - i) * STEP for i in range(points)]
    bounds = np.asarray(LATENCY_BUCKETS_SECONDS)
    series: list[dict[str, Any]] = []
    for version, share in ((CANARY, 0.1), (STABLE, 0.9)):
        requests = rng.poisson(2000 * share, points).astype(float)
        if version == CANARY:
            requests[:BASELINE_WINDOWS] = 0.0
        errors = rng.binomial(requests.astype(int), 0.005).astype(float)
        base = {"rollouts_pod_template_hash": version}
        for code, values in (("200", requests - errors), ("500", errors)):
            labels = base | {QUERY_TAG_LABEL: "window:requests", "code": code}
            series.append(
                {
                    "metric": labels,
                    "values": [[t, repr(float(v))] for t, v in zip(times, values, strict=True)],
                }
            )
        below = 1.0 / (1.0 + np.exp(-(bounds - 0.04) / 0.01))  # share of requests under each le
        for bound, fraction in zip(
            [*(repr(float(b)) for b in bounds), "+Inf"], [*below, 1.0], strict=True
        ):
            labels = base | {QUERY_TAG_LABEL: "window:latency_buckets", "le": bound}
            values = [repr(round(float(n * fraction), 3)) for n in requests]
            series.append({"metric": labels, "values": list(zip(times, values, strict=True))})
    start = AT - (age - 0.5) * STEP - 5.0  # its first window ends half a window after it
    body = {"status": "success", "data": {"resultType": "matrix", "result": series}}
    return orjson.dumps({**body, "start": start})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--seconds", type=float, default=1.0, help="per age and stage")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no model (train/export it, or pass --model)")
    policy = OnnxPolicy(args.model)
    config = DecisionConfig(
        slo_latency_ms=200.0,
        guardrails=GuardrailConfig(),
        tolerance=Tolerance(),
        shield=ShieldConfig(),
    )
    rng = np.random.default_rng(0)
    print(f"model {policy.info.label}; ms per decision, one thread (median of repeated runs)")
    print(
        f"{'age':>10} {'points':>7} {'json':>7} {'parse':>7} {'readings':>9} {'evidence':>9} "
        f"{'decide':>7} {'total':>7}  {'vs 1 window':>11} {'kept':>7} {'kept/full':>9}"
    )
    baseline = math.nan
    for age in AGES:
        raw = range_answer(age, rng)
        ms = stage_costs(raw, age, policy, config, args.seconds)
        kept = kept_cost(raw, policy, config, args.seconds)
        total = sum(ms.values())
        if age == AGES[0]:
            baseline = total
        print(
            f"{age:>3} ({age * STEP / 60:>4.0f}m) {age + BASELINE_WINDOWS:>7} "
            + " ".join(f"{ms[k]:>{w}.3f}" for k, w in zip(ms, (7, 7, 9, 9, 7), strict=True))
            + f" {total:>7.3f}  {total / baseline:>10.1f}x {kept:>7.3f} {kept / total:>9.2f}"
        )
    return 0


def stage_costs(
    raw: bytes, age: int, policy: OnnxPolicy, config: DecisionConfig, seconds: float
) -> dict[str, float]:
    """Median ms of each stage of one decision on the range answer ``raw``."""
    templates = load_templates("demo")
    tolerance, shield = config.tolerance, config.shield
    assert shield is not None
    start = orjson.loads(raw)["start"]
    result = orjson.loads(raw)["data"]["result"]
    matrix = parse_matrix(result, templates, CANARY, STABLE)
    snapshot, windows = readings_from(matrix, start, AT, STEP, 10.0)
    assert len(windows.life) == age, (age, len(windows.life))
    evidence = evidence_from(windows.baseline, windows.life, tolerance, shield)
    judged = replace(snapshot, evidence=evidence.summary())
    stages = {
        "json": lambda: orjson.loads(raw),
        "parse": lambda: parse_matrix(result, templates, CANARY, STABLE),
        "readings": lambda: readings_from(matrix, start, AT, STEP, 10.0),
        "evidence": lambda: evidence_from(windows.baseline, windows.life, tolerance, shield),
        "decide": lambda: decide(judged, 3, policy, config),
    }
    return {name: _median_ms(fn, seconds) for name, fn in stages.items()}


def kept_cost(raw: bytes, policy: OnnxPolicy, config: DecisionConfig, seconds: float) -> float:
    """Median ms of one decision with the canary's life kept (all but the newest
    ``FRESH`` windows of ``raw``): what :meth:`PrometheusSource.measure_blocking` processes."""
    templates = load_templates("demo")
    assert config.shield is not None
    answer = orjson.loads(raw)
    result = answer["data"]["result"]
    matrix = parse_matrix(result, templates, CANARY, STABLE)
    ends = sorted(matrix.times)
    life = Life.empty(
        answer["start"], STEP, ends[0] - STEP, new_evidence(config.tolerance, config.shield)
    )
    life.add(matrix, matrix.windows(), ends[:-FRESH])
    newest = [{"metric": s["metric"], "values": s["values"][-FRESH:]} for s in result]
    small = orjson.dumps({"status": "success", "data": {"resultType": "matrix", "result": newest}})

    def one() -> None:
        fresh = parse_matrix(orjson.loads(small)["data"]["result"], templates, CANARY, STABLE)
        current = life.copy()
        current.add(fresh, fresh.windows(), sorted(fresh.times))
        decide(current.snapshot(fresh, AT, 10.0), current.windows_at_share(), policy, config)

    return _median_ms(one, seconds)


def _median_ms(fn: Any, seconds: float) -> float:
    fn()
    gc.disable()
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    gc.enable()
    return float(np.median(timings)) * 1000


if __name__ == "__main__":
    sys.exit(main())
