"""The statistics canary analysis compares versions with (pure functions, no I/O).

* :func:`two_proportion_z` — the pooled two-proportion z-score of two error counts;
* :func:`error_llr` — the sequential log-likelihood ratio of "the canary's error rate is
  ``ratio`` × stable's" against "equal";
* :func:`stable_reference` — which of stable's spans a canary window is compared with.

The features (:mod:`decision_service.features`) and the guardrails
(:mod:`decision_service.guardrails`) both use them, so a number in an answer's reason and the
feature the policy saw are computed the same way.
"""

from __future__ import annotations

import math
from typing import Final

from decision_service.snapshot import MetricsSnapshot, VersionMetrics

#: The ratio the sequential likelihood-ratio feature tests against equality.
LLR_ALTERNATIVE_RATIO: Final = 2.0


def two_proportion_z(e_c: float, n_c: float, e_s: float, n_s: float) -> float:
    """Pooled two-proportion z-score of canary vs stable error rates (0 with no errors at all).

    Also 0 when the standard error underflows to 0: error counts are floats (Prometheus'
    ``increase()`` extrapolates), and a subnormal one is no evidence of a difference.
    """
    pooled = (e_c + e_s) / (n_c + n_s)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_s))
    if se <= 0.0:
        return 0.0
    return (e_c / n_c - e_s / n_s) / se


def error_llr(
    e_c: float, n_c: float, e_s: float, n_s: float, ratio: float = LLR_ALTERNATIVE_RATIO
) -> float:
    """Log-likelihood ratio of "canary error rate = ratio × stable's" vs "equal".

    Conditional on the errors seen, each error belongs to the canary with probability
    ``n_c / (n_c + n_s)`` under equality and ``ratio·n_c / (ratio·n_c + n_s)`` under the
    alternative; the statistic is the sum of log-ratios (the SPRT statistic).
    """
    pi0 = n_c / (n_c + n_s)
    pi1 = ratio * n_c / (ratio * n_c + n_s)
    return e_c * math.log(pi1 / pi0) + e_s * math.log((1.0 - pi1) / (1.0 - pi0))


def stable_reference(snapshot: MetricsSnapshot) -> VersionMetrics:
    """Stable's window; at weight 100, when stable served no request in it, its measurement
    over the canary's life.

    The substitution is for that one case: at 100 % stable serves nothing, and its figures over
    the canary's life are the last measured reference there is. Below 100 % stable should be
    serving, so a window without its requests (no series, NaN, zero) is missing data: it is
    returned as is, and the feature module refuses it. Substituting there would judge the
    canary against figures that may be minutes old (stable's series stopping mid-rollout once
    got promote after promote, compared with nothing current).
    """
    stable = snapshot.stable
    if snapshot.step_weight >= 100.0 and not stable.requests > 0:  # `not >`: NaN too
        return snapshot.stable_cumulative
    return stable
