"""``python -m decision_service --host H --port P`` serves; a bad configuration exits early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.fake_prometheus import FakePrometheus
from tests.support.prometheus import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"API_TOKEN", "API_TOKEN_FILE"}}
    return env | {"PYTHONPATH": str(REPO_ROOT)} | values


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "decision_service", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "--host" in result.stdout and "--port" in result.stdout


def test_serves_on_the_given_host_and_port(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    port = free_port()
    env = _env(MODEL_PATH=str(models["hold"]), PROMETHEUS_URL=fake_prometheus.url, LOG_LEVEL="INFO")
    process = subprocess.Popen(
        [sys.executable, "-m", "decision_service", "--host", LOOPBACK, "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=2) as r:
                    status = r.status
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        assert status == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["message"] == "model loaded" for line in lines), output
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit status -15
    assert any(line["message"] == "Application shutdown complete." for line in lines), output
    assert process.returncode in (0, -15)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLO_LATENCY": "-1"}, "invalid configuration"),
        ({"ANALYSIS_WINDOW": "soon"}, "analysis_window"),
    ],
)
def test_a_bad_configuration_exits_with_a_message(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "decision_service", "--port", "1"],
        cwd=REPO_ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
