"""Randomised training scenarios are valid, varied and balanced."""

from __future__ import annotations

from collections import Counter

import numpy as np

from training.generator import BAD_FAMILIES, random_scenario


def test_generator_is_seeded_and_balanced() -> None:
    a = [random_scenario(np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    scenarios = [random_scenario(rng) for _ in range(2000)]
    truths = Counter(s.truth for s in scenarios)
    assert 0.45 < truths["good"] / 2000 < 0.55
    families = Counter(s.name for s in scenarios)
    assert len(families) == 1 + len(BAD_FAMILIES)
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


def test_training_never_draws_from_the_stress_suite() -> None:
    """The stress suite is for evaluation only: the training script does not even import it,
    and its episode seeds are disjoint from the library's evaluation and validation seeds."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    from training.episodes import Suite
    from training.seeds import episode_seed
    from training.stress import FAMILIES

    code = "import json, sys, training.train\nprint(json.dumps('training.stress' in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) is False
    from scenarios import load_scenarios
    from tests.conftest import SCENARIOS_DIR

    library = load_scenarios([SCENARIOS_DIR, SCENARIOS_DIR / "holdout"])
    stress = {Suite.stress(f).seed(i) for f in FAMILIES for i in range(20_000)}
    for salt in ("eval", "validation", "tune"):
        others = {episode_seed(s.name, i, salt) for s in library for i in range(20_000)}
        assert not stress & others, salt
    # and no training family is a stress family
    assert not {f"generated-{t}-{f}" for t in ("good", "bad") for f in BAD_FAMILIES} & {
        f"stress-{f}".replace("_", "-") for f in FAMILIES
    }
