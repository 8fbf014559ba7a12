"""The service's own metrics: a registry per app, label values declared up front, and what a
decision, a Prometheus error and the model do to them."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from decision_service.app import create_app
from decision_service.metrics import GUARDRAIL_LABELS, ServiceMetrics
from decision_service.prometheus_answers import ERROR_KINDS
from tests.support.fake_prometheus import FakePrometheus, Reply, Traffic, demo_prometheus
from tests.support.service import BODY, settings_for


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_series_exists_from_the_start_and_apps_do_not_share_a_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_decision("abort", "hard_slo_breach", False, 0.01)
    samples = _samples(first.exposition().decode())
    decisions = {k for k in samples if k[0] == "decision_service_decisions_total"}
    assert len(decisions) == 3 * len(GUARDRAIL_LABELS) * 2
    errors = {
        dict(k[1])["kind"] for k in samples if k[0] == "decision_service_prometheus_errors_total"
    }
    assert errors == set(ERROR_KINDS)
    key = (
        "decision_service_decisions_total",
        (("decision", "abort"), ("dry_run", "false"), ("guardrail", "hard_slo_breach")),
    )
    assert samples[key] == 1.0
    assert _samples(second.exposition().decode())[key] == 0.0


def test_metrics_after_decisions_and_failures(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = demo_prometheus(Traffic(300, 1), Traffic(1200, 4))
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        assert client.post("/v1/decide", json=BODY).status_code == 200
        fake_prometheus.handler = lambda query: Reply(status=500)
        assert client.post("/v1/decide", json=BODY).status_code == 503
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    promote = (("decision", "promote"), ("dry_run", "false"), ("guardrail", "none"))
    assert samples[("decision_service_decisions_total", promote)] == 1.0
    assert samples[("decision_service_prometheus_errors_total", (("kind", "http_error"),))] == 1.0
    assert samples[("decision_service_decision_duration_seconds_count", ())] == 1.0
    # start + snapshot + windows for the first decision; the second fails on its first query
    assert samples[("decision_service_prometheus_query_duration_seconds_count", ())] == 4.0
    assert samples[("decision_service_model_loaded", ())] == 1.0
    info = next(k for k in samples if k[0] == "decision_service_model_info")
    assert dict(info[1])["model"].startswith("always-promote@")
