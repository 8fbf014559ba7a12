"""Randomised scenarios for training: generalise over canaries, not memorise the library.

Each call draws a fresh scenario (same file format, scalar values) from broad families around
what real rollouts show. The library files are evaluation material; training mixes them in
(``library_fraction`` in the training config) but most episodes come from here, with traffic,
baselines and effect sizes far wider than any single file.

The share of good canaries is ``good_fraction`` (training config ``generator_good_fraction``).

======================  =====  ========================================================
family                  truth  what varies
======================  =====  ========================================================
equal / better          good   error ×0.3–1.2, latency ×0.7–1.08; optional canary spikes
                               (flaky) and shared incidents (noisy neighbour)
error regression        bad    error ×1.7–30 or +0.3–30 %
latency regression      bad    latency ×1.25–2.5
drift                   bad    starts after 0–5 min; errors +0.2–5 %/min and/or p50
                               +5–30 ms/min
mixed                   bad    error ×1.5–2.5 and latency ×1.12–1.4
======================  =====  ========================================================

The gap between "good" (error ≤ ×1.2, latency ≤ ×1.08) and "bad" (≥ ×1.5 / ≥ ×1.12) keeps
labels honest: no episode asks the policy to tell ×1.3 from ×1.2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scenarios import Scenario


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _noise(rng: np.random.Generator, canary: dict[str, Any], doc: dict[str, Any], p: float) -> None:
    if rng.random() < p:
        canary["spikes"] = {
            "probability": float(rng.uniform(0.05, 0.3)),
            "error_rate": float(rng.uniform(0.01, 0.1)),
            "latency_multiplier": float(rng.uniform(1.3, 3.0)),
        }
    if rng.random() < p:
        doc["shared_incidents"] = {
            "probability": float(rng.uniform(0.05, 0.35)),
            "duration_intervals": (1.0, 4.0),
            "error_rate": float(rng.uniform(0.01, 0.15)),
            "latency_multiplier": float(rng.uniform(1.3, 3.0)),
        }


def random_scenario(rng: np.random.Generator, good_fraction: float = 0.5) -> Scenario:
    """One randomised training scenario; a good canary with probability ``good_fraction``."""
    doc: dict[str, Any] = {
        "traffic": {"requests_per_second": _log_uniform(rng, 0.2, 1000.0)},
        "stable": {
            "error_rate": _log_uniform(rng, 0.0005, 0.03),
            "latency_p50_ms": float(rng.uniform(15.0, 150.0)),
            "latency_spread": float(rng.uniform(0.3, 0.8)),
        },
    }
    canary: dict[str, Any] = {}
    if rng.random() < good_fraction:
        family = "good"
        doc["truth"] = "good"
        canary["error_multiplier"] = float(rng.uniform(0.3, 1.2))
        canary["latency_multiplier"] = float(rng.uniform(0.7, 1.08))
        _noise(rng, canary, doc, 0.3)
    else:
        doc["truth"] = "bad"
        family = ("errors", "latency", "drift", "mixed")[int(rng.integers(4))]
        if family == "errors":
            if rng.random() < 0.5:
                canary["error_multiplier"] = _log_uniform(rng, 1.7, 30.0)
            else:
                canary["error_additive"] = _log_uniform(rng, 0.003, 0.3)
        elif family == "latency":
            canary["latency_multiplier"] = float(rng.uniform(1.25, 2.5))
        elif family == "drift":
            drift: dict[str, float] = {"starts_after_minutes": float(rng.uniform(0.0, 5.0))}
            kind = int(rng.integers(3))
            if kind in (0, 2):
                drift["error_rate_per_minute"] = _log_uniform(rng, 0.002, 0.05)
            if kind in (1, 2):
                drift["latency_ms_per_minute"] = float(rng.uniform(5.0, 30.0))
            canary["drift"] = drift
        else:
            canary["error_multiplier"] = float(rng.uniform(1.5, 2.5))
            canary["latency_multiplier"] = float(rng.uniform(1.12, 1.4))
        _noise(rng, canary, doc, 0.15)
    doc["name"] = f"generated-{doc['truth']}-{family}"
    doc["canary"] = canary
    return Scenario.model_validate(doc)
