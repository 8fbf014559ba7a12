"""Fixtures of the fault-injection suite: small constant-answer models, built once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.onnx_models import constant_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX models that always answer one action: promote, hold, abort."""
    return constant_models(tmp_path_factory.mktemp("models"))
