"""How one demo app version serves a request at a given moment, from a scenario file.

The live apps use the same behaviour model as the simulator (:mod:`scenarios`): one
:class:`~scenarios.EpisodeParameters` draw per run, and :class:`~scenarios.Conditions` (canary
spikes, shared and stable-only incidents) advanced once per analysis interval. Wall-clock time
is mapped to scenario time by ``time_scale`` (scenario seconds per wall second), so a demo that
shortens the 30 s analysis interval to 3 s (``time_scale=10``) also lets a degrading canary drift
ten times faster: one scenario minute per 6 wall seconds.

Both apps of a run take the same ``seed`` and the same clock start, so they draw the same episode
parameters (the canary's error and latency are relative to *this* stable's) and see the same
weather in the same intervals; only their per-request randomness differs.

How each effect of the scenario format is served (the simulator's counterpart in brackets,
``training.simulator``):

* **stable-only incidents** — stable's behaviour takes ``Conditions.stable_incident``; the
  canary's never does (``params.stable(incident, stable_incident)``).
* **tail-only latency** — every request's latency is log-normal with the version's
  ``latency_spread``, which for the canary is stable's times ``latency_spread_multiplier``
  (``params.canary``): the median stays, the tail moves.
* **over-dispersed errors** — with ``error_dispersion`` ρ > 0 the error probability is drawn
  from Beta(mean = the version's error rate, intra-scrape correlation ρ) once per *scrape
  period* (``interval_seconds / 6`` scenario seconds, :data:`SCRAPES_PER_INTERVAL`) and used for
  every request of that period, so the period's error count is beta-binomial with variance
  n·p·(1−p)·(1 + (n−1)·ρ), as each simulated scrape is (``_dispersed``). Periods nest in the
  weather's intervals. A change of the canary's weight inside a period draws afresh (a new
  regime, as the simulator draws an interval's earlier and later scrapes apart); slow changes
  inside one (drift, a cold start fading) scale the period's draw by the rate's ratio, which
  keeps its mean on the rate and the clump whole.
* **cold start, load-dependent regressions** — the canary's behaviour is
  ``params.canary(age, ..., weight=w, scale_ups=...)`` with its current traffic share ``w`` and
  the weight increases so far, which it learns as described next. The traffic profile is the
  load generator's (``demo_apps.local.loadgen``), not the app's.

**How the canary knows its traffic share.** Whoever moves the weight tells it:
``PUT /control/weight {"weight": w}`` (:meth:`LiveBehaviour.set_weight`). Locally that is the
load generator, the demo's traffic router, on every ``setWeight`` the driver makes, just before
it shifts the traffic. From those announcements the app derives what the simulator derives
from its weights: the canary *starts* (age 0: drift, cold start) when its weight first goes
above 0, and every increase from a weight above 0 is a scale-up, ``ScaleUp(age, (w − w₀)/w)``,
whose new pods' share is cold (``after_scale_up``).

The alternative was to infer the share from the canary's own request rate over the last scenario
interval against the total rate the load sends. It was not chosen, for what it gets wrong:

* *lag*: a rate over the last interval reaches a new weight one interval late. The Rollout
  pauses one interval after each ``setWeight`` and Argo measures at once, so the first decision
  at every weight would see at most half of the growth of a load-dependent regression that the
  simulator shows in full (the inferred weight ramps over that window), and a scale-up's cold
  pods would be detected late, and only as the ramp allows;
* *noise*: at 5 % of 200 req/s a 3 s interval holds about 30 canary requests (±18 %), so the
  inferred weight, and with it the regression and any detected "scale-up", would flicker with
  Poisson noise and with every stall of the shared machine (a stalled load generator catches up
  in a burst that looks like a weight increase);
* *Kubernetes*: Argo scales the canary's ReplicaSet with the weight, so each pod serves about
  ``total / replicas`` whatever the weight; a pod's own rate does not tell the canary's share
  without the pod count, which is the same kind of outside knowledge as the weight itself.

In a cluster the endpoint is what a controller watching the Rollout
(``status.canary.weights.canary.weight``) would call for each canary pod; none ships. Untold,
the app assumes :data:`ASSUMED_WEIGHT` (100 %: it serves all the traffic, the load-dependent
regression at full strength, no scale-ups) and the canary's age runs from the clock start
(``CLOCK_START``, default the process' start). In a cluster that is still faithful for cold
starts: every pod is a process of its own, started cold when Argo creates it, so the pods a weight
increase adds are cold for their share of the canary's traffic by themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from scenarios import (
    Conditions,
    EpisodeParameters,
    Scenario,
    VersionBehaviour,
)
from scenarios.sampling import ScaleUp

Track = Literal["stable", "canary"]

#: A request never takes longer than this (the histogram's last finite bound), so a far tail
#: draw cannot stall the demo.
MAX_LATENCY_SECONDS = 10.0

#: The simulator's analysis interval (``training.env.EnvConfig.interval_seconds``), in scenario
#: seconds: spikes and incidents are drawn once per such interval.
DEFAULT_INTERVAL_SECONDS = 30.0

#: Scrapes per analysis interval: ``training.simulator.SUB_BUCKETS``, which this image cannot
#: import (``training`` is not in it); a test keeps the two equal. Over-dispersed errors are
#: drawn once per ``interval_seconds / SCRAPES_PER_INTERVAL`` scenario seconds.
SCRAPES_PER_INTERVAL = 6

#: The canary's traffic share (percent) until someone tells it (see the module docstring).
ASSUMED_WEIGHT = 100.0


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What one request does: fail (HTTP 500) or not, and how long it takes."""

    error: bool
    latency_seconds: float


def live_parameters(scenario: Scenario, seed: int) -> EpisodeParameters:
    """The draw a live run with ``seed`` uses (both apps and the load generator agree on it)."""
    return EpisodeParameters.draw(scenario, np.random.default_rng([seed, 0]))


@dataclass(slots=True)
class _PeriodDraw:
    """The error probability drawn for one scrape period, and what it was drawn for."""

    period: int
    regime: int  # the weight announcements so far: a new weight is a new regime
    rate: float
    probability: float


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
        self._dispersion_rng = np.random.default_rng([seed, 4 if track == "stable" else 5])
        self._period_draw: _PeriodDraw | None = None
        #: The traffic share (percent) last announced, or :data:`ASSUMED_WEIGHT`.
        self.weight = ASSUMED_WEIGHT
        #: Whether anyone has announced a weight yet.
        self.weight_announced = False
        self._announcements = 0
        #: Wall time at which the canary's weight first went above 0 (its age's origin).
        self.canary_started_at: float | None = None
        #: Weight increases so far, at the canary's age (new pods: a cold start may follow).
        self.scale_ups: list[ScaleUp] = []

    # -- clocks --------------------------------------------------------------------------

    def scenario_seconds(self, now: float) -> float:
        """Scenario seconds elapsed since the clock start (the weather's clock)."""
        return max(0.0, now - self.started_at) * self.time_scale

    def interval_index(self, now: float) -> int:
        return int(self.scenario_seconds(now) // self.interval_seconds)

    def scrape_period(self, now: float) -> int:
        """Index of the scrape period (``interval_seconds / 6`` scenario seconds) at ``now``."""
        period = self.interval_seconds / SCRAPES_PER_INTERVAL
        return int(self.scenario_seconds(now) // period)

    def canary_age_seconds(self, now: float) -> float:
        """Scenario seconds since the canary started: since its weight first went above 0 if
        announced (the simulator's age 0 is its first interval with traffic), else since the
        clock start."""
        origin = self.started_at if self.canary_started_at is None else self.canary_started_at
        return max(0.0, now - origin) * self.time_scale

    # -- the traffic share ----------------------------------------------------------------

    def set_weight(self, weight: float, now: float) -> None:
        """The canary's traffic share is now ``weight`` percent (see the module docstring).

        The first weight above 0 starts the canary's age; an increase from a weight above 0 is
        a scale-up whose new pods serve ``(weight - previous) / weight`` of the canary's
        requests, recorded as the simulator records it."""
        if not (math.isfinite(weight) and 0.0 <= weight <= 100.0):
            raise ValueError(f"weight must be within 0..100, got {weight}")
        previous = self.weight if self.weight_announced else 0.0
        if weight > 0 and self.canary_started_at is None:
            self.canary_started_at = now
        elif weight > previous > 0:
            age_minutes = self.canary_age_seconds(now) / 60.0
            self.scale_ups.append(ScaleUp(age_minutes, (weight - previous) / weight))
        if weight != previous or not self.weight_announced:
            self._announcements += 1
        self.weight = weight
        self.weight_announced = True

    def control_state(self, now: float) -> dict[str, Any]:
        """What the app knows of its traffic share (``GET /control``)."""
        return {
            "track": self.track,
            "weight": self.weight,
            "weight_announced": self.weight_announced,
            "canary_age_seconds": self.canary_age_seconds(now),
            "scale_ups": [
                {"age_minutes": s.age_minutes, "new_share": s.new_share} for s in self.scale_ups
            ],
        }

    # -- behaviour ------------------------------------------------------------------------

    def at(self, now: float) -> VersionBehaviour:
        """Error rate and latency of this version at wall-clock time ``now``."""
        # The simulator advances the weather before every interval, the first one included.
        target = self.interval_index(now) + 1
        while self._intervals_drawn < target:
            self._conditions.advance()
            self._intervals_drawn += 1
        conditions = self._conditions
        if self.track == "stable":
            return self.params.stable(conditions.incident, conditions.stable_incident)
        return self.params.canary(
            self.canary_age_seconds(now) / 60.0,
            conditions.spike,
            conditions.incident,
            weight=self.weight,
            scale_ups=self.scale_ups,
        )

    @property
    def spike(self) -> bool:
        return self._conditions.spike

    @property
    def incident(self) -> bool:
        return self._conditions.incident

    @property
    def stable_incident(self) -> bool:
        return self._conditions.stable_incident

    def error_probability(self, behaviour: VersionBehaviour, now: float) -> float:
        """The error probability of a request at ``now``: the behaviour's error rate, or with
        ``error_dispersion`` ρ > 0 that rate's Beta draw for the current scrape period (see the
        module docstring)."""
        rate, rho = behaviour.error_rate, behaviour.error_dispersion
        if rho <= 0.0 or not 0.0 < rate < 1.0:
            return rate
        period, regime = self.scrape_period(now), self._announcements
        draw = self._period_draw
        if draw is None or draw.period != period or draw.regime != regime or draw.rate <= 0.0:
            k = 1.0 / rho - 1.0
            probability = float(self._dispersion_rng.beta(rate * k, (1.0 - rate) * k))
            self._period_draw = _PeriodDraw(period, regime, rate, probability)
            return probability
        if rate == draw.rate:
            return draw.probability
        return min(1.0, draw.probability * rate / draw.rate)

    def outcome(self, now: float) -> RequestOutcome:
        """One request served at wall-clock time ``now``."""
        behaviour = self.at(now)
        return self.sample(behaviour, self.error_probability(behaviour, now))

    def sample(
        self, behaviour: VersionBehaviour, error_probability: float | None = None
    ) -> RequestOutcome:
        """One request: an error with ``error_probability`` (default: the version's error
        rate), a log-normal latency with the version's median and spread."""
        rng = self._requests_rng
        p = behaviour.error_rate if error_probability is None else error_probability
        error = bool(rng.random() < p)
        latency_ms = behaviour.latency_p50_ms * math.exp(
            behaviour.latency_spread * float(rng.standard_normal())
        )
        return RequestOutcome(error, min(latency_ms / 1000.0, MAX_LATENCY_SECONDS))
