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
import onnxruntime as ort
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
        return self.q_net(observation)


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
        buffer,
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
    proto.doc_string = "k8s-rollout-agent canary policy: observation -> Q-values (hold, promote, abort)"
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    return out


@dataclass(frozen=True)
class Parity:
    samples: int
    max_abs_diff: float
    argmax_mismatches: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= 1e-5 and self.argmax_mismatches == 0


def check_parity(network: QNetwork, onnx_path: Path, samples: int = 10_000, seed: int = 0) -> Parity:
    """Compare torch and onnxruntime on ``samples`` random observations within the bounds."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(FEATURE_LOW, FEATURE_HIGH, size=(samples, len(FEATURE_NAMES)))
    obs = obs.astype(np.float32)
    with torch.no_grad():
        expected = network(torch.as_tensor(obs)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    return Parity(
        samples=samples,
        max_abs_diff=float(np.max(np.abs(expected - actual))),
        argmax_mismatches=int(np.sum(expected.argmax(axis=1) != actual.argmax(axis=1))),
    )
