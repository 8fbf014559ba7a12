"""The local stack: Prometheus, the stable and canary apps and the decision service, on loopback.

Every process is started in its own process group with its output in ``<run dir>/logs/``, and
:meth:`LocalStack.stop` ends exactly those groups (SIGTERM, then SIGKILL after a grace period),
in reverse order of start. ``LocalStack`` is a context manager, so an exception or Ctrl-C in
the demo still stops everything.

Prometheus gets a configuration generated here: one scrape job over the two apps, each target
labelled as Kubernetes would label a pod after the relabel rules of
``rollouts/prometheus-scrape-config.yaml`` — ``rollouts_pod_template_hash``, ``namespace`` and
``pod`` — so the decision service's queries select canary and stable by hash exactly as in a
cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

LOOPBACK = "127.0.0.1"
NAMESPACE = "rollout-demo"
ROLLOUT = "demo-app"


class StackError(RuntimeError):
    """A process of the stack did not start or become ready."""


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def pod_template_hash(track: str, scenario: str, seed: int) -> str:
    """A stable, Argo-looking pod-template hash for one version of one demo run."""
    digest = hashlib.sha256(f"{track}/{scenario}/{seed}".encode()).hexdigest()
    return digest[:10]


def find_prometheus() -> str | None:
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


class ManagedProcess:
    """One child process in its own process group, logging to a file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_seconds: float = 5.0) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            # The group is this child's own (start_new_session): nothing else is signalled.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_ready(process: ManagedProcess, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StackError(f"{process.name} exited during start-up:\n{process.log_tail()}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise StackError(
        f"{process.name} not ready at {url} after {timeout:g} s:\n{process.log_tail()}"
    )


@dataclass(frozen=True)
class ScrapeTarget:
    address: str
    labels: Mapping[str, str]


def prometheus_config(targets: Sequence[ScrapeTarget], scrape_interval: str) -> str:
    """The generated Prometheus configuration (JSON, which is YAML)."""
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "demo-app",
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [t.address], "labels": dict(t.labels)} for t in targets
                ],
            }
        ],
    }
    return json.dumps(config, indent=2)


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


class LocalStack:
    """Starts the stack on enter, stops every process it started on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.clock_start = time.time()
        self.apps: dict[str, AppEndpoint] = {}
        self.prometheus_url = ""
        self.decision_url = config.decision_url or ""

    # -- helpers -------------------------------------------------------------------------

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HTTP_PROXY", "http_proxy")}
        env.update({"NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK, "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def _start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, self._env(env), self.config.run_dir / "logs" / f"{name}.log"
        )
        self.processes.append(process.start())
        # For whoever must check that nothing outlives the stack (tests, a curious user).
        pids = {p.name: p.pid for p in self.processes}
        (self.config.run_dir / "pids.json").write_text(json.dumps(pids, indent=2))
        return process

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
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        config_file = folder / "prometheus.yml"
        config_file.write_text(prometheus_config(targets, config.scrape_interval))
        port = free_port()
        self.prometheus_url = f"http://{LOOPBACK}:{port}"
        argv = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ]
        process = self._start("prometheus", argv, {})
        wait_ready(process, f"{self.prometheus_url}/-/ready", config.start_timeout)

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

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
