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
