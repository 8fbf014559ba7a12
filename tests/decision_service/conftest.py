"""Fixtures shared by the decision service's tests (tests import helpers from tests.support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_prometheus import FakePrometheus
from tests.support.onnx_models import constant_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small ONNX models with constant answers (one per action), built once per test module."""
    return constant_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    with FakePrometheus() as fake:
        yield fake
