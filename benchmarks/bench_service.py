"""End-to-end benchmark of the decision service against a real local Prometheus.

Starts a synthetic app (canary and stable series in the demo apps' names, fed continuously),
a real ``prometheus`` scraping it, and the service as ``python -m decision_service`` in a
subprocess (uvicorn), then prints:

* end-to-end ``POST /v1/decide`` latency p50/p99 over sequential requests (one connection);
* decisions/s and latency p50/p99 at concurrency 16 (16 keep-alive connections);
* ONNX inference p50/p99 (the same model, in this process);
* the service's resident memory (RSS now and peak).

Prometheus, the synthetic app and the service process come from :mod:`demo_apps.local` (the
launcher the demo stack and the tests use), the traffic, the service's start and the client from
``benchmarks/decide_load.py`` (shared with ``soak.py``); nothing here imports test code.

Usage: ``python benchmarks/bench_service.py [--requests 3000] [--model PATH]``
(``make bench``). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decide_load import (  # noqa: E402
    DecideClient,
    add_stack_arguments,
    decide_body,
    service_stack,
)

from decision_service.features import N_FEATURES  # noqa: E402
from decision_service.policy import OnnxPolicy  # noqa: E402
from demo_apps.local.processes import memory_kib  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(port: int, body: bytes, total: int, concurrency: int) -> dict[str, object]:
    clients = [DecideClient(port, body) for _ in range(concurrency)]
    for client in clients:
        await client.connect()
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    remaining = total

    async def worker(client: DecideClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, payload = await client.decide()
            latencies.append(time.perf_counter() - started)
            key = str(status)
            if status == 200:
                answer = json.loads(payload)
                key = f"{answer['decision']}/{answer['guardrail']}"
            outcomes[key] = outcomes.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "outcomes": outcomes,
    }


def onnx_inference(model: Path, n: int = 20000) -> tuple[float, float]:
    policy = OnnxPolicy(model)
    rng = np.random.default_rng(0)
    observations = rng.uniform(0, 1, size=(256, N_FEATURES)).astype(np.float32)
    timings = []
    for i in range(n):
        obs = observations[i % 256]
        started = time.perf_counter()
        policy.decide(obs)
        timings.append((time.perf_counter() - started) * 1e6)
    return percentile(timings, 50), percentile(timings, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    add_stack_arguments(parser)
    args = parser.parse_args()

    with service_stack(args, log_prefix="bench-service-", log_level="INFO") as stack:
        port, pids = stack.port, {"service": stack.pid, "prometheus": stack.prometheus.pid}
        pids["benchmark"] = os.getpid()
        print(f"service ready (pid {stack.pid}); canary ageing {args.warmup_seconds:.0f}s")
        time.sleep(args.warmup_seconds)
        body = decide_body()
        asyncio.run(run_load(port, body, 200, 4))  # warm-up: connections, caches
        sequential = asyncio.run(run_load(port, body, args.requests, 1))
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        concurrent = asyncio.run(run_load(port, body, args.requests, args.concurrency))
        cpu_ms = {
            name: (cpu_seconds(pid) - cpu_before[name]) * 1000 / args.requests
            for name, pid in pids.items()
        }
        memory = memory_kib(stack.pid)
        rss, peak = memory["VmRSS"], memory["VmHWM"]
    onnx_p50, onnx_p99 = onnx_inference(args.model)

    print(f"model: {args.model}")
    print(f"Prometheus scrape interval {args.scrape_interval}, ANALYSIS_WINDOW {args.window}")
    print(
        f"end-to-end, sequential:    {sequential['requests']} requests, "
        f"p50 {sequential['p50_ms']:.2f} ms, p99 {sequential['p99_ms']:.2f} ms, "
        f"{sequential['per_second']:.0f} decisions/s"
    )
    print(
        f"end-to-end, concurrency {args.concurrency}: {concurrent['requests']} requests, "
        f"{concurrent['per_second']:.0f} decisions/s, "
        f"p50 {concurrent['p50_ms']:.2f} ms, p99 {concurrent['p99_ms']:.2f} ms"
    )
    print(f"answers: sequential {sequential['outcomes']}, concurrent {concurrent['outcomes']}")
    print(f"ONNX inference (in-process): p50 {onnx_p50:.1f} µs, p99 {onnx_p99:.1f} µs")
    print(
        "CPU per decision at concurrency: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in cpu_ms.items())
    )
    print(f"service RSS: {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB)")
    print(f"service log: {stack.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
