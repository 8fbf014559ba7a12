"""Scenario files: how a canary behaves relative to stable over time (docs/architecture.md).

One YAML format drives the gymnasium simulator (``training``) and the live demo apps
(``demo_apps``), so a scenario means the same thing in both. A file looks like::

    name: small_error_regression
    truth: bad                      # the author's intent: is this canary fit to ship?
    description: one sentence
    traffic:
      requests_per_second: [20, 120]  # total over both versions; drawn once per episode
      profile:                      # optional: the rate over the canary's life, x factor
        - {minute: 0, factor: 1.0}  # (piecewise linear between points; dips, ramps, slopes)
        - {minute: 3, factor: [0.2, 0.5]}
    stable:
      error_rate: 0.005
      latency_p50_ms: [40, 80]
      latency_spread: 0.5           # sigma of log(latency): p95 = p50 * exp(1.645 * spread)
      error_dispersion: 0.0         # errors in clumps: beta-binomial per scrape, intra-scrape
                                    # correlation 0 (binomial) .. <1; both versions
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
      latency_spread_multiplier: 1.0  # tail-only change: canary sigma = stable's x this
      cold_start:                   # elevated errors/latency right after the canary starts,
        minutes: 2                  # fading linearly to nothing over this many minutes
        error_rate: 0.05            # added at the start
        latency_multiplier: 2.0     # at the start
        after_scale_up: false       # also for the new pods' share after each weight increase
      load_dependent:               # a bug that shows only under load: from this weight on,
        from_weight: 40             # grows linearly to these values at 100 %
        error_rate: 0.03
        latency_multiplier: 1.5
      error_dispersion: null        # the canary's own clumping (default: stable's)
    shared_incidents:               # hit stable and canary together (noisy neighbour)
      probability: 0.0              # chance per interval that one starts
      duration_intervals: [1, 3]
      error_rate: 0.0
      latency_multiplier: 1.0
    stable_incidents:               # stable alone degrades; the canary is not at fault
      probability: 0.0
      duration_intervals: [1, 3]
      error_rate: 0.0
      latency_multiplier: 1.0

Every number may be a scalar or a ``[low, high]`` range, drawn uniformly once per episode (or
per incident). Omitted sections mean "no such effect". ``truth`` is what the author meant; the
truth an episode is scored on is computed from its draw against the user's tolerance
(:mod:`scenarios.truth`). :func:`load_scenarios` takes a file or a
folder and rejects a bad file with a message naming the file and the field.
:data:`SCENARIO_JSON_SCHEMA` (also shipped as ``scenario.schema.json`` beside the files) is the same
contract for editors and other tools.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from importlib import resources
from itertools import pairwise
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


def _within(
    value: float | tuple[float, float], low: float, high: float | None
) -> float | tuple[float, float]:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v < low or (high is not None and v > high):
            bound = f"within {low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"{v} is not {bound}")
    return value


def _bounded(low: float, high: float | None = None) -> AfterValidator:
    return AfterValidator(lambda value: _within(value, low, high))


def _bounded_optional(low: float, high: float) -> AfterValidator:
    return AfterValidator(lambda value: None if value is None else _within(value, low, high))


Probability = Annotated[Value, _bounded(0.0, 1.0)]
NonNegative = Annotated[Value, _bounded(0.0)]
Positive = Annotated[Value, _bounded(1e-9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfilePoint(_Strict):
    minute: float = Field(ge=0, description="Minutes since the canary started.")
    factor: Annotated[Value, _bounded(0.0)] = Field(
        description="Multiplier of requests_per_second at that minute."
    )


def _increasing(points: tuple[ProfilePoint, ...]) -> tuple[ProfilePoint, ...]:
    minutes = [p.minute for p in points]
    if any(b <= a for a, b in pairwise(minutes)):
        raise ValueError(f"profile minutes must increase, got {minutes}")
    return points


class Traffic(_Strict):
    requests_per_second: Positive = Field(
        description="Total requests per second over both versions, drawn once per episode."
    )
    profile: Annotated[tuple[ProfilePoint, ...], AfterValidator(_increasing)] = Field(
        default=(),
        description="The rate over the canary's life: requests_per_second x factor, piecewise "
        "linear between points, flat before the first and after the last.",
    )


class Stable(_Strict):
    error_rate: Probability = Field(description="Stable's error rate (0..1).")
    latency_p50_ms: Positive = Field(description="Stable's median latency in milliseconds.")
    latency_spread: Positive = Field(
        0.5, description="Sigma of log(latency); p95 = p50 * exp(1.645 * spread)."
    )
    error_dispersion: Annotated[Value, _bounded(0.0, 0.95)] = Field(
        default=0.0,
        description="Errors in clumps: intra-scrape correlation of a beta-binomial (0: binomial). "
        "Applies to both versions unless the canary sets its own.",
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


class ColdStart(_Strict):
    minutes: Positive = Field(default=2.0, description="How long the cold start lasts (fading).")
    error_rate: Probability = Field(default=0.0, description="Error rate added at the start.")
    latency_multiplier: Annotated[Value, _bounded(1.0)] = Field(
        default=1.0, description="Latency factor at the start."
    )
    after_scale_up: bool = Field(
        default=False,
        description="Also after each weight increase, for the new pods' share of the canary.",
    )


class LoadDependent(_Strict):
    from_weight: Annotated[Value, _bounded(0.0, 99.0)] = Field(
        default=40.0, description="Canary weight (%) at which the bug starts to show."
    )
    error_rate: Probability = Field(default=0.0, description="Error rate added at 100 %.")
    latency_multiplier: Annotated[Value, _bounded(1.0)] = Field(
        default=1.0, description="Latency factor at 100 %."
    )


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
    latency_spread_multiplier: Positive = Field(
        default=1.0, description="Tail-only change: the canary's sigma = stable's x this."
    )
    cold_start: ColdStart | None = Field(default=None, description="Cold start after it starts.")
    load_dependent: LoadDependent | None = Field(
        default=None, description="A regression that grows with the canary's traffic share."
    )
    error_dispersion: Annotated[Value | None, _bounded_optional(0.0, 0.95)] = Field(
        default=None, description="The canary's own error clumping (default: stable's)."
    )


class Scenario(_Strict):
    """One scenario file (see the module docstring)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=63)
    truth: Truth = Field(description="Ground truth: 'good' canaries should ship, 'bad' not.")
    description: str = ""
    traffic: Traffic
    stable: Stable
    canary: Canary = Field(default_factory=Canary)
    shared_incidents: SharedIncidents = Field(default_factory=SharedIncidents)
    stable_incidents: SharedIncidents = Field(
        default_factory=SharedIncidents,
        description="Incidents on stable alone (same fields as shared_incidents).",
    )


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
