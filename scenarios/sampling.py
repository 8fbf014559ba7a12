"""One draw of a scenario, and the weather it makes: the numbers the simulator and the demo use.

:class:`EpisodeParameters` draws every ranged value of a :class:`~scenarios.model.Scenario` once
(per episode, or per live demo run); :class:`Conditions` draws the per-interval weather (canary
spikes, shared incidents) from them. The simulator (``training.simulator``) and the demo apps
(``demo_apps.app``) both use these, so a scenario means the same thing in both.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

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
    #: Intra-scrape correlation of errors (0: independent, binomial; see ``error_dispersion``).
    error_dispersion: float = 0.0


@dataclass(frozen=True, slots=True)
class ScaleUp:
    """A weight increase: new canary pods, ``new_share`` of the canary, started at that age."""

    age_minutes: float
    new_share: float


@dataclass(frozen=True, slots=True)
class EpisodeParameters:
    """One draw of a scenario: the numbers an episode (or a live demo run) uses.

    The fields after ``incident_latency_multiplier`` are the effects added later (traffic
    profile, dispersion, tail-only latency, cold start, load dependence, stable-only incidents);
    their defaults mean "no such effect", and a scenario without them draws exactly the random
    numbers it drew before they existed.
    """

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
    traffic_profile: tuple[tuple[float, float], ...] = ()
    stable_error_dispersion: float = 0.0
    canary_error_dispersion: float = 0.0
    spread_multiplier: float = 1.0
    cold_start_minutes: float = 0.0
    cold_start_error_rate: float = 0.0
    cold_start_latency_multiplier: float = 1.0
    cold_start_after_scale_up: bool = False
    load_from_weight: float = 100.0
    load_error_rate: float = 0.0
    load_latency_multiplier: float = 1.0
    stable_incident_probability: float = 0.0
    stable_incident_error_rate: float = 0.0
    stable_incident_latency_multiplier: float = 1.0

    @classmethod
    def draw(cls, scenario: Scenario, rng: np.random.Generator) -> EpisodeParameters:
        s, c, i = scenario.stable, scenario.canary, scenario.shared_incidents
        base = cls(
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
        # The later effects, drawn after the original fields (scalars consume no randomness).
        extra: dict[str, Any] = {
            "traffic_profile": tuple(
                (point.minute, draw(point.factor, rng)) for point in scenario.traffic.profile
            ),
            "stable_error_dispersion": draw(s.error_dispersion, rng),
            "spread_multiplier": draw(c.latency_spread_multiplier, rng),
        }
        extra["canary_error_dispersion"] = (
            extra["stable_error_dispersion"]
            if c.error_dispersion is None
            else draw(c.error_dispersion, rng)
        )
        if c.cold_start is not None:
            extra |= {
                "cold_start_minutes": draw(c.cold_start.minutes, rng),
                "cold_start_error_rate": draw(c.cold_start.error_rate, rng),
                "cold_start_latency_multiplier": draw(c.cold_start.latency_multiplier, rng),
                "cold_start_after_scale_up": c.cold_start.after_scale_up,
            }
        if c.load_dependent is not None:
            extra |= {
                "load_from_weight": draw(c.load_dependent.from_weight, rng),
                "load_error_rate": draw(c.load_dependent.error_rate, rng),
                "load_latency_multiplier": draw(c.load_dependent.latency_multiplier, rng),
            }
        si = scenario.stable_incidents
        extra |= {
            "stable_incident_probability": draw(si.probability, rng),
            "stable_incident_error_rate": draw(si.error_rate, rng),
            "stable_incident_latency_multiplier": draw(si.latency_multiplier, rng),
        }
        return replace(base, **extra)

    @property
    def has_weather(self) -> bool:
        """Whether anything here changes from interval to interval at random."""
        return (
            self.spike_probability > 0
            or self.incident_probability > 0
            or self.stable_incident_probability > 0
        )

    def rate_factor(self, minutes: float) -> float:
        """The traffic profile at ``minutes`` of the canary's life (1 without a profile)."""
        points = self.traffic_profile
        if not points:
            return 1.0
        if minutes <= points[0][0]:
            return points[0][1]
        for (m0, f0), (m1, f1) in pairwise(points):
            if minutes <= m1:
                return f0 + (f1 - f0) * (minutes - m0) / (m1 - m0)
        return points[-1][1]

    def stable(self, incident: bool, stable_incident: bool = False) -> VersionBehaviour:
        error = self.stable_error_rate + (self.incident_error_rate if incident else 0.0)
        latency = self.stable_p50_ms * (self.incident_latency_multiplier if incident else 1.0)
        if stable_incident:
            error += self.stable_incident_error_rate
            latency *= self.stable_incident_latency_multiplier
        return VersionBehaviour(
            min(error, 1.0), latency, self.latency_spread, self.stable_error_dispersion
        )

    def cold_share(self, age_minutes: float, scale_ups: Sequence[ScaleUp] = ()) -> float:
        """The share of the canary's requests served cold at ``age_minutes`` (0 … 1).

        A cold start fades linearly over ``cold_start_minutes``: all of the canary at its start,
        and, with ``after_scale_up``, each weight increase's new pods for their share."""
        minutes = self.cold_start_minutes
        if minutes <= 0:
            return 0.0
        share = max(0.0, 1.0 - age_minutes / minutes)
        if self.cold_start_after_scale_up:
            for scale_up in scale_ups:
                since = age_minutes - scale_up.age_minutes
                if 0.0 <= since < minutes:
                    share += scale_up.new_share * (1.0 - since / minutes)
        return min(share, 1.0)

    def load_share(self, weight: float) -> float:
        """How far the load-dependent regression has grown at ``weight`` percent (0 … 1)."""
        if weight <= self.load_from_weight:
            return 0.0
        return min(1.0, (weight - self.load_from_weight) / (100.0 - self.load_from_weight))

    def canary(
        self,
        age_minutes: float,
        spike: bool,
        incident: bool,
        *,
        weight: float = 100.0,
        scale_ups: Sequence[ScaleUp] = (),
    ) -> VersionBehaviour:
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
        if self.cold_start_minutes > 0:
            cold = self.cold_share(age_minutes, scale_ups)
            error += cold * self.cold_start_error_rate
            latency *= 1.0 + cold * (self.cold_start_latency_multiplier - 1.0)
        if self.load_error_rate > 0 or self.load_latency_multiplier != 1.0:
            load = self.load_share(weight)
            error += load * self.load_error_rate
            latency *= 1.0 + load * (self.load_latency_multiplier - 1.0)
        if spike:
            error += self.spike_error_rate
            latency *= self.spike_latency_multiplier
        if incident:
            error += self.incident_error_rate
            latency *= self.incident_latency_multiplier
        return VersionBehaviour(
            min(error, 1.0),
            latency,
            self.latency_spread * self.spread_multiplier,
            self.canary_error_dispersion,
        )


class Conditions:
    """The random state of the world per interval: canary spikes, shared and stable incidents.

    Used by the simulator once per analysis interval and by the demo apps once per wall-clock
    interval, so both draw the same kind of weather from the same parameters.
    """

    def __init__(
        self, params: EpisodeParameters, scenario: Scenario, rng: np.random.Generator
    ) -> None:
        self._params = params
        self._duration = scenario.shared_incidents.duration_intervals
        self._stable_duration = scenario.stable_incidents.duration_intervals
        self._rng = rng
        self._incident_left = 0
        self._stable_incident_left = 0
        self.spike = False
        self.incident = False
        self.stable_incident = False

    def copy(self, rng: np.random.Generator) -> Conditions:
        """The same weather state, drawing on from ``rng`` (a copy of this one's generator)."""
        other = copy.copy(self)
        other._rng = rng
        return other

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
        if self._stable_incident_left > 0:
            self._stable_incident_left -= 1
            self.stable_incident = True
        elif (
            p.stable_incident_probability > 0 and self._rng.random() < p.stable_incident_probability
        ):
            duration = round(draw(self._stable_duration, self._rng))
            self._stable_incident_left = max(1, duration) - 1
            self.stable_incident = True
        else:
            self.stable_incident = False
