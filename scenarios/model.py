"""Scenario files: how a canary behaves relative to stable over time (docs/architecture.md).

One YAML format drives the gymnasium simulator (``training``) and the live demo apps
(``demo_apps``), so a scenario means the same thing in both. A file looks like::

    name: small_error_regression
    truth: bad                      # ground truth: is this canary fit to ship?
    description: one sentence
    traffic:
      requests_per_second: [20, 120]  # total over both versions; drawn once per episode
    stable:
      error_rate: 0.005
      latency_p50_ms: [40, 80]
      latency_spread: 0.5           # sigma of log(latency): p95 = p50 * exp(1.645 * spread)
    canary:
      error_multiplier: [1.8, 2.5]  # canary error rate = stable's * multiplier + additive
      error_additive: 0.0
      latency_multiplier: 1.0       # canary p50 = stable's * multiplier + additive
      latency_additive_ms: 0.0
      drift:                        # degradation that grows with the canary's age
        starts_after_minutes: 0
        error_rate_per_minute: 0.0
        latency_ms_per_minute: 0.0
      spikes:                       # transient, canary-only (flaky)
        probability: 0.0            # per analysis interval
        error_rate: 0.0             # added while a spike lasts
        latency_multiplier: 1.0
    shared_incidents:               # hit stable and canary together (noisy neighbour)
      probability: 0.0              # chance per interval that one starts
      duration_intervals: [1, 3]
      error_rate: 0.0
      latency_multiplier: 1.0

Every number may be a scalar or a ``[low, high]`` range, drawn uniformly once per episode (or
per incident). Omitted sections mean "no such effect". :func:`load_scenarios` takes a file or a
folder and rejects a bad file with a message naming the file and the field.
:data:`SCENARIO_JSON_SCHEMA` (also shipped as ``scenario.schema.json`` beside the files) is the same
contract for editors and other tools.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

Truth = Literal["good", "bad"]


def _check_range(value: float | tuple[float, float]) -> float | tuple[float, float]:
    if isinstance(value, tuple):
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("range bounds must be finite numbers")
        if low > high:
            raise ValueError(f"range [{low}, {high}] has low > high")
    elif not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


#: A number, or a ``[low, high]`` range drawn uniformly.
Value = Annotated[float | tuple[float, float], AfterValidator(_check_range)]


def _bounded(low: float, high: float | None = None) -> AfterValidator:
    def check(value: float | tuple[float, float]) -> float | tuple[float, float]:
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if v < low or (high is not None and v > high):
                bound = f"within {low}..{high}" if high is not None else f">= {low}"
                raise ValueError(f"{v} is not {bound}")
        return value

    return AfterValidator(check)


Probability = Annotated[Value, _bounded(0.0, 1.0)]
NonNegative = Annotated[Value, _bounded(0.0)]
Positive = Annotated[Value, _bounded(1e-9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Strict):
    requests_per_second: Positive = Field(
        description="Total requests per second over both versions, drawn once per episode."
    )


class Stable(_Strict):
    error_rate: Probability = Field(description="Stable's error rate (0..1).")
    latency_p50_ms: Positive = Field(description="Stable's median latency in milliseconds.")
    latency_spread: Positive = Field(
        0.5, description="Sigma of log(latency); p95 = p50 * exp(1.645 * spread)."
    )


class Drift(_Strict):
    starts_after_minutes: NonNegative = Field(
        default=0.0, description="Canary age when drift begins."
    )
    error_rate_per_minute: NonNegative = Field(
        default=0.0, description="Error rate added per minute."
    )
    latency_ms_per_minute: NonNegative = Field(
        default=0.0, description="Median ms added per minute."
    )


class Spikes(_Strict):
    probability: Probability = Field(
        default=0.0, description="Chance per interval of a canary spike."
    )
    error_rate: Probability = Field(default=0.0, description="Error rate added during a spike.")
    latency_multiplier: Positive = Field(default=1.0, description="Latency factor during a spike.")


class SharedIncidents(_Strict):
    probability: Probability = Field(
        default=0.0, description="Chance per interval that one starts."
    )
    duration_intervals: Positive = Field(
        default=2.0, description="Length of an incident, intervals."
    )
    error_rate: Probability = Field(default=0.0, description="Error rate added to both versions.")
    latency_multiplier: Positive = Field(
        default=1.0, description="Latency factor on both versions."
    )


class Canary(_Strict):
    error_multiplier: NonNegative = Field(
        default=1.0, description="Canary error = stable's * this + add."
    )
    error_additive: Probability = Field(
        default=0.0, description="Added to the canary's error rate."
    )
    latency_multiplier: Positive = Field(
        default=1.0, description="Canary p50 = stable's * this + add."
    )
    latency_additive_ms: NonNegative = Field(
        default=0.0, description="Added to the canary's p50, ms."
    )
    drift: Drift = Field(default_factory=Drift)
    spikes: Spikes = Field(default_factory=Spikes)


class Scenario(_Strict):
    """One scenario file (see the module docstring)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=63)
    truth: Truth = Field(description="Ground truth: 'good' canaries should ship, 'bad' not.")
    description: str = ""
    traffic: Traffic
    stable: Stable
    canary: Canary = Field(default_factory=Canary)
    shared_incidents: SharedIncidents = Field(default_factory=SharedIncidents)


SCENARIO_JSON_SCHEMA: dict[str, Any] = Scenario.model_json_schema()


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


def _format_validation(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: field '{field}': {item['msg']}")
    return "\n".join(lines)


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one YAML scenario file."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{file}: field '(top level)': a scenario must be a YAML mapping")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(file, exc)) from None


def scenario_files(path: str | Path) -> list[Path]:
    """The scenario files at ``path``: the file itself, or a folder's ``*.yaml``/``*.yml``
    (not recursive, sorted by name)."""
    target = Path(path)
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())
        if not files:
            raise ScenarioError(f"{target}: no *.yaml scenario files in this folder")
        return files
    if not target.exists():
        raise ScenarioError(f"{target}: no such file or folder")
    return [target]


def load_scenarios(paths: str | Path | Iterable[str | Path]) -> list[Scenario]:
    """Load every scenario at the given file(s) or folder(s); names must be unique."""
    if isinstance(paths, str | Path):
        paths = [paths]
    scenarios: list[Scenario] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for file in scenario_files(path):
            scenario = load_scenario(file)
            if scenario.name in seen:
                raise ScenarioError(
                    f"{file}: field 'name': '{scenario.name}' is also used by {seen[scenario.name]}"
                )
            seen[scenario.name] = file
            scenarios.append(scenario)
    return scenarios


#: The shipped library: this package's YAML files, read as package data.
LIBRARY_DIR: Path = Path(str(resources.files("scenarios")))


def resolve_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``healthy``) or a scenario file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return load_scenario(candidate)
    for file in scenario_files(LIBRARY_DIR):
        if file.stem == name_or_path:
            return load_scenario(file)
    raise ScenarioError(f"{name_or_path}: no shipped scenario of that name in {LIBRARY_DIR}")
