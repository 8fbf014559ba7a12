"""The decision's range query over HTTP: this service's plain-HTTP client against urllib3.

A real Prometheus scrapes the synthetic app (the traffic of ``decide_load.traffic``: a canary,
a stable version and 20 other workloads); one process then sends the decision's own range query
(the ``demo`` preset's, one 30 s window) in alternating rounds through:

* ``urllib3``: the session's urllib3 pool, as an ``https://`` Prometheus is still queried
  (the same pool, headers and form body; orjson parses the answer);
* ``plain``: :class:`decision_service.prometheus_http.PlainHttp`, as an ``http://`` one is;
* ``query_range_blocking``: the whole call the service makes (``http://``: the plain client),
  encoding the query and checking the answer included.

It prints the CPU time of the calling thread per query (``time.thread_time``: the service's
cost, waiting for Prometheus left out), Prometheus's CPU per query and the wall time, and
the ratio urllib3 / plain. Figures only; nothing is asserted.

Usage: ``python benchmarks/bench_prometheus_http.py [--queries 2000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import orjson
import urllib3

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench_service import cpu_seconds  # noqa: E402
from decide_load import CANARY, STABLE, traffic  # noqa: E402

from decision_service.app import load_templates  # noqa: E402
from decision_service.prometheus_http import PlainHttp  # noqa: E402
from decision_service.prometheus_source import PrometheusSource, prometheus_client  # noqa: E402
from decision_service.queries import Target, render  # noqa: E402
from demo_apps.local.synthetic import SyntheticApp, synthetic_prometheus  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_BIN", "prometheus"))
    parser.add_argument("--queries", type=int, default=2000, help="queries per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-seconds", type=float, default=35.0, help="series age first")
    args = parser.parse_args()

    with (
        SyntheticApp() as app,
        synthetic_prometheus(args.prometheus, app, scrape_interval="5s") as prometheus,
        traffic(app),
    ):
        time.sleep(args.warmup_seconds)
        templates = load_templates("demo", None)
        client = prometheus_client(prometheus.url, 5.0, 1)
        source = PrometheusSource(
            client, templates, window="30s", window_seconds=30.0, timeout_seconds=5.0, threads=1
        )
        promql = render(templates, Target("shop", "checkout", CANARY, STABLE, None)).spans(
            {"window": "30s"}
        )
        end = time.time()
        start = end - 30.0
        body = urlencode(
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "30s"}
        )
        headers = {
            **client._session.headers,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        pool = client._session.get_adapter(client.url).poolmanager.connection_from_url(client.url)
        plain = PlainHttp(prometheus.url, headers, 1)

        def via_urllib3() -> object:
            response = pool.urlopen(
                "POST",
                "/api/v1/query_range",
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=5.0, read=5.0),
                retries=False,
                preload_content=True,
            )
            return orjson.loads(response.data)["data"]["result"]

        def via_plain() -> object:
            answer = plain.post("/api/v1/query_range", body.encode(), 5.0, _no_watch)
            return orjson.loads(answer.body)["data"]["result"]

        def whole() -> object:
            return source.query_range_blocking(promql, start, end, 30.0)

        series = len(via_plain())  # type: ignore[arg-type]
        assert orjson.dumps(via_urllib3()) == orjson.dumps(via_plain())
        print(f"the decision's range query: {series} series, {len(promql)} characters of PromQL")
        pid = prometheus.pid
        clients: list[tuple[str, Callable[[], object]]] = [
            ("urllib3", via_urllib3),
            ("plain", via_plain),
            ("query_range_blocking", whole),
        ]
        cpu: dict[str, list[float]] = {name: [] for name, _ in clients}
        for round_ in range(args.rounds):
            for name, call in clients:
                call()
                prometheus_before = cpu_seconds(pid)
                thread_before, wall_before = time.thread_time(), time.perf_counter()
                for _ in range(args.queries):
                    call()
                n = args.queries
                mine = (time.thread_time() - thread_before) / n * 1e6
                theirs = (cpu_seconds(pid) - prometheus_before) / n * 1e6
                wall = (time.perf_counter() - wall_before) / n * 1e6
                cpu[name].append(mine)
                print(
                    f"round {round_ + 1} {name:<21} client CPU {mine:6.0f} µs/query   "
                    f"Prometheus CPU {theirs:6.0f} µs   wall {wall:6.0f} µs"
                )
        pairs = list(zip(cpu["urllib3"], cpu["plain"], strict=True))
        saved = [u - p for u, p in pairs]
        print(
            "client CPU urllib3 / plain, per round: "
            + ", ".join(f"{u / p:.1f}x" for u, p in pairs)
            + f"; saved {min(saved):.0f}–{max(saved):.0f} µs per query"
        )
        plain.close()
        source.close()
    return 0


def _no_watch(sock: socket.socket) -> None:
    """No deadline here (the service registers each socket with its decision's)."""


if __name__ == "__main__":
    sys.exit(main())
