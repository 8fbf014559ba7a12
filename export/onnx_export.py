"""Export trained SB3 DQN Q-networks to one self-contained ONNX file.

The file's input is ``observation`` (float32, ``[batch, N_FEATURES]``), its output
``q_values`` (float32, ``[batch, 3]`` in ``ACTION_NAMES`` order). Its metadata carries the
feature names and spec version, the action names, the model's name and the SHA-256 of the
training config document written beside the ONNX file (:func:`write_companions`), so the
service can refuse a model that does not match its feature module and a report can say which
training produced it.

Several members (training seeds, checkpoints) export as one **ensemble**: the graph outputs the
mean of their Q-values (:class:`QEnsemble`), and every member's own Q-values as a second output,
``member_q_values`` (float32, ``[batch, members, 3]``; one member: ``[batch, 1, 3]``;
:class:`WithMembers`). Averaging independently trained networks cancels much of each one's
approximation error, which matters here: between "hold one more interval" and "abort" a single
network's Q-values often differ by less than its own error. Where the shield allows an abort the
mean would decline, the pipeline lets the decline stand only if most members agree
(:attr:`~decision_service.shield.ShieldConfig.decline_share`).

Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and writes
the weights inside the file (the dynamo exporter writes ``.onnx.data`` beside it by default).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import yaml
from stable_baselines3 import DQN

from decision_service.actions import ACTION_NAMES
from decision_service.features import FEATURE_HIGH, FEATURE_LOW, FEATURE_NAMES, FEATURE_SPEC_VERSION
from decision_service.policy import (
    INPUT_NAME,
    MEMBERS_OUTPUT_NAME,
    META_ACTION_NAMES,
    META_FEATURE_NAMES,
    META_FEATURE_SPEC_VERSION,
    META_MODEL_NAME,
    META_TRAINING_CONFIG_SHA256,
    OUTPUT_NAME,
)

OPSET = 17


class QNetwork(torch.nn.Module):
    """The Q-network alone: observation → Q-values (no exploration, no argmax)."""

    def __init__(self, model: DQN) -> None:
        super().__init__()
        self.q_net = model.q_net

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        q_values: torch.Tensor = self.q_net(observation)
        return q_values


class QEnsemble(torch.nn.Module):
    """The mean of the members' Q-values; one member exports exactly as that member."""

    def __init__(self, members: Sequence[QNetwork]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            only: torch.Tensor = self.members[0](observation)
            return only
        stacked = torch.stack([member(observation) for member in self.members])
        return stacked.mean(dim=0)


class WithMembers(torch.nn.Module):
    """What the ONNX file computes: the members' mean Q-values (the ``q_values`` output) and
    each member's (``member_q_values``, ``[batch, members, 3]``), from one pass per member."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        members = list(network.members) if isinstance(network, QEnsemble) else [network]
        self.members = torch.nn.ModuleList(members)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.stack([member(observation) for member in self.members])
        # the mean as QEnsemble takes it (over the first axis), so q_values is that graph's
        return stacked.mean(dim=0), stacked.transpose(0, 1)


def load_q_network(model_zip: str | Path) -> QNetwork:
    model = DQN.load(str(model_zip), device="cpu")
    network = QNetwork(model).eval()
    return network


def load_ensemble(model_zips: Sequence[Path]) -> QEnsemble:
    return QEnsemble([load_q_network(path) for path in model_zips]).eval()


def run_config(model_zip: Path) -> Path:
    """The ``config.yaml`` written by ``training.train`` next to the model."""
    config = model_zip.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the training config is missing next to {model_zip}")
    return config


def member_name(model_zip: Path) -> str:
    """``<run folder>-<model file>``: unique across runs and checkpoints."""
    return f"{model_zip.parent.name}-{model_zip.name}"


def training_config_document(model_zips: Sequence[Path]) -> str:
    """The training config behind an export: the run's own file for one member; for an ensemble,
    every member's run config under ``members`` (each one reproduces that member)."""
    if len(model_zips) == 1:
        return run_config(model_zips[0]).read_text(encoding="utf-8")
    members = [
        {
            "member": member_name(path),
            "config": yaml.safe_load(run_config(path).read_text(encoding="utf-8")),
        }
        for path in model_zips
    ]
    return yaml.safe_dump(
        {"ensemble": "mean of the members' Q-values", "members": members}, sort_keys=False
    )


def companion_paths(onnx_path: Path) -> tuple[Path, Path]:
    """Where an export puts its training config and its SB3 members, beside the ONNX file:
    ``<stem>.config.yaml`` and ``<stem>.sb3/``."""
    stem = onnx_path.with_suffix("")
    return stem.with_name(stem.name + ".config.yaml"), stem.with_name(stem.name + ".sb3")


def write_companions(model_zips: Sequence[Path], onnx_path: Path) -> str:
    """Write the training config document and copy the SB3 members beside the ONNX file (so a
    shipped model can be re-exported and checked); returns the document's SHA-256."""
    config_path, members_dir = companion_paths(onnx_path)
    document = training_config_document(model_zips).encode("utf-8")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_bytes(document)
    if members_dir.is_dir():
        shutil.rmtree(members_dir)
    members_dir.mkdir()
    for path in model_zips:
        shutil.copyfile(path, members_dir / member_name(path))
    return hashlib.sha256(document).hexdigest()


def export_onnx(network: torch.nn.Module, out: Path, model_name: str, config_sha256: str) -> Path:
    dummy = torch.zeros((1, len(FEATURE_NAMES)), dtype=torch.float32)
    buffer = io.BytesIO()
    torch.onnx.export(
        WithMembers(network).eval(),
        (dummy,),
        buffer,  # type: ignore[arg-type]  # a file-like object is accepted at run time
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME, MEMBERS_OUTPUT_NAME],
        dynamic_axes={
            INPUT_NAME: {0: "batch"},
            OUTPUT_NAME: {0: "batch"},
            MEMBERS_OUTPUT_NAME: {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        META_FEATURE_NAMES: json.dumps(list(FEATURE_NAMES)),
        META_ACTION_NAMES: json.dumps(list(ACTION_NAMES)),
        META_FEATURE_SPEC_VERSION: FEATURE_SPEC_VERSION,
        META_MODEL_NAME: model_name,
        META_TRAINING_CONFIG_SHA256: config_sha256,
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        "k8s-rollout-agent canary policy: observation -> Q-values (hold, promote, abort), "
        "the members' mean and each member's"
    )
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    return out


@dataclass(frozen=True)
class Parity:
    """torch vs onnxruntime on one set of observations."""

    samples: int
    max_abs_diff: float
    max_scaled_diff: float  # |dQ| / max(1, |Q|): float32 resolution grows with |Q|
    argmax_mismatches: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_ABS_TOLERANCE and self.argmax_mismatches == 0


PARITY_ABS_TOLERANCE = 1e-5


def rollout_observations(samples: int, seed: int = 0) -> np.ndarray:
    """Observations the service meets: states of simulated rollouts (library and randomised
    scenarios, a random mostly-hold policy so every step and weight is visited)."""
    from scenarios import LIBRARY_DIR, load_scenarios
    from training.env import CanaryRolloutEnv
    from training.generator import mixed_source

    env = CanaryRolloutEnv(mixed_source(load_scenarios(LIBRARY_DIR), 0.3))
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    episode = 0
    while len(rows) < samples:
        observation, _ = env.reset(seed=seed * 1_000_003 + episode)
        episode += 1
        done = False
        while not done and len(rows) < samples:
            rows.append(observation)
            action = int(rng.choice(3, p=[0.6, 0.35, 0.05]))
            observation, _, done, _, _ = env.step(action)
    return np.asarray(rows, dtype=np.float32)


def uniform_observations(samples: int, seed: int = 0) -> np.ndarray:
    """Observations drawn uniformly within every feature's bounds (corners included)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(FEATURE_LOW, FEATURE_HIGH, size=(samples, len(FEATURE_NAMES)))
    return obs.astype(np.float32)


def check_parity(network: torch.nn.Module, onnx_path: Path, observations: np.ndarray) -> Parity:
    """Compare torch and onnxruntime (as the service configures it) on ``observations``."""
    from decision_service.policy import OnnxPolicy

    with torch.no_grad():
        expected = network(torch.as_tensor(observations)).numpy()
    actual = OnnxPolicy(onnx_path).q_values(observations)
    diff = np.abs(expected - actual)
    return Parity(
        samples=len(observations),
        max_abs_diff=float(diff.max()),
        max_scaled_diff=float((diff / np.maximum(1.0, np.abs(expected))).max()),
        argmax_mismatches=int(np.sum(expected.argmax(axis=1) != actual.argmax(axis=1))),
    )
