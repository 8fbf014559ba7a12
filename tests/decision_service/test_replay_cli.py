"""``python -m decision_service.replay``: bad input is a message and a non-zero exit, never a
traceback (against a fake Prometheus or none; the end-to-end replay of simulated history is
tests/training/test_replay_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from decision_service.queries import QUERY_TAG_LABEL
from decision_service.replay import EXIT_BAD_INPUT, EXIT_PROMETHEUS, run
from tests.conftest import REPO_ROOT
from tests.support.fake_prometheus import FakePrometheus, Reply, vector
from tests.support.onnx_models import HOLD_Q, build_model
from tests.support.prometheus import free_port

TARGET = [
    "--namespace",
    "shop",
    "--rollout",
    "checkout",
    "--canary-hash",
    "6d4f8c9b7",
    "--stable-hash",
    "5c8b7d6f4",
]
TIMELINE = ["--timeline", "5%@2024-05-01T10:00:30Z*3"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "hold.onnx", q_values=HOLD_Q)


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    with FakePrometheus() as fake:
        yield fake


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decision_service.replay", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_file_is_a_message_and_exit_2_not_a_traceback(
    tmp_path: Path, model: Path
) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_text("kind: AnalysisRun\nstatus: [this is: not, {valid\n")
    done = _cli(
        "--prometheus", "http://127.0.0.1:9", "--analysisrun", str(bad), "--model", str(model)
    )
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.startswith(f"error: {bad}: not valid YAML")
    assert "Traceback" not in done.stderr


def test_an_unreachable_prometheus_is_exit_3(model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = _cli("--prometheus", url, *TARGET, *TIMELINE, "--model", str(model), "--timeout", "2")
    assert done.returncode == EXIT_PROMETHEUS, done.stderr
    assert "Prometheus unreachable" in done.stderr and url in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeline", "5%@2024-05-01T10:00:30Z"], "--timeline needs --namespace"),
        ([*TARGET, "--analysisrun", "/nonexistent/run.yaml"], "cannot read"),
        ([*TARGET, *TIMELINE, "--interval", "30 seconds"], "invalid settings: analysis_window"),
        ([*TARGET, *TIMELINE, "--preset", "linkerd"], "invalid settings: query_preset"),
        ([*TARGET, *TIMELINE, "--model", "/nonexistent/model.onnx"], "cannot read model"),
        ([*TARGET, "--timeline", "5%@2100-01-01T00:00:00Z"], "in the future"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(
    fake: FakePrometheus,
    model: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    if "--model" not in args:
        args = [*args, "--model", str(model)]
    assert run(["--prometheus", fake.url, *args], say=lambda line: None) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_hashes_without_series_are_named(
    fake: FakePrometheus, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--prometheus", fake.url, *TARGET, *TIMELINE, "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "no series of the canary 6d4f8c9b7 (namespace shop, rollout checkout)" in err
    assert 'rollouts_pod_template_hash="6d4f8c9b7"' in err  # the query it ran


def test_a_stable_hash_without_series_is_named(
    fake: FakePrometheus, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(query: str) -> Reply:
        if QUERY_TAG_LABEL not in query:
            return Reply(body=vector(({}, 1_714_557_600.0)))
        return Reply(body=vector())

    fake.handler = handler
    assert run(["--prometheus", fake.url, *TARGET, *TIMELINE, "--model", str(model)]) == 2
    assert "no series of the stable version 5c8b7d6f4" in capsys.readouterr().err


def test_a_prometheus_answering_errors_is_exit_3(
    fake: FakePrometheus, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.handler = lambda query: Reply(status=503, body=b"overloaded")
    assert run(["--prometheus", fake.url, *TARGET, *TIMELINE, "--model", str(model)]) == 3
    assert "error: Prometheus http error" in capsys.readouterr().err
