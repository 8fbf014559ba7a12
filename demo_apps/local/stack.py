"""The local stack: Prometheus, the stable and canary apps and the decision service, on loopback.

Every process is started in its own process group with its output in ``<run dir>/logs/``, and
:meth:`LocalStack.stop` ends exactly those groups (SIGTERM, then SIGKILL after a grace period),
in reverse order of start. ``LocalStack`` is a context manager, so an exception or Ctrl-C in
the demo still stops everything.

Prometheus is started by the project's one launcher (:mod:`demo_apps.local.prometheus`) with
one scrape job over the two apps, each target labelled as Kubernetes would label a pod after the
relabel rules of ``rollouts/prometheus-scrape-config.yaml`` — ``rollouts_pod_template_hash``,
``namespace`` and ``pod`` — so the decision service's queries select canary and stable by hash
exactly as in a cluster. Every run starts on an empty TSDB in ``<run dir>/prometheus``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from demo_apps.local.processes import (
    LOOPBACK,
    Lifecycle,
    ManagedProcess,
    StartError,
    free_port,
    loopback_env,
    wait_ready,
)
from demo_apps.local.prometheus import PrometheusServer, ScrapeTarget, find_prometheus

NAMESPACE = "rollout-demo"
ROLLOUT = "demo-app"


class StackError(StartError):
    """A process of the stack did not start or become ready, or a part of it is missing."""


def pod_template_hash(track: str, scenario: str, seed: int) -> str:
    """A stable, Argo-looking pod-template hash for one version of one demo run."""
    digest = hashlib.sha256(f"{track}/{scenario}/{seed}".encode()).hexdigest()
    return digest[:10]


@dataclass
class StackConfig:
    """What the stack runs."""

    scenario: str
    run_dir: Path
    seed: int = 0
    time_scale: float = 1.0
    scenario_interval_seconds: float = 30.0
    scrape_interval: str = "1s"
    prometheus_bin: str | None = None
    #: Start the real decision service (``python -m decision_service``); else ``decision_url``.
    start_decision_service: bool = True
    decision_url: str | None = None
    decision_env: Mapping[str, str] = field(default_factory=dict)
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    start_timeout: float = 60.0


@dataclass(frozen=True)
class AppEndpoint:
    track: str
    url: str
    pod_template_hash: str


class LocalStack(Lifecycle):
    """Starts the stack on enter, stops every process it started on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.clock_start = time.time()
        self.apps: dict[str, AppEndpoint] = {}
        self.prometheus: PrometheusServer | None = None
        self.prometheus_url = ""
        self.decision_url = config.decision_url or ""

    # -- helpers -------------------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        return self.config.run_dir / "logs" / f"{name}.log"

    def _track(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        # For whoever must check that nothing outlives the stack (tests, a curious user).
        pids = {p.name: p.pid for p in self.processes}
        (self.config.run_dir / "pids.json").write_text(json.dumps(pids, indent=2))
        return process

    def _start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, loopback_env(env), self._log_path(name))
        return self._track(process.start())

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalStack:
        config = self.config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            pending = [self._start_app("stable"), self._start_app("canary")]
            self._start_prometheus()
            for process, endpoint in pending:
                wait_ready(process, f"{endpoint.url}/healthz", config.start_timeout)
            if config.start_decision_service:
                self._start_decision_service()
            elif not self.decision_url:
                raise StackError("no decision service: start it or pass decision_url")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_app(self, track: str) -> tuple[ManagedProcess, AppEndpoint]:
        config = self.config
        port = free_port()
        pod_hash = pod_template_hash(track, config.scenario, config.seed)
        env = {
            "APP_TYPE": track,
            "SCENARIO": config.scenario,
            "SEED": str(config.seed),
            "TIME_SCALE": repr(config.time_scale),
            "INTERVAL_SECONDS": repr(config.scenario_interval_seconds),
            "CLOCK_START": repr(self.clock_start),
            "POD_TEMPLATE_HASH": pod_hash,
        }
        argv = [sys.executable, "-m", "demo_apps.app", "--host", LOOPBACK, "--port", str(port)]
        process = self._start(f"app-{track}", argv, env)
        endpoint = AppEndpoint(track, f"http://{LOOPBACK}:{port}", pod_hash)
        self.apps[track] = endpoint
        return process, endpoint

    def _start_prometheus(self) -> None:
        config = self.config
        binary = config.prometheus_bin or find_prometheus()
        if binary is None:
            raise StackError(
                "Prometheus is not installed: `make prometheus` (apt-get install prometheus), "
                "or set PROMETHEUS_BIN"
            )
        targets = [
            ScrapeTarget(
                app.url.removeprefix("http://"),
                {
                    "rollouts_pod_template_hash": app.pod_template_hash,
                    "namespace": NAMESPACE,
                    "pod": f"{ROLLOUT}-{app.pod_template_hash}-local",
                },
            )
            for app in self.apps.values()
        ]
        folder = config.run_dir / "prometheus"
        shutil.rmtree(folder, ignore_errors=True)  # each run starts on an empty TSDB
        prometheus = PrometheusServer(
            binary,
            targets,
            scrape_interval=config.scrape_interval,
            folder=folder,
            log_path=self._log_path("prometheus"),
            start_timeout=config.start_timeout,
        )
        self.prometheus = prometheus
        try:
            prometheus.start()
        finally:
            if prometheus.process is not None:
                self._track(prometheus.process)
        self.prometheus_url = prometheus.url

    def _start_decision_service(self) -> None:
        config = self.config
        port = free_port()
        env = {
            "PROMETHEUS_URL": self.prometheus_url,
            "API_TOKEN": config.api_token,
            "QUERY_PRESET": "demo",
            **config.decision_env,
        }
        argv = [sys.executable, "-m", "decision_service", "--host", LOOPBACK, "--port", str(port)]
        process = self._start("decision-service", argv, env)
        self.decision_url = f"http://{LOOPBACK}:{port}"
        wait_ready(process, f"{self.decision_url}/readyz", config.start_timeout)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
