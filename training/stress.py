"""The stress suite: random combinations of every effect over wide ranges, never trained on.

A **family** is a combination of effects; each episode of a family draws a fresh scenario
from the episode's own seed (so every agent meets the same canary). Ranges are wider than the
training generator's (:mod:`training.generator`) and the library's:

* traffic 0.1–5,000 requests/s (log-uniform), stable errors 0.01–10 %, p50 5–2,000 ms;
* error dispersion from none to strong (intra-scrape correlation up to 0.3);
* the canary's regression — error ratio 0.5–4× and latency ratio 0.8–2× of stable's, each on
  either side of the tolerance and often close to it (half the draws fall within ±30 % of the
  tolerance's limit), or none at all.

Whether an episode's canary is good or bad is computed from its draw
(:func:`scenarios.truth.episode_truth`), as everywhere.

**Disjoint from training.** Training draws from :mod:`training.generator` and the library, never
from here (``training.train`` does not import this module; a test checks it), and stress
episodes have their own seeds (salt ``"stress"``, :func:`stress_seed`), disjoint from the
library's evaluation and validation seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from decision_service.tolerance import DEFAULT_TOLERANCE, Tolerance
from scenarios import Scenario

#: Seeds of stress episodes come from this salt (``training.episodes.episode_seed``).
STRESS_SALT: Final = "stress"

#: Family name → the effects it combines (beyond the canary's regression and the base draw).
FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "dispersed": ("dispersion",),
    "dispersed_incidents": ("dispersion", "shared_incidents"),
    "incident_regression": ("shared_incidents", "strong_regression"),
    "stable_incidents": ("stable_incidents",),
    "cold_start": ("cold_start",),
    "tail_latency": ("tail",),
    "load_dependent": ("load",),
    "traffic_profile": ("profile",),
    "low_traffic": ("low_traffic", "dispersion"),
    "high_traffic": ("high_traffic",),
    "spikes_drift": ("spikes", "drift"),
    "everything": (  # a random half of these per draw, each fault mild or strong
        "dispersion",
        "shared_incidents",
        "stable_incidents",
        "cold_start",
        "tail",
        "load",
        "profile",
        "spikes",
        "drift",
    ),
}


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _ratio_near_limit(
    rng: np.random.Generator, limit_ratio: float, low: float, high: float
) -> float:
    """A canary/stable ratio: half the time within ±30 % of the tolerance's limit, else over
    the whole range (so regressions fall on both sides, many close to the edge)."""
    if rng.random() < 0.5:
        return float(np.clip(limit_ratio * rng.uniform(0.7, 1.3), low, high))
    return _log_uniform(rng, low, high)


def stress_scenario(
    family: str, rng: np.random.Generator, tolerance: Tolerance = DEFAULT_TOLERANCE
) -> Scenario:
    """One scenario of ``family`` (see :data:`FAMILIES`), drawn from ``rng``."""
    effects = FAMILIES[family]
    if family == "everything":  # a random half of every effect, so the draws are not all bad
        effects = tuple(e for e in effects if rng.random() < 0.5)
    if "low_traffic" in effects:
        rps = _log_uniform(rng, 0.1, 5.0)
    elif "high_traffic" in effects:
        rps = _log_uniform(rng, 500.0, 5000.0)
    else:
        rps = _log_uniform(rng, 0.1, 5000.0)
    stable_error = _log_uniform(rng, 0.0001, 0.1)
    if "strong_regression" in effects:  # the noisy-neighbour regression: clearly beyond the floor
        stable_error = _log_uniform(rng, 0.003, 0.03)
    p50 = _log_uniform(rng, 5.0, 2000.0)
    spread = float(rng.uniform(0.25, 0.9))
    doc: dict[str, Any] = {
        "name": f"stress-{family}".replace("_", "-"),
        "truth": "good",  # the intent is unknown here; the episode's truth is computed
        "description": f"Stress family {family}: {', '.join(effects)}.",
        "traffic": {"requests_per_second": rps},
        "stable": {"error_rate": stable_error, "latency_p50_ms": p50, "latency_spread": spread},
    }
    canary: dict[str, Any] = {}
    # The canary's regression, on either side of the tolerance (or none).
    kind = rng.random()
    if "strong_regression" in effects:
        canary["error_multiplier"] = float(rng.uniform(2.0, 3.0))
    elif kind < 0.4:
        limit = tolerance.limit("error_rate", stable_error) / stable_error
        canary["error_multiplier"] = _ratio_near_limit(rng, limit, 0.5, 4.0)
    elif kind < 0.7:
        limit = tolerance.limit("latency_p50_ms", p50) / p50
        canary["latency_multiplier"] = _ratio_near_limit(rng, limit, 0.8, 2.0)
    else:
        canary["error_multiplier"] = float(rng.uniform(0.7, 1.1))
        canary["latency_multiplier"] = float(rng.uniform(0.9, 1.05))
    if "dispersion" in effects:
        doc["stable"]["error_dispersion"] = _log_uniform(rng, 0.0005, 0.3)
    if "shared_incidents" in effects:
        doc["shared_incidents"] = {
            "probability": float(rng.uniform(0.05, 0.4)),
            "duration_intervals": (1.0, 4.0),
            "error_rate": _log_uniform(rng, 0.005, 0.2),
            "latency_multiplier": float(rng.uniform(1.2, 4.0)),
        }
    if "stable_incidents" in effects:
        doc["stable_incidents"] = {
            "probability": float(rng.uniform(0.05, 0.4)),
            "duration_intervals": (1.0, 4.0),
            "error_rate": _log_uniform(rng, 0.005, 0.2),
            "latency_multiplier": float(rng.uniform(1.2, 4.0)),
        }
    # Each canary-side fault is mild (usually within tolerance) or strong, half and half.
    if "cold_start" in effects:
        mild = rng.random() < 0.5
        canary["cold_start"] = {
            "minutes": float(rng.uniform(0.2, 1.5 if mild else 6.0)),
            "error_rate": _log_uniform(rng, 0.001, 0.02 if mild else 0.3),
            "latency_multiplier": float(rng.uniform(1.1, 1.5 if mild else 4.0)),
            "after_scale_up": bool(rng.random() < 0.5),
        }
    if "tail" in effects:
        canary["latency_spread_multiplier"] = float(rng.uniform(0.8, 1.6))
    if "load" in effects:
        mild = rng.random() < 0.5
        canary["load_dependent"] = {
            "from_weight": float(rng.uniform(10.0, 80.0)),
            "error_rate": _log_uniform(rng, 0.00005, 0.001 if mild else 0.1)
            if rng.random() < 0.6
            else 0.0,
            "latency_multiplier": float(rng.uniform(1.0, 1.1 if mild else 2.5)),
        }
    if "profile" in effects:
        points = [{"minute": 0.0, "factor": float(rng.uniform(0.5, 2.0))}]
        minute = 0.0
        for _ in range(int(rng.integers(2, 5))):
            minute += float(rng.uniform(0.5, 3.0))
            points.append({"minute": minute, "factor": _log_uniform(rng, 0.05, 3.0)})
        doc["traffic"]["profile"] = points
    if "spikes" in effects:
        mild = rng.random() < 0.5
        canary["spikes"] = {
            "probability": float(rng.uniform(0.01, 0.05 if mild else 0.3)),
            "error_rate": _log_uniform(rng, 0.0005, 0.01 if mild else 0.15),
            "latency_multiplier": float(rng.uniform(1.05, 1.3 if mild else 3.0)),
        }
    if "drift" in effects and rng.random() < 0.5:
        mild = rng.random() < 0.5
        canary["drift"] = {
            "starts_after_minutes": float(rng.uniform(0.0, 6.0)),
            "error_rate_per_minute": _log_uniform(rng, 1e-6, 2e-5 if mild else 0.02)
            if rng.random() < 0.6
            else 0.0,
            "latency_ms_per_minute": float(rng.uniform(0.0, 0.002 if mild else 0.1)) * p50,
        }
    doc["canary"] = canary
    return Scenario.model_validate(doc)


def family_source(family: str) -> Callable[[np.random.Generator], Scenario]:
    """The family as an environment's scenario source (a fresh draw per episode)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown stress family {family!r}; families: {', '.join(FAMILIES)}")

    def source(rng: np.random.Generator) -> Scenario:
        return stress_scenario(family, rng)

    return source
