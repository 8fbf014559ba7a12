"""The shield's normal-mixture e-value against Lindon's Dirichlet-multinomial test (savvi).

Both are anytime-valid tests of "the canary fails no more often than stable" on the same error
counts, window by window. With equal traffic the null says each error is the canary's with
probability 1/2: savvi's ``Multinomial`` sample-ratio test (Lindon & Malek, NeurIPS 2022) on the
errors' assignment. The shield's statistic is the weighted sum of per-window rate differences
with its binomial variance (:func:`decision_service.shield.e_value`). On 300 streams each:
neither rejects an equal canary more often than α, both reject a canary with twice stable's
errors almost always, and they agree on the stream's verdict nearly always.
"""

from __future__ import annotations

import numpy as np
import pytest

from decision_service.shield import e_value

savvi = pytest.importorskip("savvi.multinomial", reason="savvi (the dev extra) is not installed")

ALPHA = 0.01
STREAMS = 300
WINDOWS = 30
REQUESTS = 1000  # per version and window
STABLE_RATE = 0.005


def _verdicts(canary_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stream: whether each test rejected "canary <= stable" within the windows."""
    rng = np.random.default_rng(seed)
    ours = np.zeros(STREAMS, dtype=bool)
    theirs = np.zeros(STREAMS, dtype=bool)
    for stream in range(STREAMS):
        test = savvi.Multinomial(ALPHA, np.array([0.5, 0.5]))
        total = weight = variance = 0.0
        for _ in range(WINDOWS):
            e_c = int(rng.binomial(REQUESTS, canary_rate))
            e_s = int(rng.binomial(REQUESTS, STABLE_RATE))
            test.update(np.array([e_c, e_s]))
            theirs[stream] |= bool(test.odds >= 1 / ALPHA)
            pooled = (e_c + e_s + 0.5) / (2 * REQUESTS + 1)
            unit = pooled * (1 - pooled)
            total += REQUESTS * (e_c - e_s) / REQUESTS
            weight += REQUESTS
            variance += REQUESTS**2 * unit * 2 / REQUESTS
            ours[stream] |= e_value(total / weight, weight, variance, unit) >= 1 / ALPHA
    return ours, theirs


def test_neither_rejects_an_equal_canary_more_often_than_alpha() -> None:
    ours, theirs = _verdicts(STABLE_RATE, seed=1)
    assert ours.mean() <= ALPHA + 2 * np.sqrt(ALPHA / STREAMS)
    assert theirs.mean() <= ALPHA + 2 * np.sqrt(ALPHA / STREAMS)


def test_both_reject_a_doubled_error_rate_and_agree() -> None:
    ours, theirs = _verdicts(2 * STABLE_RATE, seed=2)
    assert ours.mean() >= 0.9 and theirs.mean() >= 0.9
    assert (ours == theirs).mean() >= 0.9
