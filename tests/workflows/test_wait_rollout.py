"""The rollout wait of e2e-kind.yaml and deploy.yaml (.github/scripts/wait_rollout.py), on Rollout
statuses as `kubectl get rollout -o json` prints them.

The statuses in ``rollout_statuses/`` are written from Argo Rollouts v1.9.1's controller code (no
cluster here to record them): a canary in a `pause: {duration}` step (phase `Paused`, message and
pause condition `CanaryPauseStep`: `reconcileCanaryPause` in rollout/canary.go and
`CalculateRolloutPhase` in utils/rollout/rolloututil.go), one paused on an Inconclusive analysis
(`InconclusiveAnalysisRun`), an aborted one (`status.abort`, `Degraded`, `RolloutAborted: ...`), a
healthy one, one progressing, and the status right after a `kubectl patch`, before the controller
observed it (`observedGeneration` behind `metadata.generation`, still `Healthy`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

STATUSES = Path(__file__).parent / "rollout_statuses"
SCRIPT = REPO_ROOT / ".github" / "scripts" / "wait_rollout.py"
BEFORE = "5d8f7c9b4"  # stableRS before the canary (the fixtures' stable)


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wait_rollout", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


wait_rollout = load_script()


def status(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((STATUSES / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("paused-duration-step", "timed-pause"),
        ("inconclusive", "human-pause"),
        ("aborted", "aborted"),
        ("healthy", "healthy"),
        ("progressing", "progressing"),
        ("stale-after-patch", "stale"),
    ],
)
def test_each_recorded_status_is_classified(name: str, kind: str) -> None:
    assert wait_rollout.classify(status(name)).kind == kind


def test_a_pause_step_is_phase_paused_but_not_a_reason_to_stop() -> None:
    paused = status("paused-duration-step")
    assert paused["status"]["phase"] == "Paused"  # what the old loop failed on
    for expect in ("aborted", "healthy"):
        state = wait_rollout.classify(paused)
        assert wait_rollout.judge(state, expect, BEFORE) is None


@pytest.mark.parametrize(
    ("name", "expect", "code"),
    [
        ("aborted", "aborted", 0),
        ("inconclusive", "aborted", 2),
        ("healthy", "aborted", 1),  # the buggy canary was promoted
        ("aborted", "healthy", 1),
        ("inconclusive", "healthy", 2),
        ("healthy", "healthy", 0),
        ("progressing", "healthy", None),
        ("stale-after-patch", "healthy", None),  # the old revision's Healthy does not count
        ("stale-after-patch", "aborted", None),
    ],
)
def test_judge(name: str, expect: str, code: int | None) -> None:
    verdict = wait_rollout.judge(wait_rollout.classify(status(name)), expect, BEFORE)
    assert (verdict[0] if verdict else None) == code
    if verdict:
        assert verdict[1].startswith(("::notice::", "::warning::", "::error::"))


def test_a_manual_pause_waits_for_a_human() -> None:
    rollout = status("progressing")
    rollout["spec"]["paused"] = True
    assert wait_rollout.classify(rollout).kind == "human-pause"


def test_a_pause_step_without_a_duration_waits_for_a_human() -> None:
    """Its pause condition is CanaryPauseStep too, but it ends only on promote."""
    rollout = status("paused-duration-step")  # currentStepIndex 1
    steps = [{"setWeight": 5}, {"pause": {"duration": "30s"}}]
    rollout["spec"]["strategy"]["canary"]["steps"] = steps
    assert wait_rollout.classify(rollout).kind == "timed-pause"
    rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 5}, {"pause": {}}]
    assert wait_rollout.classify(rollout).kind == "human-pause"


def test_healthy_can_require_a_new_stable() -> None:
    unchanged = status("healthy")
    unchanged["status"]["stableRS"] = unchanged["status"]["currentPodHash"] = BEFORE
    state = wait_rollout.classify(unchanged)
    assert wait_rollout.judge(state, "healthy", BEFORE, require_new_stable=True) is None
    assert wait_rollout.judge(state, "healthy", BEFORE)[0] == 0


def test_the_buggy_canary_wait_goes_through_a_pause_step_to_the_abort() -> None:
    sequence = iter(
        [
            status("stale-after-patch"),
            status("progressing"),
            status("paused-duration-step"),
            status("paused-duration-step"),
            status("progressing"),
            status("aborted"),
        ]
    )
    lines: list[str] = []
    now = [0.0]
    code = wait_rollout.wait(
        lambda: next(sequence),
        "aborted",
        timeout=600,
        interval=10,
        stable_before=BEFORE,
        say=lines.append,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert code == 0, lines
    assert now[0] == 50


def test_the_wait_times_out() -> None:
    now = [0.0]
    lines: list[str] = []
    code = wait_rollout.wait(
        lambda: status("paused-duration-step"),
        "aborted",
        timeout=30,
        interval=10,
        say=lines.append,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert code == 3
    assert lines[-1].startswith("::error::")


def _workflow_steps(name: str) -> list[dict[str, Any]]:
    wf = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / f"{name}.yaml").read_text())
    return [step for job in wf["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("workflow", ["e2e-kind", "deploy"])
def test_the_workflows_wait_with_the_script_not_on_phase_paused(workflow: str) -> None:
    scripts = "\n".join(
        line
        for step in _workflow_steps(workflow)
        for line in step.get("run", "").splitlines()
        if not line.strip().startswith("#")
    )
    assert ".github/scripts/wait_rollout.py" in scripts
    assert "Paused" not in scripts
    # `status` never returns on a pause; it may only run where the rollout cannot pause
    # (the stable deploy of the e2e, which has no canary steps to run).
    for step in _workflow_steps(workflow):
        commands = [ln for ln in step.get("run", "").splitlines() if not ln.strip().startswith("#")]
        if any("kubectl argo rollouts status" in line for line in commands):
            assert step["name"].startswith("Deploy the demo Rollout (stable)"), step["name"]
