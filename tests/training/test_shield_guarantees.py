"""The shield's guarantees as properties of random scenarios (Monte Carlo).

G1: a canary beyond the indifference zone completes the rollout with probability at most
α_promote; G2: a canary equal to or better than stable, with no canary-only fault, is aborted
with probability at most α_abort. Both are checked here on random draws of stationary stress
families (dispersion, shared and stable-only incidents, traffic profiles, tail latency, low and
high traffic), decided by the shield alone (promote when it allows, abort when it allows), so
the property is the shield's and not the policy's. Canaries whose behaviour changes after the
rollout (drifts that start late) or strikes at random (rare spikes) are outside the guarantee:
no finite observation can bound them, and the evaluation report gives their figures.
"""

from __future__ import annotations

import math

import pytest

from decision_service.shield import ShieldConfig
from scenarios import Scenario
from training.baselines import ShieldAlone
from training.env import EnvConfig
from training.episodes import Suite, run_episode

EPISODES = 300
FAMILIES = ("dispersed_incidents", "stable_incidents", "tail_latency", "traffic_profile")


def _bound(alpha: float, n: int) -> float:
    """α plus three Monte-Carlo standard errors (a binomial estimate over n episodes)."""
    return alpha + 3 * math.sqrt(max(alpha * (1 - alpha), 1e-4) / max(n, 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_g1_and_g2_hold_for_random_stationary_canaries(family: str) -> None:
    config = EnvConfig(shield=ShieldConfig())
    suite = Suite.stress(family)
    records = [run_episode(ShieldAlone(), suite, suite.seed(i), config) for i in range(EPISODES)]
    beyond = [r for r in records if r.zone == "beyond_zone"]
    equal = [r for r in records if r.zone == "equal_or_better"]
    alpha = ShieldConfig().alpha_promote
    promoted = sum(r.outcome == "promoted" for r in beyond) / max(len(beyond), 1)
    aborted = sum(r.outcome == "aborted" for r in equal) / max(len(equal), 1)
    assert promoted <= _bound(alpha, len(beyond)), (family, promoted, len(beyond))
    assert aborted <= _bound(ShieldConfig().alpha_abort, len(equal)), (family, aborted, len(equal))
    # the families hold both kinds of canary, so the checks are not vacuous
    assert beyond and equal, (family, len(beyond), len(equal))


def _stable_mostly_in_incidents(multiplier: float) -> Scenario:
    """Stable at 0.8 % errors, in a stable-only incident at +10 % about two windows in three
    (a new one starts in 36 % of intervals and lasts 1–4); the canary has no incident."""
    return Scenario.model_validate(
        {
            "name": f"stable-mostly-in-incidents-x{multiplier:g}".replace(".", "_"),
            "truth": "bad" if multiplier > 1.0 else "good",
            "traffic": {"requests_per_second": 200.0},
            "stable": {"error_rate": 0.008, "latency_p50_ms": 80.0, "latency_spread": 0.5},
            "stable_incidents": {
                "probability": 0.36,
                "duration_intervals": [1.0, 4.0],
                "error_rate": 0.1,
                "latency_multiplier": 2.0,
            },
            "canary": {"error_multiplier": multiplier},
        }
    )


def test_g1_holds_with_many_measurements_per_step_while_stable_is_mostly_in_incidents() -> None:
    """A Rollout may ask for 90 measurements per step (a quiet service waiting for evidence).
    With stable in incidents in most windows, the plain median of its windows was an
    incident's level, and the shield alone completed 71 of 100 canaries at 2.2x stable's
    normal errors (beyond the zone) this way; the baseline is now stable's calm level."""
    config = EnvConfig(patience=90, shield=ShieldConfig())
    suite = Suite.of(_stable_mostly_in_incidents(2.2), "stress")
    records = [run_episode(ShieldAlone(), suite, 1000 + i, config) for i in range(EPISODES // 5)]
    assert all(r.zone == "beyond_zone" for r in records)
    promoted = sum(r.outcome == "promoted" for r in records) / len(records)
    assert promoted <= _bound(ShieldConfig().alpha_promote, len(records)), promoted
