"""The truth of an episode: is this draw of a canary within the user's tolerance of stable?

A scenario file's ``truth:`` is what its author meant. What an episode is *scored* on is
computed here, per draw, from the canary's **expected** behaviour against stable's, judged by
:mod:`decision_service.tolerance` (the one definition of "not worse than stable"):

* the canary's expected error rate and p95/p50 latency over the requests it serves during a
  nominal rollout (one analysis interval per step of the schedule) and a horizon after full
  promotion (:data:`DEFAULT_HORIZON_MINUTES` at 100 %), weighted by the requests it serves there —
  so a problem at 100 % weighs far more than the same problem for one interval at 5 %;
* **spikes** count at their expected rate (a share ``probability`` of the time, with their
  added errors and slower latency mixed in);
* **drift** counts where it will be: its growth over the horizon after promotion is included;
* **cold starts** count where they happen (mostly in the first, lightly weighted intervals),
  **load-dependent** regressions at the weight the canary will serve (100 % after promotion);
* **shared incidents** cancel (they hit both versions) and **stable-only incidents** are not the
  canary's fault: stable's reference is its normal behaviour;
* latency is the log-normal of the scenario per request (tail-only changes move p95, not p50);
  the canary's p95/p50 are the quantiles of the mixture of everything it serves.

The simulator's reward, the evaluation, the tuning of the baselines and the reports all use
:func:`episode_truth`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from decision_service.tolerance import DEFAULT_TOLERANCE, Judgement, Metric, Tolerance, judge
from scenarios.sampling import EpisodeParameters, ScaleUp

#: Minutes after full promotion that the canary's behaviour is judged over.
DEFAULT_HORIZON_MINUTES: Final = 30.0
#: The rollout the truth assumes: Argo's steps (the project's Rollout) and analysis interval.
DEFAULT_WEIGHTS: Final = (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0)
DEFAULT_INTERVAL_SECONDS: Final = 30.0
_Z95: Final = 1.6448536269514722
_HORIZON_STEP_MINUTES: Final = 1.0

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The nominal rollout and the horizon after it."""

    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    horizon_minutes: float = DEFAULT_HORIZON_MINUTES


DEFAULT_SCHEDULE: Final = Schedule()


def _phi(x: FloatArray) -> FloatArray:
    """Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7): numpy only."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return np.asarray(0.5 * (1.0 + np.sign(x) * erf), dtype=np.float64)


def mixture_quantile(q: float, weights: FloatArray, medians: FloatArray, sigma: float) -> float:
    """The ``q`` quantile of a mixture of log-normals (common ``sigma``), by bisection.

    Components with the same median are merged first; one median left is a plain log-normal."""
    logs, index = np.unique(np.log(medians), return_inverse=True)
    weights = np.bincount(index, weights=weights) / weights.sum()
    if len(logs) == 1:
        return float(math.exp(logs[0] + sigma * _normal_quantile(q)))
    low = float(logs.min()) - 6.0 * sigma
    high = float(logs.max()) + 6.0 * sigma
    for _ in range(32):
        middle = 0.5 * (low + high)
        if float(np.dot(weights, _phi((middle - logs) / sigma))) < q:
            low = middle
        else:
            high = middle
    return math.exp(0.5 * (low + high))


def _normal_quantile(q: float) -> float:
    """Φ⁻¹(q) for the two quantiles the truth needs (exact constants)."""
    return {0.5: 0.0, 0.95: _Z95}[q]


def _points(params: EpisodeParameters, schedule: Schedule) -> tuple[FloatArray, ...]:
    """(age in minutes, canary weight %, requests the canary serves there) of the judged span."""
    step = schedule.interval_seconds / 60.0
    ages = [(i + 0.5) * step for i in range(len(schedule.weights))]
    weights = list(schedule.weights)
    spans = [step] * len(weights)
    promoted = len(weights) * step
    n = max(1, math.ceil(schedule.horizon_minutes / _HORIZON_STEP_MINUTES))
    width = schedule.horizon_minutes / n
    ages += [promoted + (j + 0.5) * width for j in range(n)]
    weights += [100.0] * n
    spans += [width] * n
    age = np.asarray(ages)
    weight = np.asarray(weights)
    rate = np.asarray([params.rate_factor(a) for a in ages])
    served = params.requests_per_second * rate * weight / 100.0 * np.asarray(spans)
    return age, weight, served


def expected_metrics(
    params: EpisodeParameters, schedule: Schedule = DEFAULT_SCHEDULE
) -> tuple[dict[Metric, float], dict[Metric, float]]:
    """The canary's and stable's expected error rate, p95 and p50 (see the module docstring).

    A pure function of its (frozen) arguments, remembered for the last draws: an episode's
    truth and class both need it, and an evaluation plays every agent on the same draws."""
    canary, stable = _expected_metrics(params, schedule)
    return dict(canary), dict(stable)


@functools.lru_cache(maxsize=4096)
def _expected_metrics(
    params: EpisodeParameters, schedule: Schedule
) -> tuple[dict[Metric, float], dict[Metric, float]]:
    age, weight, served = _points(params, schedule)
    step = schedule.interval_seconds / 60.0
    scale_ups = [
        ScaleUp(i * step, (w - schedule.weights[i - 1]) / w)
        for i, w in enumerate(schedule.weights)
        if i > 0 and w > schedule.weights[i - 1]
    ]
    p_spike = params.spike_probability
    errors, medians, shares = [], [], []
    sigma = 0.0
    for a, w, n in zip(age, weight, served, strict=True):
        calm = params.canary(float(a), False, False, weight=float(w), scale_ups=scale_ups)
        sigma = calm.latency_spread
        errors.append(calm.error_rate * n * (1.0 - p_spike))
        medians.append(calm.latency_p50_ms)
        shares.append(n * (1.0 - p_spike))
        if p_spike > 0:
            spiked = params.canary(float(a), True, False, weight=float(w), scale_ups=scale_ups)
            errors.append(spiked.error_rate * n * p_spike)
            medians.append(spiked.latency_p50_ms)
            shares.append(n * p_spike)
    total = float(np.sum(shares))
    weights_array, medians_array = np.asarray(shares), np.asarray(medians)
    canary: dict[Metric, float] = {
        "error_rate": float(np.sum(errors)) / total,
        "latency_p95_ms": mixture_quantile(0.95, weights_array, medians_array, sigma),
        "latency_p50_ms": mixture_quantile(0.50, weights_array, medians_array, sigma),
    }
    stable_behaviour = params.stable(False, False)
    stable: dict[Metric, float] = {
        "error_rate": stable_behaviour.error_rate,
        "latency_p95_ms": stable_behaviour.latency_p50_ms
        * math.exp(_Z95 * stable_behaviour.latency_spread),
        "latency_p50_ms": stable_behaviour.latency_p50_ms,
    }
    return canary, stable


def episode_judgement(
    params: EpisodeParameters,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> Judgement:
    """The canary of this draw against stable, metric by metric, under ``tolerance``."""
    canary, stable = expected_metrics(params, schedule)
    return judge(tolerance, canary, stable)


def episode_truth(
    params: EpisodeParameters,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> Literal["good", "bad"]:
    """``good`` when the canary of this draw is within tolerance of stable, else ``bad``."""
    return "good" if episode_judgement(params, tolerance, schedule).within else "bad"


EpisodeClass = Literal["equal_or_better", "within", "between", "beyond_zone"]


def episode_class(
    params: EpisodeParameters,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    indifference: float = 2.0,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> EpisodeClass:
    """Where the draw falls for the shield's guarantees.

    * ``beyond_zone`` — beyond the indifference zone's edge (``indifference`` × the tolerance's
      excess): such a canary must almost never be promoted (G1);
    * ``between`` — beyond the tolerance but inside the zone: no guarantee either way (the
      operating characteristic shows what happens there);
    * ``equal_or_better`` — every metric at or below stable's, and no canary-only fault (no
      spikes, no cold start): such a canary must almost never be aborted (G2);
    * ``within`` — the rest of the canaries within tolerance.
    """
    canary, stable = expected_metrics(params, schedule)
    if not judge(tolerance, canary, stable).within:
        inside_zone = judge(tolerance.widened(indifference), canary, stable).within
        return "between" if inside_zone else "beyond_zone"
    faults = params.spike_probability > 0 or params.cold_start_minutes > 0
    if not faults and all(canary[m] <= stable[m] * (1 + 1e-9) for m in stable):
        return "equal_or_better"
    return "within"
