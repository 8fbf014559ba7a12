"""Scenario files: how a canary behaves relative to stable over time (DESIGN §6).

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
:data:`SCENARIO_JSON_SCHEMA` (also shipped as ``scenarios/scenario.schema.json``) is the same
contract for editors and other tools.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
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


LIBRARY_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def resolve_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``healthy``) or a scenario file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return load_scenario(candidate)
    for file in scenario_files(LIBRARY_DIR):
        if file.stem == name_or_path:
            return load_scenario(file)
    raise ScenarioError(f"{name_or_path}: no shipped scenario of that name in {LIBRARY_DIR}")


# --------------------------------------------------------------------------- behaviour model


def draw(value: float | tuple[float, float], rng: np.random.Generator) -> float:
    """One draw of a scenario value: the number itself, or uniform within its range."""
    if isinstance(value, tuple):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


@dataclass(frozen=True, slots=True)
class VersionBehaviour:
    """How one version serves requests during one interval."""

    error_rate: float
    latency_p50_ms: float
    latency_spread: float


@dataclass(frozen=True, slots=True)
class EpisodeParameters:
    """One draw of a scenario: the numbers an episode (or a live demo run) uses."""

    requests_per_second: float
    stable_error_rate: float
    stable_p50_ms: float
    latency_spread: float
    error_multiplier: float
    error_additive: float
    latency_multiplier: float
    latency_additive_ms: float
    drift_starts_after_minutes: float
    drift_error_per_minute: float
    drift_latency_ms_per_minute: float
    spike_probability: float
    spike_error_rate: float
    spike_latency_multiplier: float
    incident_probability: float
    incident_error_rate: float
    incident_latency_multiplier: float

    @classmethod
    def draw(cls, scenario: Scenario, rng: np.random.Generator) -> EpisodeParameters:
        s, c, i = scenario.stable, scenario.canary, scenario.shared_incidents
        return cls(
            requests_per_second=draw(scenario.traffic.requests_per_second, rng),
            stable_error_rate=draw(s.error_rate, rng),
            stable_p50_ms=draw(s.latency_p50_ms, rng),
            latency_spread=draw(s.latency_spread, rng),
            error_multiplier=draw(c.error_multiplier, rng),
            error_additive=draw(c.error_additive, rng),
            latency_multiplier=draw(c.latency_multiplier, rng),
            latency_additive_ms=draw(c.latency_additive_ms, rng),
            drift_starts_after_minutes=draw(c.drift.starts_after_minutes, rng),
            drift_error_per_minute=draw(c.drift.error_rate_per_minute, rng),
            drift_latency_ms_per_minute=draw(c.drift.latency_ms_per_minute, rng),
            spike_probability=draw(c.spikes.probability, rng),
            spike_error_rate=draw(c.spikes.error_rate, rng),
            spike_latency_multiplier=draw(c.spikes.latency_multiplier, rng),
            incident_probability=draw(i.probability, rng),
            incident_error_rate=draw(i.error_rate, rng),
            incident_latency_multiplier=draw(i.latency_multiplier, rng),
        )

    def stable(self, incident: bool) -> VersionBehaviour:
        error = self.stable_error_rate + (self.incident_error_rate if incident else 0.0)
        latency = self.stable_p50_ms * (self.incident_latency_multiplier if incident else 1.0)
        return VersionBehaviour(min(error, 1.0), latency, self.latency_spread)

    def canary(self, age_minutes: float, spike: bool, incident: bool) -> VersionBehaviour:
        drifting = max(0.0, age_minutes - self.drift_starts_after_minutes)
        error = (
            self.stable_error_rate * self.error_multiplier
            + self.error_additive
            + self.drift_error_per_minute * drifting
        )
        latency = (
            self.stable_p50_ms * self.latency_multiplier
            + self.latency_additive_ms
            + self.drift_latency_ms_per_minute * drifting
        )
        if spike:
            error += self.spike_error_rate
            latency *= self.spike_latency_multiplier
        if incident:
            error += self.incident_error_rate
            latency *= self.incident_latency_multiplier
        return VersionBehaviour(min(error, 1.0), latency, self.latency_spread)


class Conditions:
    """The random state of the world per interval: canary spikes and shared incidents.

    Used by the simulator once per analysis interval and by the demo apps once per wall-clock
    interval, so both draw the same kind of weather from the same parameters.
    """

    def __init__(
        self, params: EpisodeParameters, scenario: Scenario, rng: np.random.Generator
    ) -> None:
        self._params = params
        self._duration = scenario.shared_incidents.duration_intervals
        self._rng = rng
        self._incident_left = 0
        self.spike = False
        self.incident = False

    def advance(self) -> None:
        """Draw the next interval's spike and incident state."""
        p = self._params
        self.spike = p.spike_probability > 0 and bool(self._rng.random() < p.spike_probability)
        if self._incident_left > 0:
            self._incident_left -= 1
            self.incident = True
        elif p.incident_probability > 0 and self._rng.random() < p.incident_probability:
            self._incident_left = max(1, round(draw(self._duration, self._rng))) - 1
            self.incident = True
        else:
            self.incident = False
