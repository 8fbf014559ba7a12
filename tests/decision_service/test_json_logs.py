"""Structured logs: JSON lines, exactly one line per decision, with what explains it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from decision_service.app import create_app
from decision_service.features import FEATURE_NAMES
from decision_service.logs import JsonFormatter, configure_logging
from tests.support.fake_prometheus import FakePrometheus, Reply, Traffic, demo_prometheus
from tests.support.service import BODY, settings_for


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    configure_logging("INFO", stream)
    yield stream
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_line_per_decision(
    log_stream: io.StringIO, models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = demo_prometheus(Traffic(300, 120), Traffic(1200, 4))
    settings = settings_for(models["promote"], fake_prometheus.url, dry_run=True)
    with TestClient(create_app(settings)) as client:
        log_stream.truncate(0)
        log_stream.seek(0)
        for _ in range(3):
            client.post("/v1/decide", json=BODY)
    decisions = [line for line in _lines(log_stream) if line["message"] == "decision"]
    assert len(decisions) == 3
    line = decisions[0]
    assert line["logger"] == "decision_service.decisions"
    assert line["level"] == "INFO"
    assert (line["decision"], line["guardrail"], line["proposed"]) == (
        "abort",
        "hard_slo_breach",
        "promote",
    )
    assert (line["answer"], line["dry_run"]) == ("hold", True)  # the real one is logged
    assert line["canary_hash"] == "6d4f8c9b7" and line["step_weight"] == 20.0
    assert [d["measurements_at_step"] for d in decisions] == [0, 1, 2]
    assert list(line["observation"]) == list(FEATURE_NAMES)  # type: ignore[call-overload]
    assert set(line["q_values"]) == {"hold", "promote", "abort"}  # type: ignore[arg-type]
    assert str(line["model"]).startswith("always-promote@")
    assert isinstance(line["duration_ms"], float)
    assert str(line["time"]).endswith("Z")


def test_a_failed_decision_is_one_warning_line(
    log_stream: io.StringIO, models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = lambda query: Reply(status=503, body=b"overloaded")
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        client.post("/v1/decide", json=BODY)
    failures = [line for line in _lines(log_stream) if line["message"] == "decision failed"]
    assert len(failures) == 1
    assert failures[0]["level"] == "WARNING" and failures[0]["error"] == "http_error"


def test_exceptions_are_kept_in_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed" and "RuntimeError: boom" in entry["exception"]
