"""The ONNX policy: load once, check it matches the feature module, answer Q-values.

The model file is the one ``python -m export`` writes. Its metadata must name the features
(:data:`decision_service.features.FEATURE_NAMES`, same order), the feature-spec version and the
actions (:data:`decision_service.actions.ACTION_NAMES`); a model that does not match is refused
with :class:`PolicyLoadError`, so a service never serves decisions from a misread observation.

An ensemble's file also outputs each member's Q-values (``member_q_values``); the pipeline reads
them where the shield allows an abort (:meth:`OnnxPolicy.ensemble_q_values`). A file without
that output (exported before round 16) is served as one member.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from decision_service.actions import ACTION_NAMES, Action
from decision_service.features import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES

#: The shipped model, trained by ``python -m training.train`` and exported by ``python -m export``.
DEFAULT_MODEL_PATH: Final = Path(__file__).resolve().parent.parent / "models" / "canary-dqn.onnx"

INPUT_NAME: Final = "observation"
OUTPUT_NAME: Final = "q_values"
#: Each member's Q-values, ``[batch, members, 3]`` (the ``q_values`` output is their mean).
MEMBERS_OUTPUT_NAME: Final = "member_q_values"

# Metadata keys written by the exporter.
META_FEATURE_NAMES: Final = "feature_names"
META_ACTION_NAMES: Final = "action_names"
META_FEATURE_SPEC_VERSION: Final = "feature_spec_version"
META_TRAINING_CONFIG_SHA256: Final = "training_config_sha256"
META_MODEL_NAME: Final = "model_name"


class PolicyLoadError(RuntimeError):
    """The model file is missing, unreadable or does not match this service's features."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    sha256: str
    path: str
    feature_names: tuple[str, ...]
    action_names: tuple[str, ...]
    feature_spec_version: str
    training_config_sha256: str

    @property
    def label(self) -> str:
        """``<name>@<sha256 prefix>``, as the decision API reports it."""
        return f"{self.name}@{self.sha256[:12]}"


def _metadata_list(meta: dict[str, str], key: str, path: Path) -> tuple[str, ...]:
    if key not in meta:
        raise PolicyLoadError(f"{path}: metadata '{key}' is missing (not exported by `export`?)")
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError as exc:
        raise PolicyLoadError(f"{path}: metadata '{key}' is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyLoadError(f"{path}: metadata '{key}' must be a JSON list of strings")
    return tuple(value)


class _Bound:
    """One thread's input row and output buffer, bound to the session once.

    A decision asks for one row of Q-values. ``InferenceSession.run`` converts the input and
    allocates the output at every call; through an IO binding onnxruntime reads the observation
    from, and writes the Q-values into, these two arrays (``OrtValue.ortvalue_from_numpy`` wraps
    CPU memory without copying). ``benchmarks/bench_features.py`` measures both. A binding is
    not safe to share between threads, so each thread has its own."""

    __slots__ = ("binding", "members", "output", "row")

    def __init__(self, session: ort.InferenceSession, members: int | None) -> None:
        self.row = np.zeros((1, N_FEATURES), dtype=np.float32)
        self.output = np.zeros((1, len(ACTION_NAMES)), dtype=np.float32)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(self.row))
        self.binding.bind_ortvalue_output(
            OUTPUT_NAME, ort.OrtValue.ortvalue_from_numpy(self.output)
        )
        self.members = None
        if members is not None:
            self.members = np.zeros((1, members, len(ACTION_NAMES)), dtype=np.float32)
            self.binding.bind_ortvalue_output(
                MEMBERS_OUTPUT_NAME, ort.OrtValue.ortvalue_from_numpy(self.members)
            )


class OnnxPolicy:
    """A loaded, validated ONNX Q-network (one onnxruntime session, reused for every call)."""

    def __init__(self, path: str | Path, *, intra_op_threads: int = 1) -> None:
        model_path = Path(path)
        try:
            data = model_path.read_bytes()
        except OSError as exc:
            raise PolicyLoadError(f"{model_path}: cannot read model: {exc.strerror}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several private exception types
            raise PolicyLoadError(f"{model_path}: not a loadable ONNX model: {exc}") from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        features = _metadata_list(meta, META_FEATURE_NAMES, model_path)
        actions = _metadata_list(meta, META_ACTION_NAMES, model_path)
        version = meta.get(META_FEATURE_SPEC_VERSION, "")
        if features != FEATURE_NAMES:
            missing = sorted(set(FEATURE_NAMES) - set(features))
            extra = sorted(set(features) - set(FEATURE_NAMES))
            raise PolicyLoadError(
                f"{model_path}: the model's feature names do not match this service's feature "
                f"module (missing {missing}, unexpected {extra}, or a different order)"
            )
        if version != FEATURE_SPEC_VERSION:
            raise PolicyLoadError(
                f"{model_path}: feature-spec version {version!r} != {FEATURE_SPEC_VERSION!r}"
            )
        if actions != ACTION_NAMES:
            raise PolicyLoadError(f"{model_path}: action names {actions} != {ACTION_NAMES}")
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise PolicyLoadError(
                f"{model_path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}'"
            )
        #: How many members the file's ``member_q_values`` output has (None: no such output).
        self.members: int | None = None
        if MEMBERS_OUTPUT_NAME in outputs:
            shape = outputs[MEMBERS_OUTPUT_NAME].shape
            if len(shape) != 3 or not isinstance(shape[1], int) or shape[1] < 1:
                raise PolicyLoadError(
                    f"{model_path}: output '{MEMBERS_OUTPUT_NAME}' must be [batch, members, "
                    f"{len(ACTION_NAMES)}] with a fixed number of members, not {shape}"
                )
            self.members = shape[1]
        width = inputs[INPUT_NAME].shape[-1]
        if isinstance(width, int) and width != N_FEATURES:
            raise PolicyLoadError(f"{model_path}: input width {width} != {N_FEATURES} features")
        self.info = ModelInfo(
            name=meta.get(META_MODEL_NAME, model_path.stem),
            sha256=hashlib.sha256(data).hexdigest(),
            path=str(model_path),
            feature_names=features,
            action_names=actions,
            feature_spec_version=version,
            training_config_sha256=meta.get(META_TRAINING_CONFIG_SHA256, ""),
        )
        self._threads = threading.local()

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Q-values, shape ``(batch, 3)``, for observations of shape ``(batch, N)`` or ``(N,)``."""
        batch = np.asarray(observations, dtype=np.float32).reshape(-1, N_FEATURES)
        if batch.shape[0] != 1:
            result = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
            return np.asarray(result, dtype=np.float32)
        bound = self._run_one(batch)
        return bound.output.copy()

    def ensemble_q_values(
        self, observation: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """For one observation: the Q-values (shape ``(3,)``, the members' mean) and each
        member's (``(members, 3)``; a file without member outputs is one member), from one
        inference."""
        bound = self._run_one(np.asarray(observation, dtype=np.float32).reshape(1, N_FEATURES))
        q = bound.output[0].copy()
        if bound.members is None:
            return q, q[np.newaxis, :]
        return q, bound.members[0].copy()

    def _run_one(self, row: npt.NDArray[np.float32]) -> _Bound:
        bound: _Bound | None = getattr(self._threads, "bound", None)
        if bound is None:
            bound = self._threads.bound = _Bound(self._session, self.members)
        bound.row[...] = row
        self._session.run_with_iobinding(bound.binding)
        return bound

    def decide(self, observation: npt.NDArray[np.float32]) -> tuple[Action, dict[str, float]]:
        """The greedy action for one observation and its Q-values by action name."""
        q = self.q_values(observation)[0]
        named: dict[str, float] = {name: float(v) for name, v in zip(ACTION_NAMES, q, strict=True)}
        return ACTION_NAMES[int(np.argmax(q))], named
