"""scripts/declined_aborts.py: its counterfactual is the episode replayed with the abort taken."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from decision_service.actions import ACTION_NAMES
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy
from training.episodes import Suite

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "declined_aborts.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("declined_aborts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["declined_aborts"] = module
    spec.loader.exec_module(module)
    return module


def test_the_counterfactual_is_the_episode_with_the_abort_taken() -> None:
    """The first declined aborts of a stress family where the policy declines many (a bad
    canary whose regression shows late): replayed with the same seed, the policy's decisions up
    to the declined one and then the abort, each episode ends with the objective the script
    priced, to the last bit."""
    script = _script()
    policy = OnnxPolicy(DEFAULT_MODEL_PATH)
    suite = Suite.stress("load_dependent")
    checked = 0
    for index in range(40):
        objective, allowed, item = script.episode(suite, index, policy)
        if item is None:
            continue
        assert allowed and item.objective == objective != item.counterfactual
        env = script.CanaryRolloutEnv(
            suite.source(),
            script.EnvConfig(guardrails=script.GuardrailConfig(), shield=script.ShieldConfig()),
        )
        _, info = env.reset(seed=suite.seed(index), options={"allow_terminal": True})
        for _ in range(item.decision):
            _, _, _, _, info = env.step_policy(policy)
        _, _, done, _, info = env.step(ACTION_NAMES.index("abort"))
        assert done and info["outcome"] == "aborted"
        assert info["objective"] == pytest.approx(item.counterfactual, abs=1e-9)
        checked += 1
        if checked == 3:
            break
    assert checked == 3
