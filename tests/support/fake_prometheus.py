"""A fake Prometheus HTTP API on a loopback port, answering what a test says.

``FakePrometheus(handler)`` serves ``/api/v1/query`` (GET or form POST) with
``handler(query) -> Reply``: any status, body (JSON or raw bytes) and delay; it records every
query and request, so a test can also prove that nothing was sent. ``/api/v1/query_range`` gets
the same handler: an instant-vector reply becomes a matrix holding each series' value at every
step of the range (every window alike, as a steady service would give; a series' ``_history``
gives its last values instead); other replies pass.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from tests.support.prometheus import LOOPBACK


@dataclass
class Reply:
    status: int = 200
    body: Any = field(
        default_factory=lambda: {
            "status": "success",
            "data": {"resultType": "vector", "result": []},
        }
    )
    delay: float = 0.0


def vector(*series: tuple[dict[str, str], float]) -> dict[str, Any]:
    """A Prometheus instant-vector answer."""
    now = time.time()
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [now, repr(value)]} for labels, value in series],
        },
    }


def _as_matrix(body: Any, params: dict[str, list[str]]) -> Any:
    """An instant-vector body as a range answer: each value at every step of the range."""
    if not (isinstance(body, dict) and body.get("data", {}).get("resultType") == "vector"):
        return body
    start = float(params["start"][0])
    end = float(params["end"][0])
    step = float(params["step"][0].rstrip("s"))
    times = []
    t = start
    while t <= end + 1e-6:
        times.append(t)
        t += step
    result = []
    for series in body["data"]["result"]:
        # a series may carry its recent history (``_history``: the last values, oldest first)
        history = series.get("_history", [])
        values = [series["value"][1]] * (len(times) - len(history)) + list(history)
        values = values[-len(times) :]
        result.append({"metric": series["metric"], "values": list(zip(times, values, strict=True))})
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


class FakePrometheus:
    """``/api/v1/query`` on a loopback port, answered by ``handler(query) -> Reply``."""

    def __init__(self, handler: Callable[[str], Reply] | None = None) -> None:
        self.handler: Callable[[str], Reply] = handler or (lambda query: Reply())
        self.queries: list[str] = []
        self.requests: list[tuple[str, str, bytes]] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, query: str, params: dict[str, list[str]]) -> None:
                fake.queries.append(query)
                reply = fake.handler(query)
                if reply.delay:
                    time.sleep(reply.delay)
                if self.path.split("?")[0].endswith("/query_range"):
                    reply = Reply(reply.status, _as_matrix(reply.body, params), 0.0)
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test)

            def do_GET(self) -> None:
                fake.authorizations.append(self.headers.get("Authorization"))
                parsed = urllib.parse.urlparse(self.path)
                fake.requests.append(("GET", self.path, b""))
                params = urllib.parse.parse_qs(parsed.query)
                self._answer(params.get("query", [""])[0], params)

            def do_POST(self) -> None:
                fake.authorizations.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                fake.requests.append(("POST", self.path, data))
                params = urllib.parse.parse_qs(data.decode())
                self._answer(params.get("query", [""])[0], params)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakePrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Traffic:
    """What one version served in a span: requests, errors and one latency for all."""

    requests: float
    errors: float = 0.0
    latency_seconds: float = 0.05


def demo_series(span: str, version: str, traffic: Traffic) -> list[tuple[dict[str, str], float]]:
    """The demo preset's series for one span and version (requests by code, buckets by le)."""
    base = {"rollouts_pod_template_hash": version}
    series = [
        (
            base | {"decision_query": f"{span}:requests", "code": "200"},
            traffic.requests - traffic.errors,
        ),
        (base | {"decision_query": f"{span}:requests", "code": "500"}, traffic.errors),
    ]
    for bound in LATENCY_BUCKETS_SECONDS:
        count = traffic.requests if traffic.latency_seconds <= bound else 0.0
        series.append(
            (base | {"decision_query": f"{span}:latency_buckets", "le": repr(bound)}, count)
        )
    series.append(
        (base | {"decision_query": f"{span}:latency_buckets", "le": "+Inf"}, traffic.requests)
    )
    return series


def demo_prometheus(
    canary: Traffic | None,
    stable: Traffic | None,
    *,
    canary_life: Traffic | None = None,
    stable_life: Traffic | None = None,
    canary_age_seconds: float = 600.0,
) -> Callable[[str], Reply]:
    """A handler answering the demo preset's queries with this traffic.

    The canary and stable hashes are read from the query (the ``=~"canary|stable"`` regex);
    ``None`` traffic means no series at all. The life span defaults to the window's traffic.
    """

    def handler(query: str) -> Reply:
        if query == "vector(1)":
            return Reply(body=vector(({}, 1.0)))
        versions = re.search(r'rollouts_pod_template_hash=~"([^"|]+)\|([^"]+)"', query)
        if versions is None:  # the canary_start query
            return Reply(
                body=vector(({}, time.time() - canary_age_seconds)) if canary else vector()
            )
        canary_hash, stable_hash = versions.groups()
        series = []
        for span, c, s in (
            ("window", canary, stable),
            ("life", canary_life or canary, stable_life or stable),
        ):
            if c is not None:
                series += demo_series(span, canary_hash, c)
            if s is not None:
                series += demo_series(span, stable_hash, s)
        return Reply(body=vector(*series))

    return handler
