"""The one Prometheus launcher: the demo stack, the tests and the benchmarks all start it here.

:class:`PrometheusServer` writes a configuration for its scrape targets, starts ``prometheus``
on a free loopback port (a :class:`~demo_apps.local.processes.ManagedProcess`, in its own
process group), waits until ``/-/ready`` answers, and stops it; :meth:`~PrometheusServer.query`
and :meth:`~PrometheusServer.wait_for` run instant queries against it; ``with server.paused():``
stalls it (SIGSTOP, then SIGCONT on the way out) to see what its clients do when it hangs.
Every wait is bounded.

Targets are :class:`ScrapeTarget` (an address and the labels to attach to it) or plain
``host:port`` strings. The demo stack labels each app as Kubernetes would label a pod after the
relabel rules of ``rollouts/prometheus-scrape-config.yaml``; the synthetic exporter
(:mod:`demo_apps.local.synthetic`) carries ``rollouts_pod_template_hash`` in its exposition
instead, which the job keeps with ``honor_labels``.

Where things go: without ``folder``, the configuration, the log and the TSDB live in a temporary
folder that :meth:`~PrometheusServer.stop` removes. A ``folder`` or ``data_dir`` the caller
passes is never removed: ``data_dir`` (``--storage.tsdb.path``) may hold existing TSDB blocks
(e.g. backfilled with ``promtool tsdb create-blocks-from``) that Prometheus then serves;
``retention=None`` leaves Prometheus' own default (15 days) so that old blocks are not dropped
at start-up by the short retention a throw-away TSDB uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_apps.local.processes import (
    LOOPBACK,
    Lifecycle,
    ManagedProcess,
    StartError,
    free_port,
    loopback_env,
    wait_ready,
)


class PrometheusError(StartError):
    """Prometheus did not start, or a wait for a query's answer ran out."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` to scrape, and the labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def find_prometheus() -> str | None:
    """``$PROMETHEUS_BIN``, else ``prometheus`` on the PATH, else ``None``."""
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


def prometheus_config(
    targets: Sequence[ScrapeTarget | str],
    scrape_interval: str,
    *,
    job_name: str = "demo-app",
    honor_labels: bool = False,
) -> str:
    """The generated Prometheus configuration: one scrape job over ``targets`` (JSON is YAML)."""
    job: dict[str, Any] = {"job_name": job_name, "metrics_path": "/metrics"}
    if honor_labels:
        job["honor_labels"] = True
    job["static_configs"] = [
        {"targets": [t.address], "labels": dict(t.labels)}
        if isinstance(t, ScrapeTarget)
        else {"targets": [t]}
        for t in targets
    ]
    config = {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
        "scrape_configs": [job],
    }
    return json.dumps(config, indent=2)


class PrometheusServer(Lifecycle):
    """``prometheus`` on a free loopback port, scraping ``targets`` (see the module docstring).

    ``start()`` returns once Prometheus answers ``/-/ready`` (or raises
    :class:`PrometheusError` after ``start_timeout`` seconds, with the tail of its log);
    ``stop()`` ends it and removes the temporary folder, if it made one.
    """

    def __init__(
        self,
        binary: str,
        targets: Sequence[ScrapeTarget | str],
        *,
        scrape_interval: str = "1s",
        job_name: str = "demo-app",
        honor_labels: bool = False,
        folder: Path | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        retention: str | None = "2h",
        start_timeout: float = 20.0,
        stop_grace_seconds: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.config_text = prometheus_config(
            targets, scrape_interval, job_name=job_name, honor_labels=honor_labels
        )
        self._folder = folder
        self._data_dir = data_dir
        self._log_path = log_path
        self._retention = retention
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace_seconds
        self._extra_args = list(extra_args)
        self._owned_dir: Path | None = None
        self.process: ManagedProcess | None = None

    def _argv(self, config_file: Path, data_dir: Path) -> list[str]:
        argv = [
            self.binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ]
        if self._retention is not None:
            argv.append(f"--storage.tsdb.retention.time={self._retention}")
        return [*argv, "--log.level=warn", *self._extra_args]

    def start(self) -> PrometheusServer:
        folder = self._folder
        if folder is None:
            folder = self._owned_dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "prometheus.yml"
        config_file.write_text(self.config_text)
        argv = self._argv(config_file, self._data_dir or folder / "data")
        log_path = self._log_path or folder / "prometheus.log"
        self.process = ManagedProcess("prometheus", argv, loopback_env(), log_path).start()
        try:
            wait_ready(self.process, f"{self.url}/-/ready", self._start_timeout)
        except StartError as exc:
            self.stop()
            raise PrometheusError(str(exc)) from exc
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 20) -> str:
        return self.process.log_tail(lines) if self.process is not None else ""

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stall Prometheus for the block: SIGSTOP now (the block starts once all its threads
        have stopped), SIGCONT on the way out (whatever happens). Stopped, it keeps its port,
        so a client's connection is accepted by the kernel and then hangs until its own
        timeout, as against a Prometheus that is stuck."""
        if self.process is None or not self.process.alive():
            raise PrometheusError("Prometheus is not running")
        self.process.pause()
        try:
            yield
        finally:
            self.process.resume()

    def stop(self) -> None:
        """End Prometheus; remove the folder only if this server made it."""
        if self.process is not None:
            self.process.stop(self._stop_grace)
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

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
