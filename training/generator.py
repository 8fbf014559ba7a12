"""Randomised scenarios for training: generalise over canaries, not memorise the library.

Each call draws a fresh scenario (same file format, scalar values) from broad families around
what real rollouts show. The library files are evaluation material; training mixes them in
(``library_fraction`` in the training config) but most episodes come from here, with traffic,
baselines and effect sizes far wider than any single file.

A family only shapes the draw: whether the canary is good or bad is computed per episode
against the tolerance (:func:`scenarios.truth.episode_truth`), so a family's name says what was
meant, not what is scored. ``good_fraction`` (training config ``generator_good_fraction``) is the
share of draws from the "equal / better" family.

======================  ========================================================
family                  what varies
======================  ========================================================
equal / better          error ×0.3–1.2, latency ×0.7–1.08; optional rare, small
                        canary spikes and shared incidents (noisy neighbour)
error regression        error ×1.7–30 or +0.3–30 %
latency regression      latency ×1.25–2.5
drift                   starts after 0–5 min; errors +0.2–5 %/min and/or p50
                        +5–30 ms/min
mixed                   error ×1.5–2.5 and latency ×1.12–1.4
tail                    the canary's latency spread ×1.3–2 (p95 moves, p50 does not)
load                    a regression from 20–60 % weight on: errors +1–10 % or
                        latency ×1.3–2.5 at 100 %
======================  ========================================================

Every family may also get the effects real services show whatever the canary does: errors in
clumps (dispersion), stable-only incidents, a traffic profile (dips and ramps) and a mild cold
start. Their ranges are narrower than the stress suite's (``training.stress``), which training
never draws from.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scenarios import Scenario
from training.env import ScenarioSource

BAD_FAMILIES = ("errors", "latency", "drift", "mixed", "tail", "load")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _noise(
    rng: np.random.Generator,
    canary: dict[str, Any],
    doc: dict[str, Any],
    p: float,
    mild_spikes: bool = False,
) -> None:
    """Spikes and shared incidents with probability ``p`` each. ``mild_spikes``: rare, small
    ones that stay within the tolerance on average (a good canary's transient trouble); spikes
    as frequent and large as the old flaky ones add up to a regression (truth: bad)."""
    if rng.random() < p:
        if mild_spikes:
            canary["spikes"] = {
                "probability": float(rng.uniform(0.01, 0.05)),
                "error_rate": float(rng.uniform(0.002, 0.02)),
                "latency_multiplier": float(rng.uniform(1.1, 1.5)),
            }
        else:
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


def _world(rng: np.random.Generator, canary: dict[str, Any], doc: dict[str, Any]) -> None:
    """Effects of the world around any canary: dispersion, stable incidents, traffic, cold."""
    if rng.random() < 0.3:
        doc["stable"]["error_dispersion"] = _log_uniform(rng, 0.001, 0.1)
    if rng.random() < 0.15:
        doc["stable_incidents"] = {
            "probability": float(rng.uniform(0.05, 0.25)),
            "duration_intervals": (1.0, 3.0),
            "error_rate": float(rng.uniform(0.01, 0.1)),
            "latency_multiplier": float(rng.uniform(1.3, 2.5)),
        }
    if rng.random() < 0.2:
        dip_at = float(rng.uniform(0.5, 3.0))
        doc["traffic"]["profile"] = [
            {"minute": 0.0, "factor": 1.0},
            {"minute": dip_at, "factor": float(rng.uniform(0.2, 0.8))},
            {
                "minute": dip_at + float(rng.uniform(0.5, 2.0)),
                "factor": float(rng.uniform(0.8, 1.5)),
            },
        ]
    if rng.random() < 0.15:
        canary["cold_start"] = {
            "minutes": float(rng.uniform(0.3, 1.5)),
            "error_rate": float(rng.uniform(0.005, 0.08)),
            "latency_multiplier": float(rng.uniform(1.2, 2.5)),
            "after_scale_up": bool(rng.random() < 0.5),
        }


def random_scenario(rng: np.random.Generator, good_fraction: float = 0.5) -> Scenario:
    """One randomised training scenario; an "equal / better" canary with ``good_fraction``."""
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
        _noise(rng, canary, doc, 0.3, mild_spikes=True)
    else:
        doc["truth"] = "bad"
        family = BAD_FAMILIES[int(rng.integers(len(BAD_FAMILIES)))]
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
        elif family == "mixed":
            canary["error_multiplier"] = float(rng.uniform(1.5, 2.5))
            canary["latency_multiplier"] = float(rng.uniform(1.12, 1.4))
        elif family == "tail":
            canary["latency_spread_multiplier"] = float(rng.uniform(1.3, 2.0))
        else:
            load: dict[str, float] = {"from_weight": float(rng.uniform(20.0, 60.0))}
            if rng.random() < 0.5:
                load["error_rate"] = _log_uniform(rng, 0.01, 0.1)
            else:
                load["latency_multiplier"] = float(rng.uniform(1.3, 2.5))
            canary["load_dependent"] = load
        _noise(rng, canary, doc, 0.15)
    _world(rng, canary, doc)
    doc["name"] = f"generated-{doc['truth']}-{family}"
    doc["canary"] = canary
    return Scenario.model_validate(doc)


def mixed_source(
    library: list[Scenario], library_fraction: float, good_fraction: float = 0.5
) -> ScenarioSource:
    """Library scenarios with probability ``library_fraction``, else a randomised one."""

    def source(rng: np.random.Generator) -> Scenario:
        if library and rng.random() < library_fraction:
            return library[int(rng.integers(len(library)))]
        return random_scenario(rng, good_fraction)

    return source
