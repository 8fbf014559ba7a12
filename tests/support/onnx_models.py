"""Tiny ONNX Q-networks with the exporter's metadata, for tests.

:func:`build_model` answers constant Q-values (a test chooses what the policy says), and its
metadata can be made wrong on purpose (feature names, actions, spec version).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from decision_service.actions import ACTION_NAMES
from decision_service.features import FEATURE_NAMES, FEATURE_SPEC_VERSION

HOLD_Q = (1.0, 0.0, -1.0)
PROMOTE_Q = (0.0, 1.0, -1.0)
ABORT_Q = (0.0, -1.0, 1.0)


def build_model(
    path: Path,
    *,
    q_values: Sequence[float] = PROMOTE_Q,
    feature_names: Sequence[str] = FEATURE_NAMES,
    action_names: Sequence[str] = ACTION_NAMES,
    feature_spec_version: str = FEATURE_SPEC_VERSION,
    name: str = "test-policy",
    weights: Mapping[tuple[str, str], float] | None = None,
    outputs: int = 3,
) -> Path:
    """A valid-looking ONNX Q-network: ``q = observation @ W + q_values`` (a linear layer).

    ``W`` is zero (constant answers) except ``weights[(feature, action)]``.
    """
    import onnx  # the `train` extra: imported only when a test builds a model
    from onnx import TensorProto, helper, numpy_helper

    width = len(feature_names)
    matrix = np.zeros((width, outputs), dtype=np.float32)
    for (feature, action), weight in (weights or {}).items():
        matrix[list(feature_names).index(feature), list(ACTION_NAMES).index(action)] = weight
    weights_tensor = numpy_helper.from_array(matrix, "weights")
    bias = numpy_helper.from_array(np.asarray(q_values, dtype=np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["observation", "weights", "bias"], ["q_values"])],
        "constant_q",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("q_values", TensorProto.FLOAT, ["batch", 3])],
        [weights_tensor, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {
        "feature_names": json.dumps(list(feature_names)),
        "action_names": json.dumps(list(action_names)),
        "feature_spec_version": feature_spec_version,
        "model_name": name,
        "training_config_sha256": "0" * 64,
    }
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, path)
    return path


def constant_models(folder: Path) -> dict[str, Path]:
    """Constant-answer models in ``folder`` by name: promote, hold, abort."""
    return {
        "promote": build_model(folder / "promote.onnx", q_values=PROMOTE_Q, name="always-promote"),
        "hold": build_model(folder / "hold.onnx", q_values=HOLD_Q, name="always-hold"),
        "abort": build_model(folder / "abort.onnx", q_values=ABORT_Q, name="always-abort"),
    }


def shipped_model() -> Path:
    """The shipped ``models/canary-dqn.onnx``, or skip (with the reason) while it is absent."""
    import pytest

    from decision_service.policy import DEFAULT_MODEL_PATH

    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip(
            f"the shipped model {DEFAULT_MODEL_PATH} is not there yet "
            "(it is trained and exported by `make train export`)"
        )
    return DEFAULT_MODEL_PATH
