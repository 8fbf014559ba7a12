"""The gymnasium environment: API conformance, determinism, rewards and episode ends."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from decision_service.actions import ABORT, HOLD, PROMOTE
from decision_service.guardrails import GuardrailConfig
from scenarios import load_scenario, load_scenarios
from tests.conftest import SCENARIOS_DIR
from training import env as env_module
from training.env import CanaryRolloutEnv, EnvConfig
from training.simulator import shield_window


def make(name: str, **config: object) -> CanaryRolloutEnv:
    return CanaryRolloutEnv([load_scenario(SCENARIOS_DIR / f"{name}.yaml")], EnvConfig(**config))


def test_check_env_passes() -> None:
    check_env(CanaryRolloutEnv(load_scenarios(SCENARIOS_DIR)), skip_render_check=True)


def _rollout(env: CanaryRolloutEnv, seed: int, actions: list[int]) -> list:
    obs, _ = env.reset(seed=seed)
    trace = [obs.tolist()]
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        trace.append((obs.tolist(), reward, terminated, info.get("outcome")))
        if terminated:
            break
    return trace


def test_same_seed_same_episode() -> None:
    actions = [HOLD, PROMOTE, HOLD, PROMOTE, PROMOTE, HOLD, PROMOTE]
    env = CanaryRolloutEnv(load_scenarios(SCENARIOS_DIR))
    assert _rollout(env, 11, actions) == _rollout(env, 11, actions)
    assert _rollout(env, 11, actions) != _rollout(env, 12, actions)


def test_promoting_a_good_canary_through_every_step() -> None:
    env = make("healthy")
    env.reset(seed=1)
    total = 0.0
    for i in range(7):
        _, reward, terminated, _, info = env.step(PROMOTE)
        total += reward
        assert terminated == (i == 6)
    assert info["outcome"] == "promoted"
    assert info["decisions"] == 7
    assert info["blast_radius"] == 0
    expected = env_module.REWARD_PROMOTE_GOOD - 7 * env_module.COST_PER_DECISION
    assert info["objective"] == pytest.approx(expected)


def test_bad_promotion_costs_most_and_counts_blast_radius() -> None:
    env = make("buggy")
    env.reset(seed=2)
    for _ in range(7):
        _, _, terminated, _, info = env.step(PROMOTE)
    assert terminated and info["outcome"] == "promoted" and info["truth"] == "bad"
    assert info["blast_radius"] > 0
    assert info["objective"] < -env_module.COST_BAD_PROMOTION


def test_abort_rewards_depend_on_truth() -> None:
    bad, good = make("buggy"), make("healthy")
    bad.reset(seed=3)
    good.reset(seed=3)
    _, r_bad, t_bad, _, info_bad = bad.step(ABORT)
    _, r_good, t_good, _, info_good = good.step(ABORT)
    assert t_bad and t_good
    assert r_bad == env_module.REWARD_ABORT_BAD
    assert r_good == -env_module.COST_FALSE_ABORT
    assert info_bad["outcome"] == info_good["outcome"] == "aborted"


def test_patience_exhausted_pauses() -> None:
    env = make("healthy", patience=3)
    env.reset(seed=4)
    outcomes = []
    for _ in range(3):
        _, _, terminated, _, info = env.step(HOLD)
        outcomes.append(terminated)
    assert outcomes == [False, False, True]
    assert info["outcome"] == "paused"
    assert info["decisions"] == 3 and info["holds"] == 3


def test_the_pause_is_priced_by_the_config_for_training_only() -> None:
    """The same held episode costs ``COST_PAUSE`` (the objective) more at the pause by default,
    and ``pause_cost`` more with the training's shaping: nothing else changes."""
    ends = {}
    for cost in (None, 3.0):
        env = (
            make("healthy", patience=3)
            if cost is None
            else make("healthy", patience=3, pause_cost=cost)
        )
        env.reset(seed=4)
        rewards = [env.step(HOLD)[1] for _ in range(3)]
        ends[cost] = rewards
    assert ends[None][:2] == ends[3.0][:2]
    assert ends[None][2] - ends[3.0][2] == pytest.approx(3.0 - env_module.COST_PAUSE)
    assert env_module.COST_PAUSE == 1.0  # the objective every agent is scored on


def test_measurements_at_step_counts_and_resets() -> None:
    env = make("healthy")
    env.reset(seed=5)
    assert env.measurements_at_step == 0
    env.step(HOLD)
    env.step(HOLD)
    assert env.measurements_at_step == 2
    env.step(PROMOTE)
    assert env.measurements_at_step == 0
    assert env.snapshot.step_weight == 10


def test_no_data_is_an_automatic_hold() -> None:
    """Low traffic: intervals without canary requests never reach the agent."""
    env = make("low_traffic")
    auto_holds = 0
    for seed in range(30):
        _, info = env.reset(seed=seed, options={"allow_terminal": True})
        if "outcome" in info:
            assert info["outcome"] == "paused"
            auto_holds += info["holds"]
            continue
        assert env.snapshot.canary.requests > 0
        auto_holds += env.measurements_at_step
    assert auto_holds > 0


def test_guardrails_block_promotion_without_evidence() -> None:
    env = make("low_traffic", guardrails=GuardrailConfig(min_canary_requests=10**9))
    env.reset(seed=6)
    _, _, _, _, info = env.step(PROMOTE)
    assert info["proposed"] == "promote" and info["decision"] == "hold"


def test_observations_within_space() -> None:
    env = CanaryRolloutEnv(load_scenarios(SCENARIOS_DIR))
    rng = np.random.default_rng(0)
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            assert env.observation_space.contains(obs)
            obs, _, done, _, _ = env.step(int(rng.choice(3, p=[0.5, 0.45, 0.05])))


@pytest.mark.parametrize(
    "kwargs", [{"weights": ()}, {"weights": (50, 10)}, {"patience": 0}, {"weights": (0, 50)}]
)
def test_config_validation(kwargs) -> None:
    with pytest.raises(ValueError):
        EnvConfig(**kwargs)


def test_gymnasium_builds_it_by_name() -> None:
    """rl-zoo and ``gym.make`` reach the environment as ``CanaryRollout-v0``."""
    import gymnasium

    import training  # noqa: F401  # registers the id

    env = gymnasium.make("CanaryRollout-v0")
    observation, _ = env.reset(seed=3)
    assert observation.shape == env.observation_space.shape
    check_env(env.unwrapped)


def test_the_episode_keeps_every_interval_it_drew_as_the_shield_saw_it() -> None:
    """``baseline_intervals`` and ``history`` (what training.openmetrics writes as Prometheus
    history) are the windows the shield was given, interval for interval."""
    env = make("flaky")
    env.reset(seed=4)
    seen = list(env.recent_intervals)
    for action in (HOLD, PROMOTE, HOLD, PROMOTE):
        _, _, done, _, _ = env.step(action)
        seen += env.recent_intervals
        if done:
            break
    assert [i.index for i in env.history] == list(range(len(env.history)))
    assert env.history == seen
    windows = env.windows
    assert [shield_window(v) for v in env.baseline_intervals] == list(windows.baseline)
    assert [(shield_window(i.canary), shield_window(i.stable)) for i in env.history] == list(
        windows.life
    )
    env.reset(seed=4)
    assert [i.index for i in env.history] == [0]
