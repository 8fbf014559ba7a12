"""The demo app: real 5xx at the scenario's rate, spent latency, Prometheus and JSON metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from demo_apps.app.server import AppSettings, create_app

SCENARIO = """\
name: coin
truth: bad
traffic: {requests_per_second: 10}
stable: {error_rate: 0.0, latency_p50_ms: 1, latency_spread: 0.1}
canary: {error_additive: 0.5, latency_multiplier: 10}
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "coin.yaml"
    path.write_text(SCENARIO)
    return path


def _client(scenario: Path, track: str) -> TestClient:
    settings = AppSettings(app_type=track, scenario=str(scenario), seed=5, pod_template_hash="abc")
    return TestClient(create_app(settings))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_canary_fails_with_real_500s_and_counts_them(scenario_file: Path) -> None:
    with _client(scenario_file, "canary") as client:
        codes = [client.get("/").status_code for _ in range(120)]
        assert set(codes) == {200, 500}
        errors = codes.count(500)
        assert 35 < errors < 85  # error_additive 0.5
        samples = _samples(client.get("/metrics").text)
        labels = (("code", "500"), ("track", "canary"), ("version", "2.0"))
        assert samples[("http_requests_total", labels)] == errors
        ok = (("code", "200"), ("track", "canary"), ("version", "2.0"))
        assert samples[("http_requests_total", ok)] == 120 - errors


def test_histogram_uses_the_shared_buckets_and_spends_the_latency(scenario_file: Path) -> None:
    with _client(scenario_file, "canary") as client:
        for _ in range(30):
            client.get("/")
        text = client.get("/metrics").text
    bounds = [
        float(m) for m in re.findall(r'http_request_duration_seconds_bucket\{le="([^"+]+)"', text)
    ]
    assert bounds == list(LATENCY_BUCKETS_SECONDS)
    samples = _samples(text)
    labels = (("track", "canary"), ("version", "2.0"))
    count = samples[("http_request_duration_seconds_count", labels)]
    total = samples[("http_request_duration_seconds_sum", labels)]
    assert count == 30
    # canary p50 = 10 x 1 ms: the time is really spent, not only reported
    assert 0.008 < total / count < 0.04


def test_stable_serves_without_errors_and_series_exist_before_traffic(scenario_file: Path) -> None:
    with _client(scenario_file, "stable") as client:
        before = _samples(client.get("/metrics").text)
        labels = (("code", "500"), ("track", "stable"), ("version", "1.0"))
        assert before[("http_requests_total", labels)] == 0
        assert all(client.get("/").status_code == 200 for _ in range(50))


def test_json_summary_is_the_seeds_shape(scenario_file: Path) -> None:
    with _client(scenario_file, "canary") as client:
        empty = client.get("/metrics", headers={"Accept": "application/json"}).json()
        assert empty["total_requests"] == 0 and empty["error_rate"] == 0.0
        codes = [client.get("/").status_code for _ in range(40)]
        summary = client.get("/metrics", headers={"Accept": "application/json"}).json()
    assert set(summary) == {
        "version",
        "scenario",
        "total_requests",
        "error_count",
        "error_rate",
        "avg_latency_ms",
    }
    assert summary["version"] == "2.0-canary"
    assert summary["scenario"] == "coin"
    assert summary["total_requests"] == 40
    assert summary["error_count"] == codes.count(500)
    assert summary["error_rate"] == pytest.approx(codes.count(500) / 40)
    assert 8 < summary["avg_latency_ms"] < 40


def test_healthz_names_the_version_and_hash(scenario_file: Path) -> None:
    with _client(scenario_file, "stable") as client:
        body = client.get("/healthz").json()
    assert body == {
        "status": "ok",
        "track": "stable",
        "version": "1.0",
        "scenario": "coin",
        "pod_template_hash": "abc",
    }


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, scenario_file: Path
) -> None:
    monkeypatch.setenv("APP_TYPE", "canary")
    monkeypatch.setenv("SCENARIO", str(scenario_file))
    monkeypatch.setenv("TIME_SCALE", "10")
    monkeypatch.setenv("POD_TEMPLATE_HASH", "h2")
    settings = AppSettings()  # type: ignore[call-arg]
    assert (settings.app_type, settings.time_scale, settings.pod_template_hash) == (
        "canary",
        10.0,
        "h2",
    )
    monkeypatch.setenv("APP_TYPE", "blue")
    with pytest.raises(ValueError, match="app_type"):
        AppSettings()  # type: ignore[call-arg]


def test_an_unknown_scenario_fails_at_start_up() -> None:
    settings = AppSettings(app_type="stable", scenario="no-such-scenario")
    with pytest.raises(ValueError, match="no shipped scenario"), TestClient(create_app(settings)):
        pass


def test_the_canary_is_told_its_weight_and_reports_what_it_knows(scenario_file: Path) -> None:
    with _client(scenario_file, "canary") as client:
        untold = client.get("/control").json()
        assert untold["weight"] == 100.0 and untold["weight_announced"] is False
        assert client.put("/control/weight", json={"weight": 0}).status_code == 200
        assert client.put("/control/weight", json={"weight": 10}).json()["scale_ups"] == []
        state = client.put("/control/weight", json={"weight": 40}).json()
        assert state["weight"] == 40 and state["weight_announced"] is True
        assert [s["new_share"] for s in state["scale_ups"]] == [0.75]
        assert client.get("/control").json()["scale_ups"] == state["scale_ups"]
        for bad in (-1, 101, "x"):
            assert client.put("/control/weight", json={"weight": bad}).status_code == 422
