"""Every failure Prometheus can have: Prometheus down, slow, 5xx or malformed → 503 (never a guess);
model missing, corrupt or mismatched → not ready, no decisions served."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from decision_service.app import create_app
from decision_service.features import FEATURE_NAMES
from tests.support.fake_prometheus import FakePrometheus, Reply, Traffic, demo_prometheus, vector
from tests.support.onnx_models import build_model
from tests.support.prometheus import free_port
from tests.support.service import BODY, settings_for

HEALTHY = demo_prometheus(Traffic(300, 1), Traffic(1200, 4))
TIMEOUT = 0.4


def _failing(reply: Reply, *, only_span_query: bool) -> Callable[[str], Reply]:
    """Fail every query, or only the span query (after a good canary_start answer)."""

    def handler(query: str) -> Reply:
        if only_span_query and "decision_query" not in query:
            return HEALTHY(query)
        return reply

    return handler


FAILURES = {
    "5xx": (Reply(status=500, body=b"internal error"), "http_error"),
    "503": (Reply(status=503, body={"status": "error", "error": "overloaded"}), "http_error"),
    "bad query": (
        Reply(status=400, body={"status": "error", "errorType": "bad_data"}),
        "http_error",
    ),
    "slow": (Reply(delay=TIMEOUT * 3), "timeout"),
    "not json": (Reply(body=b"<html>proxy error</html>"), "malformed"),
    "no data": (Reply(body={"status": "success"}), "malformed"),
    "not a vector": (
        Reply(body={"status": "success", "data": {"result": {"a": 1}}}),
        "malformed",
    ),
    "garbage value": (
        Reply(body={"status": "success", "data": {"result": [{"metric": {}, "value": [1, "x"]}]}}),
        "malformed",
    ),
}


@pytest.mark.parametrize("only_span_query", [False, True], ids=["start-query", "span-query"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_prometheus_failures_are_503_never_a_decision(
    models: dict[str, Path], fake_prometheus: FakePrometheus, failure: str, only_span_query: bool
) -> None:
    reply, kind = FAILURES[failure]
    fake_prometheus.handler = _failing(reply, only_span_query=only_span_query)
    settings = settings_for(
        models["promote"], fake_prometheus.url, prometheus_timeout_seconds=TIMEOUT
    )
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.post("/v1/decide", json=BODY)
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        error = response.json()
        assert error["error"] == "prometheus_unavailable"
        assert "decision" not in error
        assert elapsed < TIMEOUT * 2 + 1.0  # bounded by the timeout, not by Prometheus
        metrics = client.get("/metrics").text
        assert f'rollout_agent_prometheus_errors_total{{kind="{kind}"}} 1.0' in metrics
        # no decision was counted (a Rollout's series appear at its first decision)
        assert "rollout_agent_decisions_total{" not in metrics


def test_prometheus_down_is_503_and_not_ready(models: dict[str, Path]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with TestClient(create_app(settings_for(models["promote"], closed))) as client:
        response = client.post("/v1/decide", json=BODY)
        assert response.status_code == 503
        assert response.json()["error"] == "prometheus_unavailable"
        assert "unreachable" in response.json()["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert [d["field"] for d in ready.json()["details"]] == ["prometheus"]
        assert client.get("/healthz").status_code == 200


def test_readyz_tells_an_unauthenticated_caller_nothing_internal(
    models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """/readyz is open: its reason is generic (no host, port or Python error text); the
    details go to the log, once per change rather than at every probe."""
    port = free_port()
    closed = f"http://127.0.0.1:{port}"  # nothing listens there
    settings = settings_for(models["promote"], closed, api_token="t0ken")
    with (
        caplog.at_level(logging.INFO, logger="decision_service"),
        TestClient(create_app(settings)) as client,
    ):
        answers = [client.get("/readyz") for _ in range(3)]
    for ready in answers:
        assert ready.status_code == 503
        text = ready.text
        assert str(port) not in text and "127.0.0.1" not in text
        assert "Error" not in text and "Connection" not in text and "refused" not in text
        assert ready.json()["details"] == [
            {"field": "prometheus", "problem": "Prometheus is not answering (unreachable)"}
        ]
    logged = [r for r in caplog.records if "not ready" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert str(port) in str(getattr(logged[0], "fields", {}))


def test_readyz_hides_the_models_error_text_too(
    tmp_path: Path, fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    fake_prometheus.handler = HEALTHY
    missing = tmp_path / "secret-folder" / "absent.onnx"
    with (
        caplog.at_level(logging.INFO, logger="decision_service"),
        TestClient(create_app(settings_for(missing, fake_prometheus.url))) as client,
    ):
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "secret-folder" not in ready.text and "cannot read" not in ready.text
    assert ready.json()["details"] == [{"field": "model", "problem": "the model is not loaded"}]
    assert any("secret-folder" in str(getattr(r, "fields", {})) for r in caplog.records)


def test_a_template_that_drops_the_version_label_is_503(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    def handler(query: str) -> Reply:
        if "decision_query" not in query:
            return HEALTHY(query)
        return Reply(body=vector(({"decision_query": "window:requests", "code": "200"}, 5.0)))

    fake_prometheus.handler = handler
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        response = client.post("/v1/decide", json=BODY)
    assert response.status_code == 503
    assert "rollouts_pod_template_hash" in response.json()["message"]


def test_ready_when_the_model_is_loaded_and_prometheus_answers(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = HEALTHY
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"model": "ok", "prometheus": "ok"}}


def _bad_models(folder: Path) -> dict[str, tuple[Path, str]]:
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 not a protobuf model at all")
    features = ["step_weight", "canary_error_rate"] + [f"f{i}" for i in range(18)]
    return {
        "missing": (folder / "absent.onnx", "cannot read model"),
        "corrupt": (corrupt, "not a loadable ONNX model"),
        "wrong features": (
            build_model(folder / "features.onnx", feature_names=features),
            "feature names do not match",
        ),
        "reordered features": (
            build_model(
                folder / "order.onnx",
                feature_names=list(reversed(FEATURE_NAMES)),
            ),
            "different order",
        ),
        "wrong actions": (
            build_model(folder / "actions.onnx", action_names=["promote", "hold", "abort"]),
            "action names",
        ),
        "old spec": (
            build_model(folder / "spec.onnx", feature_spec_version="0"),
            "feature-spec version",
        ),
        "cannot run": (build_model(folder / "run.onnx", outputs=4), "fails a test inference"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "corrupt",
        "wrong features",
        "reordered features",
        "wrong actions",
        "old spec",
        "cannot run",
    ],
)
def test_an_unusable_model_means_not_ready_and_no_decisions(
    tmp_path: Path,
    fake_prometheus: FakePrometheus,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    model, reason = _bad_models(tmp_path)[case]
    fake_prometheus.handler = HEALTHY
    with (
        caplog.at_level(logging.ERROR, logger="decision_service"),
        TestClient(create_app(settings_for(model, fake_prometheus.url))) as client,
    ):
        assert client.get("/healthz").status_code == 200  # alive, so its logs can be read
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["details"][0]["field"] == "model"
        decide = client.post("/v1/decide", json=BODY)
        assert decide.status_code == 503
        assert decide.json()["error"] == "model_unavailable"
        assert reason in decide.json()["message"]
        assert client.get("/v1/model").status_code == 503
        assert "rollout_agent_model_loaded 0.0" in client.get("/metrics").text
    assert not [q for q in fake_prometheus.queries if q != "vector(1)"]  # nothing measured
    assert any(reason in str(getattr(r, "fields", {})) for r in caplog.records)
