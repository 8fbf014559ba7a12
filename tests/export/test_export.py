"""Export: the shipped SB3 members → one ONNX with metadata, parity with torch on 10,000
observations; ensembles; the files an export writes beside the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from decision_service.features import FEATURE_HIGH, FEATURE_LOW, FEATURE_NAMES
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy

SB3_MEMBERS_DIR = DEFAULT_MODEL_PATH.with_name("canary-dqn.sb3")
SB3_MEMBERS = sorted(SB3_MEMBERS_DIR.glob("*.zip"))
TRAINING_CONFIG = DEFAULT_MODEL_PATH.with_name("canary-dqn.config.yaml")
pytestmark = pytest.mark.skipif(
    not SB3_MEMBERS, reason=f"{SB3_MEMBERS_DIR} (the shipped trained model) is not built yet"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from export.onnx_export import export_onnx, load_ensemble

    network = load_ensemble(SB3_MEMBERS)
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
    assert shipped.members == len(SB3_MEMBERS)  # the pipeline asks them before a declined abort


def test_the_file_outputs_every_members_q_values_and_their_mean(exported) -> None:
    """``member_q_values`` holds each member's Q-values, in the order of the members; the
    ``q_values`` output is their mean, and the service reads both from one inference."""
    import torch

    from export.onnx_export import load_q_network

    _, path = exported
    policy = OnnxPolicy(path)
    assert policy.members == len(SB3_MEMBERS)
    obs = np.random.default_rng(5).uniform(FEATURE_LOW, FEATURE_HIGH, size=(32, len(FEATURE_NAMES)))
    obs = obs.astype(np.float32)
    with torch.no_grad():
        expected = np.stack(
            [load_q_network(m)(torch.as_tensor(obs)).numpy() for m in SB3_MEMBERS], axis=1
        )
    for row, members in zip(obs, expected, strict=True):
        q, got = policy.ensemble_q_values(row)
        assert np.allclose(got, members, atol=1e-5)
        assert np.allclose(q, got.mean(axis=0), atol=1e-6)
        assert np.array_equal(q, policy.q_values(row)[0])


def test_a_file_without_member_outputs_is_served_as_one_member(exported, tmp_path: Path) -> None:
    """A model exported before the members were an output (or by another tool) still loads:
    its Q-values are its only member's."""
    from decision_service.policy import MEMBERS_OUTPUT_NAME

    _, path = exported
    proto = onnx.load(str(path))
    kept = [o for o in proto.graph.output if o.name != MEMBERS_OUTPUT_NAME]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save_model(proto, str(old))
    policy = OnnxPolicy(old)
    assert policy.members is None
    row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    q, members = policy.ensemble_q_values(row)
    assert members.shape == (1, 3)
    assert np.array_equal(members[0], q)


def test_shipped_metadata_names_its_training_config() -> None:
    import hashlib

    import yaml

    info = OnnxPolicy(DEFAULT_MODEL_PATH).info
    assert info.training_config_sha256 == hashlib.sha256(TRAINING_CONFIG.read_bytes()).hexdigest()
    document = yaml.safe_load(TRAINING_CONFIG.read_text())
    if len(SB3_MEMBERS) > 1:
        # every shipped member has its run's config in the document, under its file name
        assert sorted(m["member"] for m in document["members"]) == [p.name for p in SB3_MEMBERS]
        assert all(m["config"]["seed"] is not None for m in document["members"])


def test_an_ensemble_outputs_the_mean_of_its_members() -> None:
    import torch

    from export.onnx_export import QEnsemble, load_q_network

    first = load_q_network(SB3_MEMBERS[0])
    obs = torch.as_tensor(
        np.random.default_rng(3).uniform(FEATURE_LOW, FEATURE_HIGH, size=(64, len(FEATURE_NAMES))),
        dtype=torch.float32,
    )
    second = load_q_network(SB3_MEMBERS[0])
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.05)
        expected = (first(obs) + second(obs)) / 2
        assert torch.allclose(QEnsemble([first, second])(obs), expected, atol=1e-6)
        assert torch.equal(QEnsemble([first])(obs), first(obs))
    with pytest.raises(ValueError, match="at least one"):
        QEnsemble([])


def _fake_run(root: Path, name: str, seed: int) -> Path:
    import shutil

    run = root / name
    run.mkdir()
    shutil.copy(SB3_MEMBERS[0], run / "best_model.zip")
    shutil.copy(SB3_MEMBERS[-1], run / "final_model.zip")
    (run / "config.yaml").write_text(f"run_name: {name}\nseed: {seed}\n")
    return run


def test_cli_exports_an_ensemble_with_its_config_document_and_members(tmp_path: Path) -> None:
    import hashlib

    import yaml

    from export.__main__ import main

    a, b = _fake_run(tmp_path, "a", 1), _fake_run(tmp_path, "b", 2)
    out = tmp_path / "out" / "m.onnx"
    argv = ["--run", str(a), "--run", str(b), "--model", "best_model.zip"]
    assert (
        main([*argv, "--model", "final_model.zip", "--out", str(out), "--parity-samples", "500"])
        == 0
    )
    document = (tmp_path / "out" / "m.config.yaml").read_bytes()
    assert OnnxPolicy(out).info.training_config_sha256 == hashlib.sha256(document).hexdigest()
    members = yaml.safe_load(document)["members"]
    assert [m["member"] for m in members] == [
        "a-best_model.zip",
        "a-final_model.zip",
        "b-best_model.zip",
        "b-final_model.zip",
    ]
    assert [m["config"]["seed"] for m in members] == [1, 1, 2, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "m.sb3").iterdir()) == [
        m["member"] for m in members
    ]


def test_cli_single_member_keeps_the_runs_own_config(tmp_path: Path) -> None:
    from export.__main__ import main

    a = _fake_run(tmp_path, "a", 5)
    out = tmp_path / "m.onnx"
    assert main(["--run", str(a), "--out", str(out), "--parity-samples", "200"]) == 0
    assert (tmp_path / "m.config.yaml").read_bytes() == (a / "config.yaml").read_bytes()


def test_cli_refuses_a_run_without_config(tmp_path: Path) -> None:
    import shutil

    from export.__main__ import main

    shutil.copy(SB3_MEMBERS[0], tmp_path / "best_model.zip")
    with pytest.raises(FileNotFoundError, match=r"config\.yaml"):
        main(["--run", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
