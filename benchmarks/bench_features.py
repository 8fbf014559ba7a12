"""Feature building + ONNX inference, per decision, against a bare onnxruntime baseline.

All in one process, on the same observations:

* ``baseline``: ``InferenceSession.run`` on a ready float32 ``(1, N_FEATURES)`` array (the floor);
* ``features``: :func:`decision_service.features.build_observation` alone;
* ``features + policy``: ``build_observation`` then :meth:`OnnxPolicy.decide`, without the
  shield's verdict (its features read "no evidence");
* ``features + shield + policy``: :func:`decision_service.pipeline.observe` (the shield's
  verdict on the snapshot's evidence, then the features with it) then
  :meth:`OnnxPolicy.decide`: what the service computes for a decision once the metrics are
  read (the target: p99 ≤ 0.05 ms);
* ``pipeline.decide (whole)``: the whole pure decision as the service makes it (the shield's
  verdict, features, policy, guardrails, the shield's gate, the step-count check, the reason).

* ``machine``: how often this machine stops a running thread, and for how long (the gaps a tight
  loop of ``perf_counter`` reads sees above 5 µs: timer ticks, interrupts, a virtual machine's
  exits). A call of ``d`` µs includes such a stop in about ``d × rate / 10⁶`` of calls; once
  that share nears 1 %, the stops, not the code, set the p99.

Every snapshot carries the shield's evidence: 10 windows of stable's baseline and 1–40 windows
of the canary's life with stable's beside them (drawn by the simulator's
:func:`~training.simulator.sample_version`), summarised once, as the service's kept life hands
it to a decision.

Usage: ``python benchmarks/bench_features.py [--model PATH] [--n 20000]``. Figures only.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.features import build_observation  # noqa: E402
from decision_service.guardrails import GuardrailConfig  # noqa: E402
from decision_service.pipeline import DecisionConfig, decide, observe  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy  # noqa: E402
from decision_service.shield import ShieldConfig, VersionWindow, evidence_from  # noqa: E402
from decision_service.snapshot import MetricsSnapshot, VersionMetrics  # noqa: E402
from decision_service.tolerance import DEFAULT_TOLERANCE  # noqa: E402
from scenarios import VersionBehaviour  # noqa: E402
from training.simulator import sample_version, shield_window  # noqa: E402


def _window(
    rng: np.random.Generator, requests: int, error_rate: float, p50_ms: float
) -> VersionWindow:
    """One version's window counts, as the simulator draws them."""
    return shield_window(sample_version(requests, VersionBehaviour(error_rate, p50_ms, 0.5), rng))


def snapshots(n: int, seed: int = 0) -> list[MetricsSnapshot]:
    rng = np.random.default_rng(seed)
    shield = ShieldConfig()
    out = []
    for _ in range(n):
        stable_rate, canary_rate = rng.uniform(0, 0.03), rng.uniform(0, 0.1)
        p50 = rng.uniform(20, 200)
        canary_p50 = p50 * rng.uniform(0.9, 1.5)
        n_window = int(rng.integers(50, 2000))
        weight = float(rng.choice([10, 25, 50, 75]))
        baseline = [_window(rng, n_window * 4, stable_rate, p50) for _ in range(10)]
        life = [
            (
                _window(rng, n_window, canary_rate, canary_p50),
                _window(rng, n_window * 4, stable_rate, p50),
            )
            for _ in range(int(rng.integers(1, 41)))
        ]
        evidence = evidence_from(baseline, life, DEFAULT_TOLERANCE, shield).summary()

        def version(requests: float, rate: float, latency: float) -> VersionMetrics:
            return VersionMetrics(requests, float(round(requests * rate)), latency, latency * 2.1)

        out.append(
            MetricsSnapshot(
                step_weight=weight,
                canary=version(n_window, canary_rate, canary_p50),
                stable=version(n_window * 4, stable_rate, p50),
                canary_cumulative=version(n_window * len(life), canary_rate, p50 * 1.1),
                stable_cumulative=version(n_window * 4 * len(life), stable_rate, p50),
                evidence=evidence,
            )
        )
    return out


def timed(
    label: str, fn: Callable[[int], object], n: int, stops: float = 0.0
) -> tuple[float, float]:
    for i in range(min(n, 2000)):  # warm-up
        fn(i)
    gc.disable()
    timings = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        timings[i] = time.perf_counter() - started
    gc.enable()
    p50, p99 = np.percentile(timings * 1e6, [50, 99])
    hit = p50 * 1e-6 * stops
    print(
        f"{label:<26} p50 {p50:7.1f} µs   p99 {p99:7.1f} µs   ({p99 / 1000:.4f} ms)"
        f"   a stop in ~{100 * hit:.1f} % of calls"
    )
    return float(p50), float(p99)


def machine_stops(seconds: float = 1.0) -> tuple[float, float]:
    """Stops per second a running thread sees here, and their median length (µs)."""
    clock = time.perf_counter
    gaps: list[float] = []
    gc.disable()
    started = previous = clock()
    while previous - started < seconds:
        now = clock()
        if now - previous > 5e-6:
            gaps.append(now - previous)
        previous = now
    gc.enable()
    rate = len(gaps) / (previous - started)
    median = float(np.median(gaps)) * 1e6 if gaps else 0.0
    print(
        f"machine: {rate:,.0f} stops/s of a running thread, median {median:.0f} µs "
        f"(gaps > 5 µs in a tight loop)"
    )
    return rate, median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no model (train/export it, or pass --model)")

    policy = OnnxPolicy(args.model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    bare = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    snaps = snapshots(512)
    counts = np.random.default_rng(1).integers(0, 10, len(snaps)).tolist()
    ready = [
        build_observation(s, c, 200.0).reshape(1, -1) for s, c in zip(snaps, counts, strict=True)
    ]
    # the service's defaults: guardrails, the shield, the template's count of 10
    config = DecisionConfig(
        slo_latency_ms=200.0, guardrails=GuardrailConfig(), shield=ShieldConfig(), count=10
    )
    k = len(snaps)

    print(f"model {policy.info.label}, {args.n} calls each, one thread")
    stops, _ = machine_stops()
    timed(
        "baseline (bare run)",
        lambda i: bare.run(["q_values"], {"observation": ready[i % k]}),
        args.n,
        stops,
    )
    timed(
        "features",
        lambda i: build_observation(snaps[i % k], counts[i % k], 200.0),
        args.n,
        stops,
    )
    timed(
        "features + policy",
        lambda i: policy.decide(build_observation(snaps[i % k], counts[i % k], 200.0)),
        args.n,
        stops,
    )
    timed(
        "features + shield + policy",
        lambda i: policy.decide(observe(snaps[i % k], counts[i % k], config)[0]),
        args.n,
        stops,
    )
    timed(
        "pipeline.decide (whole)",
        lambda i: decide(snaps[i % k], counts[i % k], policy, config),
        args.n,
        stops,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
