"""How one demo app version serves a request at a given moment, from a scenario file.

The live apps use the same behaviour model as the simulator (:mod:`scenarios`):
one :class:`~scenarios.EpisodeParameters` draw per run, and
:class:`~scenarios.Conditions` (spikes, shared incidents) advanced once per
analysis interval. Wall-clock time is mapped to scenario time by ``time_scale`` (scenario seconds
per wall second), so a demo that shortens the 30 s analysis interval to 3 s (``time_scale=10``)
also lets a degrading canary drift ten times faster: one scenario minute per 6 wall seconds.

Both apps of a run take the same ``seed`` and the same clock start, so they draw the same episode
parameters (the canary's error and latency are relative to *this* stable's) and see the same
shared incidents in the same intervals; only their per-request randomness differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from scenarios import (
    Conditions,
    EpisodeParameters,
    Scenario,
    VersionBehaviour,
)

Track = Literal["stable", "canary"]

#: A request never takes longer than this (the histogram's last finite bound), so a far tail
#: draw cannot stall the demo.
MAX_LATENCY_SECONDS = 10.0

#: The simulator's analysis interval (``training.env.EnvConfig.interval_seconds``), in scenario
#: seconds: spikes and incidents are drawn once per such interval.
DEFAULT_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What one request does: fail (HTTP 500) or not, and how long it takes."""

    error: bool
    latency_seconds: float


def live_parameters(scenario: Scenario, seed: int) -> EpisodeParameters:
    """The draw a live run with ``seed`` uses (both apps and the load generator agree on it)."""
    return EpisodeParameters.draw(scenario, np.random.default_rng([seed, 0]))


class LiveBehaviour:
    """The behaviour of one version (``track``) over wall-clock time."""

    def __init__(
        self,
        scenario: Scenario,
        track: Track,
        *,
        seed: int,
        started_at: float,
        time_scale: float = 1.0,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale must be a positive number, got {time_scale}")
        if not (math.isfinite(interval_seconds) and interval_seconds > 0):
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds}")
        self.scenario = scenario
        self.track = track
        self.time_scale = time_scale
        self.interval_seconds = interval_seconds
        self.started_at = started_at
        # Parameters and weather come from streams both apps share; requests from their own.
        self.params = live_parameters(scenario, seed)
        self._conditions = Conditions(self.params, scenario, np.random.default_rng([seed, 1]))
        self._intervals_drawn = 0
        self._requests_rng = np.random.default_rng([seed, 2 if track == "stable" else 3])

    def scenario_seconds(self, now: float) -> float:
        """Scenario seconds elapsed since the clock start (the canary's age)."""
        return max(0.0, now - self.started_at) * self.time_scale

    def interval_index(self, now: float) -> int:
        return int(self.scenario_seconds(now) // self.interval_seconds)

    def at(self, now: float) -> VersionBehaviour:
        """Error rate and latency of this version at wall-clock time ``now``."""
        # The simulator advances the weather before every interval, the first one included.
        target = self.interval_index(now) + 1
        while self._intervals_drawn < target:
            self._conditions.advance()
            self._intervals_drawn += 1
        conditions = self._conditions
        if self.track == "stable":
            return self.params.stable(conditions.incident)
        age_minutes = self.scenario_seconds(now) / 60.0
        return self.params.canary(age_minutes, conditions.spike, conditions.incident)

    @property
    def spike(self) -> bool:
        return self._conditions.spike

    @property
    def incident(self) -> bool:
        return self._conditions.incident

    def sample(self, behaviour: VersionBehaviour) -> RequestOutcome:
        """One request: an error with the version's error rate, a log-normal latency."""
        rng = self._requests_rng
        error = bool(rng.random() < behaviour.error_rate)
        latency_ms = behaviour.latency_p50_ms * math.exp(
            behaviour.latency_spread * float(rng.standard_normal())
        )
        return RequestOutcome(error, min(latency_ms / 1000.0, MAX_LATENCY_SECONDS))
