"""Training: the typed config rejects bad files; a tiny run writes model, config and curve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from training.train import TrainConfig, config_sha256, dump_config, load_config, train

SHIPPED = Path(__file__).resolve().parents[2] / "training" / "configs" / "dqn.yaml"


def test_shipped_config_validates() -> None:
    config = load_config(SHIPPED)
    assert config.total_timesteps >= 500_000  # not a smoke-test config
    assert config.env_config().guardrails is not None
    assert len(config.exploration.action_probabilities) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"dqn": {"learning_rate": -1}},
        {"dqn": {"gamma": 1.5}},
        {"typo_key": 1},
        {"dqn": {"unknown": 1}},
        {"library_fraction": 2},
        {"run_name": "../escape"},
    ],
)
def test_bad_configs_are_rejected(change: dict) -> None:
    doc = yaml.safe_load(SHIPPED.read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            doc.setdefault(key, {}).update(value)
        else:
            doc[key] = value
    with pytest.raises(ValidationError):
        TrainConfig.model_validate(doc)


def test_config_hash_is_of_the_written_config() -> None:
    config = load_config(SHIPPED)
    assert config_sha256(config) == config_sha256(TrainConfig.model_validate(config.model_dump()))
    assert "total_timesteps" in dump_config(config)


def test_tiny_training_run_writes_its_outputs(tmp_path: Path) -> None:
    doc = yaml.safe_load(SHIPPED.read_text())
    doc.update(
        run_name="tiny", total_timesteps=2000, scenarios=str(SHIPPED.parents[2] / "scenarios")
    )
    doc["dqn"].update(learning_starts=500, buffer_size=5000, batch_size=32)
    doc["evaluation"] = {
        "every_steps": 1000,
        "episodes_per_scenario": 2,
        "generated_episodes": 3,
        "keep_checkpoints": True,
    }
    best = train(TrainConfig.model_validate(doc), tmp_path)
    run = tmp_path / "tiny"
    assert best == run / "best_model.zip" and best.is_file()
    assert (run / "final_model.zip").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == 2000
    curve = (run / "evaluations.csv").read_text().splitlines()
    assert curve[0].startswith("step,seconds,objective_mean") and len(curve) >= 3
    assert curve[0].endswith(",generated")  # the randomised scenarios' half of the score
    assert (run / "checkpoints" / "step_1000.zip").is_file()


def test_validation_decides_as_the_service_does() -> None:
    """The validation policy answers a batch (the pipeline's step-count check asks one), and
    the validation episodes are scored as evaluation scores them: a pause at the objective's
    price, not the training reward's, and the shield's best allowed action."""
    import numpy as np
    import torch

    from decision_service.features import FEATURE_NAMES
    from decision_service.pipeline import ACTION_NAMES
    from scenarios import load_scenarios
    from training.env import COST_PAUSE
    from training.train import TorchQPolicy, validate

    net = torch.nn.Linear(len(FEATURE_NAMES), len(ACTION_NAMES))
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always hold
    policy = TorchQPolicy(net)
    batch = np.zeros((9, len(FEATURE_NAMES)), dtype=np.float32)
    assert policy.q_values(batch).shape == (9, len(ACTION_NAMES))
    assert policy.q_values(batch[0]).shape == (1, len(ACTION_NAMES))

    config = load_config(SHIPPED)
    healthy = [s for s in load_scenarios(SHIPPED.parents[2] / "scenarios") if s.name == "healthy"]
    score, per = validate(policy, healthy, 2, config.env_config())
    assert config.env.pause_cost != COST_PAUSE  # the shaped price is not what is scored
    # always holding pauses every episode at the first step: the pause at the objective's price
    assert -COST_PAUSE - 0.5 < per["healthy"] < -COST_PAUSE
    assert score == per["healthy"]


def test_validate_scores_an_exported_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--validate MODEL.onnx`` scores a model as checkpoints are chosen, without training."""
    from decision_service.policy import DEFAULT_MODEL_PATH
    from training.train import main

    doc = yaml.safe_load(SHIPPED.read_text())
    doc["scenarios"] = str(SHIPPED.parents[2] / "scenarios" / "healthy.yaml")
    doc["evaluation"] = {"episodes_per_scenario": 2, "generated_episodes": 2}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    assert main(["--config", str(config), "--validate", str(DEFAULT_MODEL_PATH)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["healthy", "generated"]
    healthy, generated = (float(line.split()[1]) for line in lines[:2])
    assert lines[-1].startswith("validation score ")
    # the score is the mean of the two halves (printed rounded)
    assert abs(float(lines[-1].split()[-1]) - (healthy + generated) / 2) < 1e-3
