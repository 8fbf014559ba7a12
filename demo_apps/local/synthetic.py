"""A fake exporter of the demo apps' series, whose pods and counters its caller controls.

:class:`SyntheticApp` serves, in one scrape, the demo apps' series for any number of "pods":
``http_requests_total{code, version, track}`` and the ``http_request_duration_seconds``
histogram (buckets :data:`decision_service.histogram.LATENCY_BUCKETS_SECONDS`), each carrying
``rollouts_pod_template_hash``. In Kubernetes Prometheus attaches that label to the target from
the pod label; here the exposition carries it and the scrape job keeps it (``honor_labels``),
so a caller can add a pod at any time without reconfiguring Prometheus. A new pod's series start
at 0, as the demo apps declare theirs, so ``increase()`` sees its first requests.

It feeds a real Prometheus (:mod:`demo_apps.local.prometheus`) known numbers without the cost or
the randomness of the real apps: the decision service's live tests and
``benchmarks/bench_service.py`` use it::

    with SyntheticApp() as app, synthetic_prometheus(binary, app) as prom:
        canary = app.pod("abc123", track="canary")
        prom.wait_for(f'http_requests_total{{rollouts_pod_template_hash="abc123"}}')
        canary.serve(requests=100, errors=3, latency_seconds=0.05)

It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from demo_apps.local.processes import LOOPBACK, Lifecycle
from demo_apps.local.prometheus import PrometheusServer


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


class SyntheticApp(Lifecycle):
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
        port = self._server.server_address[1]  # bound to LOOPBACK (the host part)
        return f"{LOOPBACK}:{port}"

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


def synthetic_prometheus(
    binary: str, app: SyntheticApp, *, scrape_interval: str = "1s", start_timeout: float = 20.0
) -> PrometheusServer:
    """A Prometheus (not started yet) scraping ``app``, keeping the labels its exposition sets."""
    return PrometheusServer(
        binary,
        [app.address],
        scrape_interval=scrape_interval,
        job_name="synthetic",
        honor_labels=True,
        start_timeout=start_timeout,
    )
