"""Randomised training scenarios are valid, varied and balanced."""

from __future__ import annotations

from collections import Counter

import numpy as np

from training.generator import random_scenario


def test_generator_is_seeded_and_balanced() -> None:
    a = [random_scenario(np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    scenarios = [random_scenario(rng) for _ in range(2000)]
    truths = Counter(s.truth for s in scenarios)
    assert 0.45 < truths["good"] / 2000 < 0.55
    families = Counter(s.name for s in scenarios)
    assert len(families) == 5
    good = [s for s in scenarios if s.truth == "good"]
    assert all(
        s.canary.error_multiplier <= 1.2 and s.canary.latency_multiplier <= 1.08 for s in good
    )
    rates = [s.traffic.requests_per_second for s in scenarios]
    assert min(rates) < 1 and max(rates) > 500


def test_good_fraction_sets_the_share_of_good_canaries() -> None:
    rng = np.random.default_rng(1)
    scenarios = [random_scenario(rng, good_fraction=0.75) for _ in range(2000)]
    good = sum(s.truth == "good" for s in scenarios) / 2000
    assert 0.72 < good < 0.78
    # the default keeps the stream of the shipped config's runs (0.5)
    assert random_scenario(np.random.default_rng(9)) == random_scenario(
        np.random.default_rng(9), good_fraction=0.5
    )
