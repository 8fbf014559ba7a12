"""A real Prometheus on a loopback port, scraping a synthetic app the test controls.

Used by the decision service's integration tests and by ``benchmarks/bench_service.py``;
reusable by any test that needs Prometheus::

    with SyntheticApp() as app, PrometheusServer(binary, targets=[app.address]) as prom:
        canary = app.pod("abc123", track="canary")
        prom.wait_for(f'http_requests_total{{rollouts_pod_template_hash="abc123"}}')
        canary.serve(requests=100, errors=3, latency_seconds=0.05)

:class:`SyntheticApp` serves, in one scrape, the demo apps' series for any number of "pods":
``http_requests_total{code, version, track}`` and the ``http_request_duration_seconds``
histogram (buckets :data:`decision_service.histogram.LATENCY_BUCKETS_SECONDS`), each carrying
``rollouts_pod_template_hash``. In Kubernetes Prometheus attaches that label to the target from
the pod label; here the exposition carries it and the scrape job keeps it (``honor_labels``),
so a test can add a pod at any time without reconfiguring Prometheus. A new pod's series start
at 0, as the demo apps declare theirs, so ``increase()`` sees its first requests.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from decision_service.histogram import LATENCY_BUCKETS_SECONDS

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- synthetic app


@dataclass
class SyntheticPod:
    """The counters of one pod (one pod-template hash) of the synthetic app."""

    pod_template_hash: str
    track: str
    version: str
    namespace: str | None = None
    requests_by_code: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0})
    bucket_counts: list[float] = field(
        default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
    )
    latency_sum: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def serve(self, requests: int, errors: int = 0, latency_seconds: float = 0.05) -> None:
        """Record ``requests`` requests (``errors`` of them 500s), all of this latency."""
        if not 0 <= errors <= requests:
            raise ValueError("errors must be within 0..requests")
        with self.lock:
            self.requests_by_code["200"] += requests - errors
            self.requests_by_code["500"] += errors
            for i, bound in enumerate(LATENCY_BUCKETS_SECONDS):
                if latency_seconds <= bound:
                    self.bucket_counts[i] += requests
            self.bucket_counts[-1] += requests
            self.latency_sum += requests * latency_seconds

    def exposition(self) -> str:
        labels = (
            f'version="{self.version}",track="{self.track}",'
            f'rollouts_pod_template_hash="{self.pod_template_hash}"'
        )
        if self.namespace:
            labels += f',namespace="{self.namespace}"'
        with self.lock:
            lines = [
                f'http_requests_total{{code="{code}",{labels}}} {value}'
                for code, value in self.requests_by_code.items()
            ]
            for bound, count in zip(LATENCY_BUCKETS_SECONDS, self.bucket_counts, strict=False):
                lines.append(
                    f'http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}'
                )
            total = self.bucket_counts[-1]
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"http_request_duration_seconds_count{{{labels}}} {total}")
            lines.append(f"http_request_duration_seconds_sum{{{labels}}} {self.latency_sum}")
        return "\n".join(lines) + "\n"


class SyntheticApp:
    """An HTTP exporter on a loopback port whose pods and counters the test controls."""

    def __init__(self) -> None:
        self._pods: dict[str, SyntheticPod] = {}
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = app.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def pod(
        self,
        pod_template_hash: str,
        track: str = "canary",
        version: str | None = None,
        namespace: str | None = None,
    ) -> SyntheticPod:
        """The pod with this hash, created (all counters at 0) on first use."""
        with self._lock:
            if pod_template_hash not in self._pods:
                self._pods[pod_template_hash] = SyntheticPod(
                    pod_template_hash,
                    track,
                    version or ("2.0" if track == "canary" else "1.0"),
                    namespace,
                )
            return self._pods[pod_template_hash]

    def exposition(self) -> str:
        with self._lock:
            pods = list(self._pods.values())
        header = (
            "# TYPE http_requests_total counter\n# TYPE http_request_duration_seconds histogram\n"
        )
        return header + "".join(pod.exposition() for pod in pods)

    def start(self) -> SyntheticApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SyntheticApp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- Prometheus


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a wait ran out."""


def scrape_config(targets: Sequence[str], scrape_interval: str) -> str:
    """A Prometheus configuration scraping ``targets`` (``host:port``) with honoured labels."""
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "synthetic",
                "honor_labels": True,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


class PrometheusServer:
    """``prometheus`` on a free loopback port with a generated config in a temporary folder.

    ``start()`` returns once Prometheus answers ``/-/ready`` (or raises after ``start_timeout``
    seconds, with the tail of its log); ``stop()`` terminates it and removes the folder.
    """

    def __init__(
        self,
        binary: str,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        start_timeout: float = 20.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._targets = list(targets)
        self._scrape_interval = scrape_interval
        self._start_timeout = start_timeout
        self._extra_args = list(extra_args)
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> PrometheusServer:
        self._dir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        config = self._dir / "prometheus.yml"
        config.write_text(scrape_config(self._targets, self._scrape_interval))
        self._log = (self._dir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--storage.tsdb.retention.time=2h",
                "--log.level=warn",
                *self._extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK},
        )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited early:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {self._start_timeout}s")

    def log_tail(self, lines: int = 20) -> str:
        if self._dir is None:
            return ""
        log = self._dir / "prometheus.log"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def query(self, promql: str, timeout: float = 2.0) -> list[dict[str, Any]]:
        """An instant query's result list (``data.result``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds (default: non-empty)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                result = self.query(promql)
                if predicate(result):
                    return result
            time.sleep(0.2)
        raise PrometheusError(f"timed out after {timeout}s waiting for {promql!r}: {result}")

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def prometheus_with_app(
    binary: str, *, scrape_interval: str = "1s"
) -> Iterator[tuple[PrometheusServer, SyntheticApp]]:
    """A synthetic app and a Prometheus scraping it, both stopped on exit."""
    with (
        SyntheticApp() as app,
        PrometheusServer(binary, [app.address], scrape_interval=scrape_interval) as prometheus,
    ):
        yield prometheus, app
