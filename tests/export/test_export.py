"""Export: the shipped SB3 model → ONNX with metadata, parity with torch on 10,000 observations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from decision_service.features import FEATURE_HIGH, FEATURE_LOW, FEATURE_NAMES
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy

SB3_MODEL = DEFAULT_MODEL_PATH.with_name("canary-dqn.sb3.zip")
TRAINING_CONFIG = DEFAULT_MODEL_PATH.with_name("canary-dqn.config.yaml")
pytestmark = pytest.mark.skipif(
    not SB3_MODEL.exists(), reason=f"{SB3_MODEL} (the shipped trained model) is not built yet"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from export.onnx_export import export_onnx, load_q_network

    network = load_q_network(SB3_MODEL)
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    export_onnx(network, out, "canary-dqn", "0" * 64)
    return network, out


def test_parity_with_torch_on_10000_observations(exported) -> None:
    from export.onnx_export import check_parity, rollout_observations

    network, path = exported
    parity = check_parity(network, path, rollout_observations(10_000, seed=123))
    assert parity.samples == 10_000
    assert parity.max_abs_diff <= 1e-5
    assert parity.argmax_mismatches == 0


def test_parity_holds_at_the_corners_of_the_feature_space(exported) -> None:
    """Uniform within the bounds reaches |Q| ~ 30, where float32 itself resolves ~2e-6:
    the same argmax, and |dQ| within 1e-5 of max(1, |Q|)."""
    from export.onnx_export import check_parity, uniform_observations

    network, path = exported
    stress = check_parity(network, path, uniform_observations(10_000, seed=123))
    assert stress.argmax_mismatches == 0
    assert stress.max_scaled_diff <= 1e-5


def test_one_self_contained_file_with_metadata(exported) -> None:
    _, path = exported
    assert not list(path.parent.glob("*.data"))
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["feature_names"]) == list(FEATURE_NAMES)
    assert json.loads(meta["action_names"]) == ["hold", "promote", "abort"]
    assert meta["feature_spec_version"]
    OnnxPolicy(path)  # the service's loader accepts it


def test_shipped_onnx_is_the_export_of_the_shipped_model(exported) -> None:
    _, path = exported
    rng = np.random.default_rng(7)
    obs = rng.uniform(FEATURE_LOW, FEATURE_HIGH, size=(2000, len(FEATURE_NAMES)))
    obs = obs.astype(np.float32)
    shipped = OnnxPolicy(DEFAULT_MODEL_PATH)
    assert np.allclose(shipped.q_values(obs), OnnxPolicy(path).q_values(obs), atol=1e-6)


def test_shipped_metadata_names_its_training_config() -> None:
    import hashlib

    info = OnnxPolicy(DEFAULT_MODEL_PATH).info
    assert info.training_config_sha256 == hashlib.sha256(TRAINING_CONFIG.read_bytes()).hexdigest()


def test_cli_refuses_a_run_without_config(tmp_path: Path) -> None:
    import shutil

    from export.__main__ import main

    shutil.copy(SB3_MODEL, tmp_path / "best_model.zip")
    with pytest.raises(FileNotFoundError, match=r"config\.yaml"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
