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
    doc["evaluation"] = {"every_steps": 1000, "episodes_per_scenario": 2}
    best = train(TrainConfig.model_validate(doc), tmp_path)
    run = tmp_path / "tiny"
    assert best == run / "best_model.zip" and best.is_file()
    assert (run / "final_model.zip").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == 2000
    curve = (run / "evaluations.csv").read_text().splitlines()
    assert curve[0].startswith("step,seconds,objective_mean") and len(curve) >= 3
