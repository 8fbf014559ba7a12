"""Export a trained SB3 DQN's Q-network to one self-contained ONNX file.

The file's input is ``observation`` (float32, ``[batch, N_FEATURES]``), its output
``q_values`` (float32, ``[batch, 3]`` in ``ACTION_NAMES`` order). Its metadata carries the
feature names and spec version, the action names, the model's name and the SHA-256 of the
training config written next to the SB3 model, so the service can refuse a model that does
not match its feature module and a report can say which training produced it.

Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and writes
the weights inside the file (the dynamo exporter writes ``.onnx.data`` beside it by default).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from stable_baselines3 import DQN

from decision_service.actions import ACTION_NAMES
from decision_service.features import FEATURE_HIGH, FEATURE_LOW, FEATURE_NAMES, FEATURE_SPEC_VERSION
from decision_service.policy import (
    INPUT_NAME,
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


def load_q_network(model_zip: str | Path) -> QNetwork:
    model = DQN.load(str(model_zip), device="cpu")
    network = QNetwork(model).eval()
    return network


def config_hash_for(model_zip: Path) -> str:
    """SHA-256 of the ``config.yaml`` written by ``training.train`` next to the model."""
    config = model_zip.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the training config is missing next to {model_zip}")
    return hashlib.sha256(config.read_bytes()).hexdigest()


def export_onnx(network: QNetwork, out: Path, model_name: str, config_sha256: str) -> Path:
    dummy = torch.zeros((1, len(FEATURE_NAMES)), dtype=torch.float32)
    buffer = io.BytesIO()
    torch.onnx.export(
        network,
        (dummy,),
        buffer,  # type: ignore[arg-type]  # a file-like object is accepted at run time
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
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
        "k8s-rollout-agent canary policy: observation -> Q-values (hold, promote, abort)"
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
    from decision_service.scenarios import LIBRARY_DIR, load_scenarios
    from training.env import CanaryRolloutEnv
    from training.train import mixed_source

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


def check_parity(network: QNetwork, onnx_path: Path, observations: np.ndarray) -> Parity:
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
