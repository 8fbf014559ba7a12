"""Shared test set-up.

Tests that need an outside program (Prometheus) or outside data (Argo's CRDs) skip with a
reason on a user's machine; CI sets ``K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS=1`` (in ``.ci/run``)
to turn a missing Prometheus into a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = REPO_ROOT / "scenarios"


def prometheus_binary() -> str:
    """Path of the Prometheus binary, or skip (fail under CI's flag) when there is none."""
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if found:
        return found
    reason = "Prometheus is not installed (apt-get install prometheus, or set PROMETHEUS_BIN)"
    if os.environ.get("K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"{reason}; K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS=1 forbids skipping")
    pytest.skip(reason)


def promtool_binary() -> str:
    """Path of promtool (it comes with Prometheus), or skip (fail under CI's flag)."""
    from training.openmetrics import find_promtool

    found = find_promtool()
    if found:
        return found
    reason = "promtool is not installed (apt-get install prometheus, or set PROMTOOL_BIN)"
    if os.environ.get("K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"{reason}; K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS=1 forbids skipping")
    pytest.skip(reason)


def argo_crds_dir() -> Path:
    """Folder with Argo Rollouts' CRDs: $ARGO_ROLLOUTS_CRDS or ../shared/argo-rollouts/crds."""
    candidates = [
        os.environ.get("ARGO_ROLLOUTS_CRDS"),
        REPO_ROOT.parent / "shared/argo-rollouts/crds",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "rollout-crd.yaml").is_file():
            return Path(candidate)
    pytest.skip(
        "Argo Rollouts CRDs not found: set ARGO_ROLLOUTS_CRDS to a folder holding "
        "rollout-crd.yaml and analysis-template-crd.yaml (upstream manifests/crds)"
    )
