"""The API's request and response models (version 1) and its one error shape.

Argo's ``web`` provider sends every ``jsonBody`` value as a string, so numbers are accepted as
numeric strings. Label values must be valid Kubernetes names / label values: that syntax has
no quote, backslash, brace or space, so a value can never change the meaning of a PromQL query.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from decision_service.actions import Action

# Kubernetes syntax (apimachinery validation): DNS-1123 label, DNS-1123 subdomain,
# DNS-1035 label (Service names) and label values.
DNS1123_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1035_LABEL: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
#: The whitespace a numeric string may have around it: ASCII only, in Python and in the schema.
ASCII_SPACE: Final = " \t\n\r\f\v"
_SPACE: Final = r"[ \t\n\r\f\v]*"
#: A numeric string: ASCII digits, sign, '.' and 'e' (then it must also parse as a number).
NUMERIC_STRING: Final = rf"^{_SPACE}[-+0-9.eE]+{_SPACE}$"
BLANK_STRING: Final = rf"^{_SPACE}$"


def _syntax(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _number(value: Any) -> Any:
    """Numbers and numeric strings (Argo sends strings); never booleans.

    A string must match :data:`NUMERIC_STRING`, the schema's pattern, before ``float()`` sees
    it: ``float()`` alone also takes fullwidth or Arabic-Indic digits, ``1_0`` and Unicode
    spaces, wider than what the API documents.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        if value.strip(ASCII_SPACE).lower().lstrip("+-") in {"nan", "inf", "infinity"}:
            raise ValueError("must be a finite number")
        if not re.fullmatch(NUMERIC_STRING, value):
            raise ValueError(
                "must be a number, or a numeric string of ASCII digits, sign, '.' and 'e'"
            )
        try:
            value = float(value.strip(ASCII_SPACE))
        except ValueError:
            raise ValueError("must be a number (or a numeric string)") from None
    if isinstance(value, int | float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _blank_is_none(value: Any) -> Any:
    """An empty optional arg (``"{{args.service}}"`` left empty) means "not given"."""
    return None if isinstance(value, str) and not value.strip(ASCII_SPACE) else value


def _numeric_schema(minimum: float, maximum: float) -> list[dict[str, Any]]:
    number: dict[str, Any] = {"type": "number", "minimum": minimum, "maximum": maximum}
    return [number, {"type": "string", "pattern": NUMERIC_STRING}]


def _numeric(minimum: float, maximum: float) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": _numeric_schema(minimum, maximum)})


def _optional(*alternatives: dict[str, Any]) -> WithJsonSchema:
    """An optional arg's schema: its values, a blank string (an arg left empty: not given), or
    null. Without the blank, schemathesis rightly found "" accepted though the schema said no."""
    blank = {"type": "string", "pattern": BLANK_STRING}
    return WithJsonSchema({"anyOf": [*alternatives, blank, {"type": "null"}]})


Namespace = Annotated[
    str,
    Field(max_length=63, json_schema_extra={"pattern": DNS1123_LABEL}, examples=["shop"]),
    _syntax(DNS1123_LABEL, "a Kubernetes namespace name (lower-case letters, digits and '-')"),
]
ObjectName = Annotated[
    str,
    Field(max_length=253, json_schema_extra={"pattern": DNS1123_SUBDOMAIN}, examples=["checkout"]),
    _syntax(DNS1123_SUBDOMAIN, "a Kubernetes object name (lower-case letters, digits, '-', '.')"),
]
ServiceName = Annotated[
    str,
    Field(max_length=63, json_schema_extra={"pattern": DNS1035_LABEL}, examples=["checkout"]),
    _syntax(DNS1035_LABEL, "a Kubernetes Service name (lower-case letters, digits and '-')"),
]
PodTemplateHash = Annotated[
    str,
    Field(max_length=63, json_schema_extra={"pattern": LABEL_VALUE}),
    _syntax(
        LABEL_VALUE,
        "a Kubernetes label value (letters, digits, '-', '_', '.'; "
        "starting and ending with a letter or digit)",
    ),
]
Weight = Annotated[float, BeforeValidator(_number), Field(ge=0, le=100), _numeric(0, 100)]
#: The smallest per-request latency SLO, ms. Latency histograms do not resolve less (the
#: demo's first bucket, like the Prometheus client libraries' default, is 5 ms: a quantile
#: inside it is interpolated from 0), and below it every latency feature saturates at 5 SLOs
#: and any canary with twice stable's p95 breaches the hard limit: ``1e-300`` was accepted.
MIN_SLO_LATENCY_MS: Final = 1.0
#: The smallest per-request hard error rate. The hard breach needs ``min_breach_requests`` (20)
#: canary requests in the window, where one error is already 0.1-5 % for windows of 20-1000
#: requests: a lower limit cannot be told from "abort on the first error" (``1e-300`` aborted
#: any canary with one error and a clean stable). Small regressions are the policy's and the
#: regression veto's to judge, not the hard limit's.
MIN_HARD_ERROR_RATE: Final = 0.001

LatencyMs = Annotated[
    float,
    BeforeValidator(_number),
    Field(ge=MIN_SLO_LATENCY_MS, le=3_600_000),
    _numeric(MIN_SLO_LATENCY_MS, 3_600_000),
]
ErrorRate = Annotated[
    float,
    BeforeValidator(_number),
    Field(ge=MIN_HARD_ERROR_RATE, le=1),
    _numeric(MIN_HARD_ERROR_RATE, 1),
]


def _range(low: float, high: float) -> tuple[Any, ...]:
    """The metadata of a number within [low, high] (numeric strings accepted)."""
    return (BeforeValidator(_number), Field(ge=low, le=high), _numeric(low, high))


def _optional_range(low: float, high: float) -> tuple[Any, ...]:
    """The metadata of an optional one (a blank arg means not given)."""
    return (BeforeValidator(_blank_is_none), _optional(*_numeric_schema(low, high)))


#: Per-request tolerance and shield overrides: their bounds are the settings' (see
#: decision_service.tolerance and decision_service.shield).
ToleranceFactor = Annotated[
    Annotated[float, *_range(1.0, 100.0)] | None, *_optional_range(1.0, 100.0)
]
ErrorFloor = Annotated[Annotated[float, *_range(0.0, 0.5)] | None, *_optional_range(0.0, 0.5)]
LatencyFloorMs = Annotated[
    Annotated[float, *_range(0.0, 60_000.0)] | None, *_optional_range(0.0, 60_000.0)
]
Alpha = Annotated[Annotated[float, *_range(0.0001, 0.49)] | None, *_optional_range(0.0001, 0.49)]
#: The most measurements per step a request may announce (Argo's ``count``).
MAX_COUNT: Final = 10_000


def _whole(value: Any) -> Any:
    """A whole number (numeric strings accepted, as Argo sends them): ``"10"`` is 10."""
    value = _number(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        value = int(value)
    return value


Count = Annotated[
    Annotated[int, BeforeValidator(_whole), Field(ge=1, le=MAX_COUNT), _numeric(1, MAX_COUNT)]
    | None,
    *_optional_range(1, MAX_COUNT),
]


#: A valid request, as Argo's ``jsonBody`` sends it (every value a string). The two hashes
#: differ: equal ones are a 422 (no canary), so an example with one value for both was one too.
EXAMPLE_REQUEST: Final[dict[str, JsonValue]] = {
    "namespace": "shop",
    "rollout": "checkout",
    "canary_hash": "6d4f8c9b7",
    "stable_hash": "5c8b7d6f4",
    "step_weight": "20",
    "service": "checkout",
    "slo_latency_ms": "200",
    "hard_error_rate": "0.25",
    "tolerance_error_factor": "1.2",
    "tolerance_error_floor": "0.001",
    "tolerance_latency_factor": "1.2",
    "tolerance_latency_floor_ms": "5",
    "shield_alpha_promote": "0.01",
    "shield_alpha_abort": "0.01",
    "count": "10",
}


class DecideRequestV1(BaseModel):
    """``POST /v1/decide``: which canary, at which step (Argo's ``jsonBody``)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [EXAMPLE_REQUEST]}
    )

    namespace: Namespace = Field(description="The Rollout's namespace.")
    rollout: ObjectName = Field(description="The Rollout's name.")
    canary_hash: PodTemplateHash = Field(
        description="The canary's pod-template hash (valueFrom.podTemplateHashValue: Latest).",
        examples=[EXAMPLE_REQUEST["canary_hash"]],
    )
    stable_hash: PodTemplateHash = Field(
        description="The stable version's pod-template hash (podTemplateHashValue: Stable); "
        "must differ from canary_hash.",
        examples=[EXAMPLE_REQUEST["stable_hash"]],
    )
    step_weight: Weight = Field(
        description="The canary's traffic weight at this step, 0-100.",
        examples=[EXAMPLE_REQUEST["step_weight"]],
    )
    service: Annotated[
        ServiceName | None,
        BeforeValidator(_blank_is_none),
        _optional({"type": "string", "maxLength": 63, "pattern": DNS1035_LABEL}),
    ] = Field(
        None,
        description="Service name for presets that select by Service (default: rollout).",
        examples=[EXAMPLE_REQUEST["service"]],
    )
    slo_latency_ms: Annotated[
        LatencyMs | None,
        BeforeValidator(_blank_is_none),
        _optional(*_numeric_schema(MIN_SLO_LATENCY_MS, 3_600_000)),
    ] = Field(
        None,
        description="Latency SLO for this rollout, ms, 1 to 3,600,000 (default: SLO_LATENCY).",
        examples=[EXAMPLE_REQUEST["slo_latency_ms"]],
    )
    hard_error_rate: Annotated[
        ErrorRate | None,
        BeforeValidator(_blank_is_none),
        _optional(*_numeric_schema(MIN_HARD_ERROR_RATE, 1)),
    ] = Field(
        None,
        description="Error rate that aborts this rollout, 0.001 to 1 "
        "(default: GUARDRAIL_HARD_ERROR_RATE).",
        examples=[EXAMPLE_REQUEST["hard_error_rate"]],
    )

    tolerance_error_factor: ToleranceFactor = Field(
        None,
        description="Canary error rate allowed, x stable's, 1 to 100 (default: "
        "TOLERANCE_ERROR_FACTOR).",
        examples=[EXAMPLE_REQUEST["tolerance_error_factor"]],
    )
    tolerance_error_floor: ErrorFloor = Field(
        None,
        description="Absolute error-rate excess that never counts, 0 to 0.5 (default: "
        "TOLERANCE_ERROR_FLOOR).",
        examples=[EXAMPLE_REQUEST["tolerance_error_floor"]],
    )
    tolerance_latency_factor: ToleranceFactor = Field(
        None,
        description="Canary p95/p50 allowed, x stable's, 1 to 100 (default: "
        "TOLERANCE_LATENCY_FACTOR).",
        examples=[EXAMPLE_REQUEST["tolerance_latency_factor"]],
    )
    tolerance_latency_floor_ms: LatencyFloorMs = Field(
        None,
        description="Absolute latency excess, ms, that never counts, 0 to 60,000 (default: "
        "TOLERANCE_LATENCY_FLOOR_MS).",
        examples=[EXAMPLE_REQUEST["tolerance_latency_floor_ms"]],
    )
    shield_alpha_promote: Alpha = Field(
        None,
        description="Chance the shield lets a canary beyond the indifference zone complete, "
        "0.0001 to 0.49 (default: SHIELD_ALPHA_PROMOTE).",
        examples=[EXAMPLE_REQUEST["shield_alpha_promote"]],
    )
    shield_alpha_abort: Alpha = Field(
        None,
        description="Chance the shield lets a canary within the tolerance be aborted, "
        "0.0001 to 0.49 (default: SHIELD_ALPHA_ABORT).",
        examples=[EXAMPLE_REQUEST["shield_alpha_abort"]],
    )

    count: Count = Field(
        None,
        description="Measurements per step: the template's count (after that many holds the "
        "rollout pauses), 1 to 10,000. At the last one the shield may allow an abort on a "
        "one-time test of the step's windows; not given, that look never happens.",
        examples=[EXAMPLE_REQUEST["count"]],
    )

    def tolerance_overrides(self) -> dict[str, float]:
        """The tolerance fields this request sets (names as in Tolerance)."""
        values = {
            "error_factor": self.tolerance_error_factor,
            "error_floor": self.tolerance_error_floor,
            "latency_factor": self.tolerance_latency_factor,
            "latency_floor_ms": self.tolerance_latency_floor_ms,
        }
        return {k: v for k, v in values.items() if v is not None}

    def shield_overrides(self) -> dict[str, float]:
        """The shield fields this request sets (names as in ShieldConfig)."""
        values = {
            "alpha_promote": self.shield_alpha_promote,
            "alpha_abort": self.shield_alpha_abort,
        }
        return {k: v for k, v in values.items() if v is not None}

    @model_validator(mode="after")
    def _distinct_versions(self) -> DecideRequestV1:
        if self.canary_hash == self.stable_hash:
            raise ValueError(
                "canary_hash and stable_hash are equal: there is no canary to analyse "
                "(check the template's podTemplateHashValue args)"
            )
        return self


class PolicyV1(BaseModel):
    model: str = Field(description="<model name>@<sha256 prefix> of the ONNX policy.")
    q_values: dict[str, float] | None = Field(
        description="The policy's Q-value per action; null when it did not run (no data)."
    )


class DecisionV1(BaseModel):
    """The answer (Argo reads ``result.decision``)."""

    decision: Action
    reason: str = Field(description="One human sentence.")
    guardrail: str | None = Field(
        description="Which override set the decision (no_data, hard_slo_breach, "
        "insufficient_evidence, regression_veto, shield, step_count, dry_run), or null when "
        "the policy's choice stands."
    )
    policy: PolicyV1
    observation: dict[str, float] | None = Field(
        description="The named observation the policy saw; null when it could not be built."
    )
    dry_run: bool


class ModelV1(BaseModel):
    """``GET /v1/model``."""

    model: str
    name: str
    sha256: str
    path: str
    feature_spec_version: str
    feature_names: list[str]
    action_names: list[str]
    training_config_sha256: str


class HealthV1(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class ErrorDetailV1(BaseModel):
    field: str
    problem: str


class ErrorV1(BaseModel):
    """Every error answer (401, 404, 405, 422, 503, 500) has this shape."""

    error: str = Field(description="Machine-readable code, e.g. invalid_request.")
    message: str = Field(description="What went wrong, in one or two sentences.")
    details: list[ErrorDetailV1] | None = None
