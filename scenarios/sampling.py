"""One draw of a scenario, and the weather it makes: the numbers the simulator and the demo use.

:class:`EpisodeParameters` draws every ranged value of a :class:`~scenarios.model.Scenario` once
(per episode, or per live demo run); :class:`Conditions` draws the per-interval weather (canary
spikes, shared incidents) from them. The simulator (``training.simulator``) and the demo apps
(``demo_apps.app``) both use these, so a scenario means the same thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.model import Scenario


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
