"""Traffic and metrics of a canary rollout, sampled the way production produces them.

Per analysis interval, at the current canary weight ``w`` (percent):

* total requests ``N ~ Poisson(rps × profile(t) × interval)`` (the traffic profile at the
  interval's middle, 1 without one); the canary gets ``Binomial(N, share)``, where the share is
  the step's weight ``w/100`` or, with ``replicas`` set, what Argo gives without traffic
  routing: pod counts (:func:`pod_share`: with 5 replicas, 5 % and 10 % are both one canary pod
  of six);
* errors of each version are ``Binomial(requests, error_rate)`` per scrape with the version's
  error rate for this interval (scenario, drift by the canary's age, cold start, load at this
  weight, spikes, shared and stable-only incidents); with ``error_dispersion`` ρ > 0 each
  scrape's rate is first drawn from ``Beta`` with that mean and intra-scrape correlation ρ
  (beta-binomial: errors in clumps, as one bad pod or endpoint makes them);
* latency is log-normal per request (median ``p50``, sigma ``spread``); the interval's requests
  fall into the Prometheus histogram buckets of :mod:`decision_service.histogram` by a
  multinomial draw, and p50/p95 are read back with ``histogram_quantile``, so few requests give
  noisy quantiles exactly as in production;
* each interval is also split into :data:`SUB_BUCKETS` scrapes (request and error counts, mean
  latency) — the per-scrape samples a Kayenta-style judge compares;
* the weather (canary spikes, shared incidents) is drawn once per interval's length, but on its
  own clock: in production a spike starts whenever it starts, not when an analysis window opens.
  An episode whose scenario has weather draws a phase, ``weather_offset`` scrapes; the first that
  many scrapes of every interval still have the previous period's weather. So one spike usually
  shows in two consecutive windows, partly in each, as it does live (the live sim-to-real check
  of docs/demo.md: with window-aligned spikes the simulator promoted 94 % of the live ``flaky``
  draws that the live runs aborted twice out of three).

The simulator keeps the canary's counts over its life and stable's over the same span, and
builds the :class:`~decision_service.features.MetricsSnapshot` the live service would build.
Nothing here knows the ground truth's *label*; the environment does.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from decision_service.histogram import LATENCY_BUCKETS_SECONDS, histogram_quantile
from decision_service.shield import EvidenceSummary, VersionWindow
from decision_service.snapshot import MetricsSnapshot, VersionMetrics
from scenarios import Conditions, EpisodeParameters, Scenario, VersionBehaviour
from scenarios.sampling import ScaleUp

#: Scrapes per analysis interval (the per-interval samples of the statistical judge).
SUB_BUCKETS = 6
_BOUNDS_MS = np.asarray(LATENCY_BUCKETS_SECONDS) * 1000.0
_LOG_BOUNDS = np.log(_BOUNDS_MS)
_BOUNDS_LIST = [float(b) for b in _BOUNDS_MS]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class VersionInterval:
    """One version's traffic during one interval."""

    requests: int
    errors: int
    buckets: IntArray  # latency histogram, per bucket (not cumulative), last = +Inf
    scrape_requests: IntArray  # per scrape
    scrape_errors: IntArray
    scrape_mean_latency_ms: FloatArray  # NaN where a scrape had no request
    behaviour: VersionBehaviour  # in force at the interval's end (see ``sample_version``)

    @property
    def scrape_error_rates(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.scrape_requests > 0,
                self.scrape_errors / np.maximum(self.scrape_requests, 1),
                np.nan,
            )


@dataclass(frozen=True, slots=True)
class Interval:
    """Both versions' traffic during one interval at ``weight`` percent."""

    index: int
    weight: float
    canary: VersionInterval
    stable: VersionInterval
    expected_requests: float  # rps × interval: the scale of the blast-radius cost


def _latency_bucket_probabilities(behaviour: VersionBehaviour) -> FloatArray:
    z = (_LOG_BOUNDS - math.log(behaviour.latency_p50_ms)) / behaviour.latency_spread
    cdf = ndtr(z)
    probs = np.empty(len(cdf) + 1)
    probs[0] = cdf[0]
    probs[1:-1] = np.diff(cdf)
    probs[-1] = 1.0 - cdf[-1]
    return np.clip(probs, 0.0, 1.0)


@functools.lru_cache(maxsize=1024)
def _bucket_distribution(behaviour: VersionBehaviour) -> FloatArray:
    """:func:`_latency_bucket_probabilities` normalised to sum to 1, as :func:`sample_version`
    draws from it (read-only). A pure function of the frozen behaviour, remembered: most
    intervals repeat a version's behaviour, and this was a quarter of a draw's time."""
    probs = _latency_bucket_probabilities(behaviour)
    distribution: FloatArray = probs / probs.sum()
    distribution.setflags(write=False)
    return distribution


#: The even split of an interval's requests over its scrapes (read-only).
_EVEN_SCRAPES: Final = np.full(SUB_BUCKETS, 1.0 / SUB_BUCKETS)
_EVEN_SCRAPES.setflags(write=False)


def _latency_mean_std(behaviour: VersionBehaviour) -> tuple[float, float]:
    """Mean and standard deviation of the log-normal per-request latency."""
    sigma = behaviour.latency_spread
    mean = behaviour.latency_p50_ms * math.exp(sigma * sigma / 2.0)
    return mean, mean * math.sqrt(math.expm1(sigma * sigma))


def sample_version(
    requests: int,
    behaviour: VersionBehaviour,
    rng: np.random.Generator,
    *,
    earlier: VersionBehaviour | None = None,
    earlier_scrapes: int = 0,
) -> VersionInterval:
    """Errors, latency histogram and per-scrape samples for ``requests`` requests.

    The first ``earlier_scrapes`` scrapes ran under ``earlier`` (the weather before the change
    that falls inside this interval), the rest under ``behaviour``.
    """
    if not 0 <= earlier_scrapes < SUB_BUCKETS:
        raise ValueError(f"earlier_scrapes must be in [0, {SUB_BUCKETS}), got {earlier_scrapes}")
    if earlier is None or earlier_scrapes == 0:
        earlier, earlier_scrapes = behaviour, 0
    scrape_requests = rng.multinomial(requests, _EVEN_SCRAPES)
    split = earlier_scrapes  # scrapes [0, split) ran under `earlier`
    rates = [earlier.error_rate] * split + [behaviour.error_rate] * (SUB_BUCKETS - split)
    if behaviour.error_dispersion > 0:
        rates = _dispersed(rates, behaviour.error_dispersion, rng)
    # One scalar draw per scrape, in order: the same numbers as one call with arrays (the
    # same generator function per element), without its broadcasting, which cost more.
    counts = scrape_requests.tolist()
    errors = [int(rng.binomial(n, rate)) for n, rate in zip(counts, rates, strict=True)]
    probs = _bucket_distribution(behaviour)
    if split:
        early = sum(counts[:split])
        early_probs = _bucket_distribution(earlier)
        buckets = rng.multinomial(early, early_probs) + rng.multinomial(requests - early, probs)
    else:
        buckets = rng.multinomial(requests, probs)
    now = _latency_mean_std(behaviour)
    then = _latency_mean_std(earlier) if split else now
    # loc + scale·z with z standard normal: what ``rng.normal(loc, scale)`` computes, per
    # element, from the same draws (in Python floats: the same operations, without numpy's
    # per-call cost on six values)
    latency = []
    for i, (n, z) in enumerate(zip(counts, rng.standard_normal(SUB_BUCKETS).tolist(), strict=True)):
        if n == 0:
            latency.append(math.nan)  # no request, no mean
            continue
        mean, std = then if i < split else now
        value = mean + std / math.sqrt(n) * z
        latency.append(value if value >= 0.0 else 0.0)  # np.maximum(value, 0.0)
    return VersionInterval(
        requests=int(requests),
        errors=sum(errors),
        buckets=buckets,
        scrape_requests=scrape_requests,
        scrape_errors=np.array(errors, dtype=np.int64),
        scrape_mean_latency_ms=np.array(latency),
        behaviour=behaviour,
    )


def _dispersed(rates: list[float], rho: float, rng: np.random.Generator) -> list[float]:
    """Each scrape's error rate drawn from Beta(mean = rate, intra-scrape correlation ``rho``).

    Beta(a, b) with a = rate·k, b = (1 − rate)·k and k = 1/ρ − 1 has mean ``rate`` and makes the
    scrape's error count beta-binomial, with variance n·p·(1−p)·(1 + (n−1)·ρ)."""
    k = 1.0 / rho - 1.0
    return [
        float(rng.beta(rate * k, (1.0 - rate) * k)) if 0.0 < rate < 1.0 else rate for rate in rates
    ]


class _Totals:
    """Counts accumulated over a span: requests, errors, latency histogram."""

    __slots__ = ("buckets", "errors", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.buckets = np.zeros(len(_BOUNDS_MS) + 1, dtype=np.int64)

    def add(self, version: VersionInterval) -> None:
        self.requests += version.requests
        self.errors += version.errors
        self.buckets += version.buckets

    def copy(self) -> _Totals:
        other = _Totals.__new__(_Totals)
        other.requests, other.errors = self.requests, self.errors
        other.buckets = self.buckets.copy()
        return other


def pod_share(weight: float, replicas: int) -> float:
    """The canary's traffic share when Argo approximates ``weight`` with pod counts.

    Without traffic routing Argo scales the canary to ``ceil(replicas × w / 100)`` pods and
    stable to ``replicas − floor(replicas × w / 100)`` (``approximateWeightedCanaryStableReplica
    Counts``), and the Service spreads requests evenly over all of them."""
    if weight >= 100:
        return 1.0
    if weight <= 0:
        return 0.0
    canary = math.ceil(replicas * weight / 100.0)
    stable = replicas - math.floor(replicas * weight / 100.0)
    return canary / (canary + stable)


def shield_window(version: VersionInterval) -> VersionWindow:
    """One version's interval as the shield's window counts."""
    return VersionWindow(
        float(version.requests),
        float(version.errors),
        tuple(map(float, version.buckets.tolist())),
    )


def version_metrics(requests: int, errors: int, buckets: IntArray) -> VersionMetrics:
    """What Prometheus reports for a span, latency quantiles via ``histogram_quantile``."""
    cumulative = buckets.cumsum().tolist()
    return VersionMetrics(
        requests=float(requests),
        errors=float(errors),
        latency_p50_ms=histogram_quantile(0.50, _BOUNDS_LIST, cumulative),
        latency_p95_ms=histogram_quantile(0.95, _BOUNDS_LIST, cumulative),
    )


def _window(version: VersionInterval) -> VersionMetrics:
    return version_metrics(version.requests, version.errors, version.buckets)


class RolloutSimulator:
    """The world of one episode: a scenario draw, its weather, and the counts so far."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        interval_seconds: float,
        params: EpisodeParameters | None = None,
        replicas: int | None = None,
    ) -> None:
        """``params``: this draw of the scenario instead of a fresh one from ``rng``;
        ``replicas``: split traffic by Argo's pod counts for that many replicas, not by weight."""
        self.replicas = replicas
        self.scenario = scenario
        self.params = EpisodeParameters.draw(scenario, rng) if params is None else params
        self._conditions = Conditions(self.params, scenario, rng)
        self._rng = rng
        #: Scrapes at the start of each interval that still have the previous period's weather
        #: (0 = the weather's clock is aligned with the analysis windows; always 0 without
        #: weather, so such scenarios draw exactly the episodes they drew before phases existed).
        self.weather_offset = 0
        # (spike, incident, stable incident) of the period before
        self._weather_before = (False, False, False)
        if self.params.has_weather:
            self.weather_offset = int(rng.integers(SUB_BUCKETS))
            if self.weather_offset:
                self._conditions.advance()  # the period the first window starts in
                self._weather_before = self._weather()
        self.interval_seconds = interval_seconds
        self.intervals = 0
        self._canary_total = _Totals()
        self._stable_total = _Totals()
        self.last: Interval | None = None
        #: Weight increases so far (new canary pods: a cold start may follow each).
        self.scale_ups: list[ScaleUp] = []

    def copy(self, rng: np.random.Generator) -> RolloutSimulator:
        """An independent copy that draws from ``rng`` (a copy of this simulator's generator
        as it stands): the copy goes on exactly as this simulator would, and neither sees what
        the other then simulates. What an interval changes is copied (the weather's state, the
        totals, the scale-ups so far); everything else never changes once made (the scenario,
        its draw, the frozen intervals) and is shared (a test checks every field is one or the
        other)."""
        other = copy.copy(self)
        other._rng = rng
        other._conditions = self._conditions.copy(rng)
        other._canary_total = self._canary_total.copy()
        other._stable_total = self._stable_total.copy()
        other.scale_ups = list(self.scale_ups)
        return other

    @property
    def expected_requests(self) -> float:
        """Requests per interval at the scenario's nominal rate (the blast-radius unit)."""
        return self.params.requests_per_second * self.interval_seconds

    def _weather(self) -> tuple[bool, bool, bool]:
        c = self._conditions
        return (c.spike, c.incident, c.stable_incident)

    def baseline_windows(self, count: int) -> list[VersionInterval]:
        """``count`` windows of stable alone, before the canary started: its usual behaviour
        (no weather) at the nominal rate, as Prometheus holds stable's history."""
        stable = self.params.stable(False, False)
        return [
            sample_version(int(self._rng.poisson(self.expected_requests)), stable, self._rng)
            for _ in range(count)
        ]

    def next_interval(self, weight: float) -> Interval:
        """Simulate one analysis interval with ``weight`` percent of traffic on the canary."""
        self._conditions.advance()
        age_minutes = (self.intervals + 0.5) * self.interval_seconds / 60.0
        params = self.params
        previous = self.last.weight if self.last is not None else None
        if previous is not None and weight > previous > 0:
            started = self.intervals * self.interval_seconds / 60.0
            self.scale_ups.append(ScaleUp(started, (weight - previous) / weight))
        rng = self._rng
        expected = self.expected_requests
        if params.traffic_profile:
            expected *= params.rate_factor(age_minutes)
        total = int(rng.poisson(expected))
        share = weight / 100.0 if self.replicas is None else pod_share(weight, self.replicas)
        canary_requests = int(rng.binomial(total, share))
        conditions, split = self._conditions, self.weather_offset
        spike_before, incident_before, stable_incident_before = self._weather_before
        scale_ups = self.scale_ups
        canary = sample_version(
            canary_requests,
            params.canary(
                age_minutes,
                conditions.spike,
                conditions.incident,
                weight=weight,
                scale_ups=scale_ups,
            ),
            rng,
            earlier=params.canary(
                age_minutes, spike_before, incident_before, weight=weight, scale_ups=scale_ups
            ),
            earlier_scrapes=split,
        )
        stable = sample_version(
            total - canary_requests,
            params.stable(conditions.incident, conditions.stable_incident),
            rng,
            earlier=params.stable(incident_before, stable_incident_before),
            earlier_scrapes=split,
        )
        self._weather_before = self._weather()
        self._canary_total.add(canary)
        self._stable_total.add(stable)
        interval = Interval(self.intervals, weight, canary, stable, self.expected_requests)
        self.intervals += 1
        self.last = interval
        return interval

    def snapshot(self, evidence: EvidenceSummary | None = None) -> MetricsSnapshot:
        """The metrics snapshot after the last interval (what the live service would read),
        with the shield's ``evidence`` if given."""
        if self.last is None:
            raise RuntimeError("no interval simulated yet")
        c, s = self._canary_total, self._stable_total
        return MetricsSnapshot(
            step_weight=self.last.weight,
            canary=_window(self.last.canary),
            stable=_window(self.last.stable),
            canary_cumulative=version_metrics(c.requests, c.errors, c.buckets),
            stable_cumulative=version_metrics(s.requests, s.errors, s.buckets),
            evidence=evidence,
        )
