"""The classical baselines decide the clear cases the way their rules say."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from scenarios import load_scenario
from tests.conftest import SCENARIOS_DIR
from training.baselines import (
    BASELINES,
    MannWhitneyJudge,
    SequentialErrorTest,
    StaticThreshold,
    make_baseline,
    mann_whitney_p,
)
from training.env import EnvConfig
from training.episodes import run_episode


def outcomes(agent, name: str, n: int = 40) -> Counter:
    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml")
    return Counter(run_episode(agent, scenario, seed, EnvConfig()).outcome for seed in range(n))


@pytest.mark.parametrize(
    "agent",
    [
        StaticThreshold(max_error_rate=0.03, max_p95_slo_factor=2.0),
        MannWhitneyJudge(marginal=50),
        SequentialErrorTest(ratio=2.0, alpha=0.05, beta=0.2),
    ],
    ids=lambda a: a.name,
)
def test_buggy_is_aborted_and_healthy_mostly_promoted(agent) -> None:
    assert outcomes(agent, "buggy")["aborted"] >= 38
    assert outcomes(agent, "healthy")["promoted"] >= 20


def test_static_threshold_cannot_see_a_small_regression() -> None:
    # 1 % errors against a 5 % limit: the typical template promotes a 2x regression
    assert (
        outcomes(StaticThreshold(max_error_rate=0.05), "small_error_regression")["promoted"] >= 35
    )


def test_sequential_test_waits_for_evidence() -> None:
    decided = outcomes(SequentialErrorTest(alpha=0.01, beta=0.01), "low_traffic", 20)
    assert decided["paused"] >= 10


def test_mann_whitney_holds_without_samples() -> None:
    judge = MannWhitneyJudge(min_scrapes=10**6)
    assert outcomes(judge, "healthy", 5) == Counter({"paused": 5})


def test_registry_and_grids() -> None:
    assert set(BASELINES) == {
        "static_threshold",
        "mann_whitney",
        "sequential",
        "anytime_valid",
        "shield",
    }
    for name, cls in BASELINES.items():
        agent = make_baseline(name, {k: v[0] for k, v in cls.GRID.items()})
        assert agent.name == name


def test_mann_whitney_p_is_scipys_bit_for_bit() -> None:
    """The judge's own Mann–Whitney p-value equals scipy's exactly, ties and all (the judge
    compares it with a threshold, so any difference could move an evaluated episode)."""
    rng = np.random.default_rng(20261201)
    for trial in range(2000):
        n1, n2 = int(rng.integers(1, 40)), int(rng.integers(1, 120))
        kind = trial % 4
        if kind == 0:  # continuous, shifted
            x, y = rng.normal(0.3, size=n1), rng.normal(size=n2)
        elif kind == 1:  # error rates of 20-request scrapes: many ties
            x, y = rng.binomial(20, 0.05, n1) / 20, rng.binomial(20, 0.04, n2) / 20
        elif kind == 2:  # rounded latencies: some ties
            x, y = np.round(rng.normal(size=n1), 1), np.round(rng.normal(size=n2), 1)
        else:  # almost all zero: nearly everything tied
            x, y = np.zeros(n1), rng.binomial(1, 0.01, n2).astype(float)
        expected = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
        assert mann_whitney_p(x, y) == expected, (trial, n1, n2)
