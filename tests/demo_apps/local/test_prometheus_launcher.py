"""The one Prometheus launcher: generated config, start/ready/stop, and an existing TSDB kept.

Against the real binary (a user without Prometheus skips; CI fails instead).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from demo_apps.local.prometheus import (
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    prometheus_config,
)
from demo_apps.local.synthetic import SyntheticApp, synthetic_prometheus
from tests.conftest import prometheus_binary


def test_the_config_labels_targets_and_honours_labels_on_request() -> None:
    labelled = json.loads(
        prometheus_config([ScrapeTarget("127.0.0.1:1", {"pod": "p"}), "127.0.0.1:2"], "2s")
    )
    assert labelled["global"] == {"scrape_interval": "2s", "scrape_timeout": "2s"}
    (job,) = labelled["scrape_configs"]
    assert "honor_labels" not in job
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:1"], "labels": {"pod": "p"}},
        {"targets": ["127.0.0.1:2"]},
    ]
    honoured = json.loads(prometheus_config(["127.0.0.1:2"], "1s", job_name="x", honor_labels=True))
    assert honoured["scrape_configs"][0]["honor_labels"] is True
    assert honoured["scrape_configs"][0]["job_name"] == "x"


@pytest.mark.prometheus
def test_a_data_dir_the_caller_passes_is_kept_and_served_again(tmp_path: Path) -> None:
    binary = prometheus_binary()
    data = tmp_path / "tsdb"
    with SyntheticApp() as app:
        app.pod("kept", "stable").serve(7, 1, 0.02)
        first = PrometheusServer(
            binary,
            [app.address],
            scrape_interval="200ms",
            job_name="synthetic",
            honor_labels=True,
            data_dir=data,
            retention=None,
        )
        with first:
            assert first.process is not None
            assert not any("retention" in arg for arg in first.process.argv)
            assert f"--storage.tsdb.path={data}" in first.process.argv
            first.wait_for('http_requests_total{rollouts_pod_template_hash="kept",code="500"} == 1')
            own_folder = Path(first.process.log_path).parent
        assert not own_folder.exists(), "the launcher's own temporary folder is removed"
    assert data.is_dir() and any(data.iterdir()), "the caller's TSDB is not deleted"
    # No targets now: whatever it answers comes from the TSDB it was given.
    with PrometheusServer(binary, [], data_dir=data, retention=None) as second:
        result = second.query('last_over_time(http_requests_total{code="500"}[10m])')
    assert [float(r["value"][1]) for r in result] == [1.0]
    assert data.is_dir()


@pytest.mark.prometheus
def test_a_prometheus_that_cannot_start_says_why(tmp_path: Path) -> None:
    binary = prometheus_binary()
    with SyntheticApp() as app:
        server = synthetic_prometheus(binary, app, start_timeout=10)
        server.config_text = "scrape_configs: [this is not a config"
        with pytest.raises(PrometheusError, match="prometheus exited during start-up"):
            server.start()
        assert server.process is not None and not server.process.alive()


def _thread_states(pid: int) -> list[str]:
    return [
        (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        for task in Path(f"/proc/{pid}/task").iterdir()
    ]


@pytest.mark.prometheus
def test_a_paused_prometheus_answers_nothing_until_resumed_and_still_stops_promptly() -> None:
    binary = prometheus_binary()
    server = PrometheusServer(binary, [], stop_grace_seconds=10).start()
    try:
        assert server.query("vector(1)")
        with server.paused():
            # Every thread, not only the one the signal went to: the others would answer.
            assert server.pid is not None
            assert set(_thread_states(server.pid)) <= {"T"}
            # Stopped, it keeps its port: the kernel accepts the connection, nothing answers.
            with pytest.raises(OSError):
                server.query("vector(1)", timeout=0.5)
            assert server.process is not None and server.process.alive()
        assert [float(r["value"][1]) for r in server.query("vector(1)")] == [1.0]
        with server.paused():
            started = time.monotonic()
            server.stop()  # still paused: stop() continues it, so SIGTERM ends it
        assert time.monotonic() - started < 5, "a paused Prometheus waited for SIGKILL"
        assert not server.process.alive()
    finally:
        server.stop()


def test_pausing_a_prometheus_that_is_not_running_says_so() -> None:
    server = PrometheusServer("prometheus", [])
    with pytest.raises(PrometheusError, match="not running"), server.paused():
        pass
