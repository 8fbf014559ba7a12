"""Seeded episodes: the shipped evaluation reproduces; the policy runs as the service runs it."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy
from decision_service.shield import ShieldConfig
from scenarios import load_scenarios
from tests.conftest import REPO_ROOT, SCENARIOS_DIR
from tests.support.onnx_models import build_model
from training import evaluate
from training.env import CanaryRolloutEnv, EnvConfig
from training.episodes import POLICY, AgentSpec, Suite, _run_batch, run_episode_agents

SHIPPED_CSV = REPO_ROOT / "models" / "evaluation" / "episodes.csv.gz"
EPISODES = 12


def _rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_shipped_evaluation_reproduces_row_for_row(tmp_path: Path) -> None:
    """The first episodes of every scenario, every agent: the same rows, byte for byte, as the
    committed per-episode CSV (episode seeds depend only on scenario and index, so a short run
    is a prefix of the long one). Any change to the decision path, the simulator, the
    baselines or the scoring that moves a number shows here."""
    out = tmp_path / "episodes.csv"
    evaluate.main(
        [
            "--scenarios",
            str(SCENARIOS_DIR),
            "--scenarios",
            str(SCENARIOS_DIR / "holdout"),
            "--episodes",
            str(EPISODES),
            "--episodes-csv",
            str(out),
            "--workers",
            "1",
        ]
    )
    produced = _rows(out)
    key = ("scenario", "agent", "seed")
    shipped = {tuple(r[k] for k in key): r for r in _rows(SHIPPED_CSV)}
    files = len(load_scenarios([SCENARIOS_DIR, SCENARIOS_DIR / "holdout"]))
    assert len(produced) == files * len(evaluate.AGENT_ORDER) * EPISODES
    mismatched = [r for r in produced if shipped.get(tuple(r[k] for k in key)) != r]
    assert not mismatched, f"{len(mismatched)} rows differ, e.g. {mismatched[:2]}"


def test_the_evaluated_policy_is_held_by_the_step_count_rule(tmp_path: Path) -> None:
    """A model that promotes early in a step and aborts late: the pipeline holds its early
    promotes (``step_count``), in the environment exactly as in the service."""
    impatient = OnnxPolicy(
        build_model(
            tmp_path / "impatient.onnx",
            q_values=(0.0, 1.0, 0.0),
            weights={
                ("measurements_at_step", "promote"): -2.0,
                ("measurements_at_step", "abort"): 0.5,
            },
        )
    )
    steady = OnnxPolicy(build_model(tmp_path / "steady.onnx", q_values=(0.0, 1.0, 0.0)))
    scenario = load_scenarios(SCENARIOS_DIR / "healthy.yaml")
    env = CanaryRolloutEnv(scenario, EnvConfig())
    env.reset(seed=3)
    _, _, _, _, info = env.step_policy(impatient)
    assert (info["proposed"], info["decision"]) == ("promote", "hold")
    assert env.last_evaluation is not None
    assert env.last_evaluation.guarded.guardrail == "step_count"
    env.reset(seed=3)
    _, _, _, _, info = env.step_policy(steady)
    assert info["decision"] == "promote" and env.weight == 10


def _trajectory(env: CanaryRolloutEnv, observation, info, actions) -> list:
    """Observations, rewards and infos of ``env`` (just reset) under a fixed action cycle."""
    steps = [(observation.tolist(), info)]
    i = 0
    while "outcome" not in info:
        observation, reward, _, _, info = env.step(actions[i % len(actions)])
        steps.append((observation.tolist(), reward, info))
        i += 1
    return steps


def test_a_fork_runs_the_episode_a_fresh_reset_runs() -> None:
    """Every agent of an evaluation starts from a copy of one reset: each copy, whatever it
    then does, lives exactly the episode a fresh ``reset(seed)`` would have given it, and the
    copies do not share what an episode changes (the original runs on after them)."""
    shielded = EnvConfig(shield=ShieldConfig(), guardrails=GuardrailConfig())
    configs = [EnvConfig(), EnvConfig(guardrails=GuardrailConfig()), shielded, shielded]
    plans = [[0, 0, 1], [1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0, 1, 2]]
    for family in ("everything", "incident_regression", "load_dependent"):
        suite = Suite.stress(family)
        for index in range(3):
            seed = suite.seed(index)
            fresh = []
            for config, plan in zip(configs, plans, strict=True):
                env = CanaryRolloutEnv(suite.source(), config)
                observation, info = env.reset(seed=seed, options={"allow_terminal": True})
                fresh.append(_trajectory(env, observation, info, plan))
            env = CanaryRolloutEnv(suite.source(), configs[-1])
            observation, info = env.reset(seed=seed, options={"allow_terminal": True})
            forks = env.forks(configs[:-1])
            forked = [
                _trajectory(copy, observation, info, plan)
                for copy, plan in zip([*forks, env], plans, strict=True)
            ]
            assert forked == fresh


def test_a_fork_refuses_a_config_that_changes_the_episode() -> None:
    env = CanaryRolloutEnv(Suite.stress("everything").source(), EnvConfig())
    env.reset(seed=1)
    with pytest.raises(ValueError, match="may differ only"):
        env.forks([EnvConfig(patience=3)])
    with pytest.raises(ValueError, match="may differ only"):
        env.forks([EnvConfig(shield=ShieldConfig(alpha_promote=0.2))])


def test_a_fork_cannot_read_more_than_was_computed() -> None:
    env = CanaryRolloutEnv(Suite.stress("everything").source(), EnvConfig(reads="evidence"))
    env.reset(seed=1)
    assert len(env.forks([EnvConfig(reads="metrics"), EnvConfig(reads="evidence")])) == 2
    with pytest.raises(ValueError, match="cannot read more"):
        env.forks([EnvConfig()])


def test_a_shield_in_the_pipeline_needs_the_observation() -> None:
    with pytest.raises(ValueError, match="needs its verdict"):
        EnvConfig(shield=ShieldConfig(), reads="evidence")
    with pytest.raises(ValueError, match="reads must be one of"):
        EnvConfig(reads="everything")  # type: ignore[arg-type]


@pytest.mark.parametrize("family", ["everything", "stable_incidents", "low_traffic"])
def test_each_agent_decides_the_same_whatever_else_is_computed(family: str) -> None:
    """An agent is given only what it reads (``EnvConfig.reads``): each baseline lives the
    same episodes, record for record, as when the environment computes everything (the
    observation with the shield's verdict) and as when it runs alone, and the policy lives the
    same ones with the baselines as alone."""
    tuned = evaluate.load_baseline_params(evaluate.BASELINES_CONFIG)
    specs = [AgentSpec(name, tuned.get(name)) for name in evaluate.AGENT_ORDER if name != POLICY]
    policy = AgentSpec(
        POLICY,
        model_path=str(DEFAULT_MODEL_PATH),
        guardrails=GuardrailConfig(),
        shield=ShieldConfig(),
    )
    suite = Suite.stress(family)
    seeds = [suite.seed(i) for i in range(12)]
    own = _run_batch(([*specs, policy], suite, seeds, EnvConfig()))
    for spec, records in zip(specs, own[:-1], strict=True):
        agent = spec.build()
        assert agent.reads != "observation"
        everything = [
            run_episode_agents([(agent, EnvConfig(reads="observation"))], suite, seed)[0]
            for seed in seeds
        ]
        assert records == everything, spec.name
        assert records == _run_batch(([spec], suite, seeds, EnvConfig()))[0], spec.name
    assert own[-1] == _run_batch(([policy], suite, seeds, EnvConfig()))[0]
