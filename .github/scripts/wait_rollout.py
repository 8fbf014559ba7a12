#!/usr/bin/env python3
"""Wait for an Argo Rollout to end the way a workflow expects, reading its status with kubectl.

    wait_rollout.py --namespace NS --rollout NAME --expect aborted|healthy [--timeout 600]
                    [--stable-before HASH] [--require-new-stable] [--interval 10]

Why not `status.phase == Paused`: Argo (v1.9, `CalculateRolloutPhase` in
utils/rollout/rolloututil.go) reports `Paused` whenever the Rollout has *any* pause condition,
and a `pause: {duration: 30s}` step adds one (`CanaryPauseStep`, rollout/canary.go). That pause
ends by itself. Only an analysis that ran out of patience (`InconclusiveAnalysisRun`, or
`InconclusiveExperiment`) or a pause without a duration, or `spec.paused`, waits for a human. And
why not `kubectl argo rollouts status`: it returns only on Healthy or Degraded, so a rollout
paused for a human holds the job until the timeout.

The status is read only once the controller has observed the current spec
(`status.observedGeneration == metadata.generation`): right after a `kubectl patch` the status
still describes the previous revision (a stale `Healthy`).

Exit codes: 0 the expected end; 1 a wrong end (promoted when an abort was expected, aborted or
degraded when healthy was expected); 2 paused for a human; 3 timed out. Each end prints one
GitHub annotation line (`::error::`/`::warning::`). Standard library only (runs on the runner).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Pause reasons that end by themselves (a `pause` step with a duration).
TIMED_PAUSES = {"CanaryPauseStep"}
#: Pause reasons that wait for `kubectl argo rollouts promote|abort`.
HUMAN_PAUSES = {"InconclusiveAnalysisRun", "InconclusiveExperiment"}

OK, WRONG, HUMAN, TIMEOUT = 0, 1, 2, 3


@dataclass(frozen=True)
class State:
    """What a Rollout's status says, reduced to what a waiting workflow needs."""

    kind: str  # stale, progressing, timed-pause, human-pause, aborted, degraded, healthy
    detail: str
    stable: str
    current: str


def classify(rollout: Mapping[str, Any]) -> State:
    """The state of one Rollout object (``kubectl get rollout -o json``)."""
    meta = rollout.get("metadata", {})
    spec = rollout.get("spec", {})
    status = rollout.get("status", {}) or {}
    stable = str(status.get("stableRS", ""))
    current = str(status.get("currentPodHash", ""))
    phase = str(status.get("phase", ""))
    message = str(status.get("message", ""))
    detail = f"phase={phase or '?'} message={message!r} stable={stable} current={current}"
    observed = str(status.get("observedGeneration", ""))
    if observed.isdigit() and int(observed) != int(meta.get("generation", 0)):
        return State("stale", detail, stable, current)
    if status.get("abort"):
        return State("aborted", detail, stable, current)
    if phase == "Degraded":
        return State("degraded", detail, stable, current)
    reasons = [str(c.get("reason", "")) for c in status.get("pauseConditions") or []]
    if reasons and _current_pause_waits_forever(spec, status):
        reasons = [*reasons, "pause step without a duration"]
    if spec.get("paused") or any(r not in TIMED_PAUSES for r in reasons):
        human = [r for r in reasons if r not in TIMED_PAUSES] or ["spec.paused"]
        return State("human-pause", f"{detail} pauseConditions={human}", stable, current)
    if reasons:
        return State("timed-pause", detail, stable, current)
    if phase == "Healthy" and stable and stable == current:
        return State("healthy", detail, stable, current)
    return State("progressing", detail, stable, current)


def _current_pause_waits_forever(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the current canary step is a `pause: {}` (its CanaryPauseStep never ends)."""
    steps = (spec.get("strategy", {}).get("canary") or {}).get("steps") or []
    index = status.get("currentStepIndex")
    if not isinstance(index, int) or not 0 <= index < len(steps):
        return False
    pause = steps[index].get("pause")
    return isinstance(pause, dict) and pause.get("duration") in (None, "")


def judge(
    state: State, expect: str, stable_before: str = "", require_new_stable: bool = False
) -> tuple[int, str] | None:
    """``(exit code, annotation)`` once the wait is over; ``None`` to keep waiting."""
    if expect == "aborted":
        if state.kind == "aborted":
            return OK, f"::notice::the rollout was aborted as expected ({state.detail})"
        if stable_before and state.stable and state.stable != stable_before:
            return WRONG, f"::error::the canary was promoted to stable ({state.detail})"
        if state.kind == "healthy" and state.current != stable_before:
            return WRONG, f"::error::the canary was promoted ({state.detail})"
        if state.kind == "degraded":
            return WRONG, f"::error::degraded without an abort ({state.detail})"
    else:
        if state.kind == "healthy" and not (require_new_stable and state.stable == stable_before):
            return OK, f"::notice::the rollout is healthy ({state.detail})"
        if state.kind in ("aborted", "degraded"):
            return WRONG, f"::error::the canary was aborted, traffic is on stable ({state.detail})"
    if state.kind == "human-pause":
        return HUMAN, (
            f"::warning::paused for a human: the analysis ran out of patience ({state.detail}); "
            "run kubectl argo rollouts promote|abort"
        )
    return None


def read_rollout(namespace: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["kubectl", "get", "rollout", name, "--namespace", namespace, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rollout: dict[str, Any] = json.loads(out)
    return rollout


def wait(
    read: Callable[[], Mapping[str, Any]],
    expect: str,
    *,
    timeout: float,
    interval: float,
    stable_before: str = "",
    require_new_stable: bool = False,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll ``read`` until :func:`judge` ends the wait or ``timeout`` seconds pass."""
    deadline = clock() + timeout
    while True:
        state = classify(read())
        say(f"{time.strftime('%H:%M:%S')} {state.kind}: {state.detail}")
        verdict = judge(state, expect, stable_before, require_new_stable)
        if verdict is not None:
            code, annotation = verdict
            say(annotation)
            return code
        if clock() >= deadline:
            say(f"::error::the rollout did not end {expect} within {timeout:g} s ({state.detail})")
            return TIMEOUT
        sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rollout", required=True)
    parser.add_argument("--expect", choices=["aborted", "healthy"], required=True)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    parser.add_argument("--stable-before", default="", help="stableRS before the change")
    parser.add_argument(
        "--require-new-stable",
        action="store_true",
        help="healthy counts only once stableRS differs from --stable-before",
    )
    args = parser.parse_args(argv)
    return wait(
        lambda: read_rollout(args.namespace, args.rollout),
        args.expect,
        timeout=args.timeout,
        interval=args.interval,
        stable_before=args.stable_before,
        require_new_stable=args.require_new_stable,
    )


if __name__ == "__main__":
    sys.exit(main())
