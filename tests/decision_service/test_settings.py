"""Settings: the public environment variable names, defaults, and fail-fast validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH
from decision_service.settings import Settings, prometheus_duration_seconds

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The names the Helm chart, the manifests and users' scripts rely on.
PUBLIC_ENV = {
    "MODEL_PATH": ("/models/x.onnx", "model_path", Path("/models/x.onnx")),
    "SLO_LATENCY": ("350", "slo_latency", 350.0),
    "PROMETHEUS_URL": (
        "http://prometheus.monitoring:9090/",
        "prometheus_url",
        "http://prometheus.monitoring:9090",
    ),
    "PROMETHEUS_TIMEOUT_SECONDS": ("1.5", "prometheus_timeout_seconds", 1.5),
    "DRY_RUN": ("true", "dry_run", True),
    "DRY_RUN_ANSWER": ("promote", "dry_run_answer", "promote"),
    "QUERY_PRESET": ("istio", "query_preset", "istio"),
    "ANALYSIS_WINDOW": ("1m30s", "analysis_window", "1m30s"),
    "GUARDRAIL_MIN_CANARY_REQUESTS": ("50", "guardrail_min_canary_requests", 50),
    "GUARDRAIL_MIN_BREACH_REQUESTS": ("30", "guardrail_min_breach_requests", 30),
    "GUARDRAIL_HARD_ERROR_RATE": ("0.5", "guardrail_hard_error_rate", 0.5),
    "GUARDRAIL_HARD_LATENCY_SLO_FACTOR": ("4", "guardrail_hard_latency_slo_factor", 4.0),
    "GUARDRAIL_RELATIVE_FACTOR": ("3", "guardrail_relative_factor", 3.0),
    "GUARDRAIL_PROMOTE_VETO_Z": ("4", "guardrail_promote_veto_z", 4.0),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
}
FILE_ENV = ("API_TOKEN", "API_TOKEN_FILE", "QUERY_TEMPLATES_FILE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PUBLIC_ENV, *FILE_ENV):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.model_path == DEFAULT_MODEL_PATH
    assert settings.slo_latency == 200.0
    assert settings.prometheus_url == "http://127.0.0.1:9090"
    assert settings.dry_run is False and settings.dry_run_answer == "hold"
    assert settings.query_preset == "demo" and settings.query_templates_file is None
    assert settings.analysis_window == "30s" and settings.analysis_window_seconds == 30
    assert settings.bearer_token is None
    assert settings.guardrails() == GuardrailConfig()


@pytest.mark.parametrize("name", sorted(PUBLIC_ENV))
def test_each_public_variable_is_read_by_its_exact_name(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    raw, field, expected = PUBLIC_ENV[name]
    monkeypatch.setenv(name, raw)
    assert getattr(Settings(), field) == expected


def test_token_from_env_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cret")
    assert Settings().bearer_token == "s3cret"
    monkeypatch.delenv("API_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("from-a-secret\n")
    monkeypatch.setenv("API_TOKEN_FILE", str(token_file))
    assert Settings().bearer_token == "from-a-secret"
    monkeypatch.setenv("API_TOKEN", "")  # an empty variable (e.g. from a chart) is unset
    assert Settings().bearer_token == "from-a-secret"


def test_templates_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text("{}")
    monkeypatch.setenv("QUERY_TEMPLATES_FILE", str(path))
    assert Settings().query_templates_file == path


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLO_LATENCY": "0"}, "slo_latency"),
        ({"SLO_LATENCY": "nan"}, "slo_latency"),
        ({"PROMETHEUS_URL": "ftp://prometheus"}, "http"),
        ({"PROMETHEUS_URL": "prometheus:9090"}, "http"),
        ({"PROMETHEUS_TIMEOUT_SECONDS": "0"}, "prometheus_timeout_seconds"),
        ({"DRY_RUN": "maybe"}, "dry_run"),
        ({"DRY_RUN_ANSWER": "abort"}, "dry_run_answer"),
        ({"QUERY_PRESET": "linkerd"}, "query_preset"),
        ({"QUERY_TEMPLATES_FILE": "/nonexistent.yaml"}, "no such file"),
        ({"ANALYSIS_WINDOW": "30"}, "Prometheus duration"),
        ({"ANALYSIS_WINDOW": "500ms"}, "at least 1s"),
        ({"GUARDRAIL_HARD_ERROR_RATE": "1.5"}, "guardrail_hard_error_rate"),
        ({"GUARDRAIL_RELATIVE_FACTOR": "0.5"}, "guardrail_relative_factor"),
        ({"GUARDRAIL_PROMOTE_VETO_Z": "0"}, "guardrail_promote_veto_z"),
        ({"GUARDRAIL_MIN_BREACH_REQUESTS": "0"}, "guardrail_min_breach_requests"),
        ({"LOG_LEVEL": "chatty"}, "log_level"),
        ({"API_TOKEN": "a", "API_TOKEN_FILE": "{token}"}, "not both"),
        ({"API_TOKEN_FILE": "{empty}"}, "is empty"),
        ({"API_TOKEN_FILE": "/nonexistent/token"}, "API_TOKEN_FILE"),
    ],
)
def test_unusable_values_fail_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "empty").write_text("\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(token=tmp_path / "token", empty=tmp_path / "empty"))
    with pytest.raises(ValidationError, match=re.compile(message, re.IGNORECASE)):
        Settings()


@pytest.mark.parametrize(
    ("duration", "seconds"), [("30s", 30), ("1m30s", 90), ("2h", 7200), ("1500ms", 1.5)]
)
def test_prometheus_durations(duration: str, seconds: float) -> None:
    assert prometheus_duration_seconds(duration) == seconds


def test_the_configuration_reference_lists_exactly_the_settings() -> None:
    """docs/configuration.md's table names every variable Settings reads, and no other."""
    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", doc, flags=re.MULTILINE))
    fields = {name.upper() for name in Settings.model_fields}
    assert documented == fields
    assert set(PUBLIC_ENV) | set(FILE_ENV) <= fields
