"""The service's configuration: one Settings class, read from the environment.

The environment variable names are public interface (the Helm chart, the manifests and users'
scripts set them), so they carry no prefix. ``docs/configuration.md`` is the reference table.
Nothing else in the service reads ``os.environ``: tests build their own :class:`Settings`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH
from decision_service.shield import ShieldConfig
from decision_service.tolerance import Tolerance

QueryPreset = Literal["demo", "ingress-nginx", "istio"]
DryRunAnswer = Literal["promote", "hold"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_DURATION_PART: Final = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS: Final = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_GUARDRAIL_PREFIX: Final = "guardrail_"


def _guardrail(name: str) -> Any:
    """A ``GUARDRAIL_<NAME>`` setting: GuardrailConfig's default and description."""
    info = GuardrailConfig.model_fields[name]
    return Field(default=info.default, description=info.description)


def _tolerance(name: str) -> Any:
    """A ``TOLERANCE_<NAME>`` setting: Tolerance's default and description."""
    info = Tolerance.model_fields[name]
    return Field(default=info.default, description=info.description)


def _shield(name: str) -> Any:
    """A ``SHIELD_<NAME>`` setting: ShieldConfig's default and description."""
    info = ShieldConfig.model_fields[name]
    return Field(default=info.default, description=info.description)


def prometheus_duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``30s`` or ``1m30s`` (ValueError otherwise)."""
    parts = _DURATION_PART.findall(duration)
    if not parts or "".join(n + unit for n, unit in parts) != duration:
        raise ValueError(f"{duration!r} is not a Prometheus duration such as 30s, 2m or 1m30s")
    return sum(int(n) * _DURATION_SECONDS[unit] for n, unit in parts)


class Settings(BaseSettings):
    """Every setting of the decision service (environment variable = field name, upper case)."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        protected_namespaces=(),
        validate_default=True,
    )

    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        description="ONNX policy file (MODEL_PATH); default: the shipped models/canary-dqn.onnx.",
    )
    slo_latency: float = Field(
        default=200.0,
        gt=0,
        le=3_600_000,
        description="Latency SLO in milliseconds (SLO_LATENCY); requests may override it.",
    )
    prometheus_url: str = Field(
        default="http://127.0.0.1:9090", description="Base URL of the Prometheus HTTP API."
    )
    prometheus_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Deadline of a decision's Prometheus queries (all of them, and the wait for "
        "a worker); past it the decision answers 503 (Argo retries).",
    )
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token callers must present; unset (and no file): no auth."
    )
    api_token_file: Path | None = Field(
        default=None,
        description="File holding the bearer token (a mounted Secret); read at start-up.",
    )
    dry_run: bool = Field(
        default=False,
        description="Shadow mode: compute, log and export the decision; answer safely.",
    )
    dry_run_answer: DryRunAnswer = Field(
        default="hold",
        description="What Argo sees in dry-run mode (never promote on missing data).",
    )
    query_preset: QueryPreset = Field(
        default="demo", description="Built-in PromQL templates to use."
    )
    query_templates_file: Path | None = Field(
        default=None,
        description="YAML file of PromQL templates replacing the preset (docs/queries.md).",
    )
    analysis_window: str = Field(
        default="30s", description="The last-window span (a Prometheus duration, e.g. 30s, 1m)."
    )
    # The guardrails' limits: defaults and descriptions from GuardrailConfig, the one definition
    # (its validation runs in _check_combinations and names the variable).
    guardrail_min_canary_requests: int = _guardrail("min_canary_requests")
    guardrail_min_breach_requests: int = _guardrail("min_breach_requests")
    guardrail_hard_error_rate: float = _guardrail("hard_error_rate")
    guardrail_hard_latency_slo_factor: float = _guardrail("hard_latency_slo_factor")
    guardrail_relative_factor: float = _guardrail("relative_factor")
    guardrail_promote_veto_z: float = _guardrail("promote_veto_z")
    # What "not worse than stable" means, and the shield (decision_service.tolerance, .shield)
    tolerance_error_factor: float = _tolerance("error_factor")
    tolerance_error_floor: float = _tolerance("error_floor")
    tolerance_latency_factor: float = _tolerance("latency_factor")
    tolerance_latency_floor_ms: float = _tolerance("latency_floor_ms")
    shield_enabled: bool = _shield("enabled")
    shield_alpha_promote: float = _shield("alpha_promote")
    shield_alpha_abort: float = _shield("alpha_abort")
    shield_indifference: float = _shield("indifference")
    shield_proof_windows: int = _shield("proof_windows")
    shield_abort_margin: float = _shield("abort_margin")
    shield_partial_proof_weight: float = _shield("partial_proof_weight")
    shield_partial_proof_alpha: float = _shield("partial_proof_alpha")
    shield_full_proof_weight: float = _shield("full_proof_weight")
    shield_drift_horizon_windows: int = _shield("drift_horizon_windows")
    shield_last_look_share: float = _shield("last_look_share")
    shield_enforce_abort: bool = _shield("enforce_abort")
    shield_decline_share: float = _shield("decline_share")
    shield_decline_share_beyond: float = _shield("decline_share_beyond")
    shield_warmup_windows: int = _shield("warmup_windows")
    log_level: LogLevel = Field(default="INFO", description="Level of the JSON logs.")

    _api_token: str | None = PrivateAttr(default=None)

    @field_validator("api_token", "api_token_file", "query_templates_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "dry_run_answer", "query_preset", mode="before")
    @classmethod
    def _normalise_case(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if value.lower() in {"debug", "info", "warning", "error"} else value

    @field_validator("prometheus_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as http://prometheus:9090")
        return value

    @field_validator("analysis_window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        value = value.strip()
        if prometheus_duration_seconds(value) < 1:
            raise ValueError("analysis_window must be at least 1s")
        return value

    @field_validator("query_templates_file")
    @classmethod
    def _check_templates_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if not math.isfinite(self.slo_latency):
            raise ValueError("slo_latency must be a finite number")
        for prefix, build in (
            (_GUARDRAIL_PREFIX, self.guardrails),
            ("tolerance_", self.tolerance),
            ("shield_", self.shield),
        ):
            try:
                build()
            except ValidationError as exc:  # name the variable, not the config type's field
                problems = "; ".join(
                    f"{prefix}{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(problems) from None
        token = self.api_token.get_secret_value().strip() if self.api_token else None
        if token and self.api_token_file is not None:
            raise ValueError("set API_TOKEN or API_TOKEN_FILE, not both")
        if self.api_token_file is not None:
            try:
                token = self.api_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"API_TOKEN_FILE {self.api_token_file}: {exc.strerror}") from exc
            if not token:
                raise ValueError(f"API_TOKEN_FILE {self.api_token_file} is empty")
        self._api_token = token or None
        return self

    @property
    def bearer_token(self) -> str | None:
        """The token callers must present, from API_TOKEN or API_TOKEN_FILE (None: no auth)."""
        return self._api_token

    @property
    def analysis_window_seconds(self) -> float:
        return prometheus_duration_seconds(self.analysis_window)

    def tolerance(self) -> Tolerance:
        return Tolerance.model_validate(
            {name: getattr(self, "tolerance_" + name) for name in Tolerance.model_fields}
        )

    def shield(self) -> ShieldConfig:
        return ShieldConfig.model_validate(
            {name: getattr(self, "shield_" + name) for name in ShieldConfig.model_fields}
        )

    def guardrails(self) -> GuardrailConfig:
        return GuardrailConfig.model_validate(
            {name: getattr(self, _GUARDRAIL_PREFIX + name) for name in GuardrailConfig.model_fields}
        )
