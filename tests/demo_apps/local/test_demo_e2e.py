"""Acceptance: the four seed scenarios, live, end to end.

Real processes on 127.0.0.1: the stable and canary apps, a real Prometheus, the real decision
service with the shipped model, the load generator, and the project's Rollout and
AnalysisTemplate run by the local driver — with the analysis interval shortened (3 s for the
template's 30 s; the apps' scenario clock runs 10x faster to match).

* ``healthy`` reaches 100 % without an abort (seed 5: see :data:`HEALTHY_SEED`);
* ``buggy`` aborts at the first analysis step (weight 5 %);
* ``degrading`` aborts before the canary reaches 100 %;
* ``flaky`` (a sound canary with transient spikes) is never promoted on thin evidence: every
  ``promote`` comes from the policy, with no guardrail holding it back and the canary having
  served at least the guardrail's minimum of requests. Whether it is then promoted, paused or
  aborted is the model's call; the test prints it (docs/demo.md reports it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from decision_service.guardrails import GuardrailConfig
from demo_apps.local.demo import DemoOptions, DemoResult, run_demo
from tests.conftest import REPO_ROOT, prometheus_binary

pytestmark = pytest.mark.prometheus

MODEL = REPO_ROOT / "models" / "canary-dqn.onnx"
INTERVAL_SECONDS = 3.0
SEED = 1
#: The healthy run's draw: 165 req/s (1,500 live, the demo's cap), stable 0.83 % errors, the
#: canary x0.87 of that. The shipped policy promotes it in 99.2 % of 400 simulated runs (checked
#: in test_sim_to_real), so a failure here is live/sim disagreement, not the policy's 7 % of
#: healthy canaries it aborts over every draw of the scenario. Seed 1's draw (112 req/s,
#: 0.96 %, x0.94) is promoted in 96.5 % of simulated runs: a test on it fails one CI run in 30.
HEALTHY_SEED = 5


def _run(scenario: str, tmp_path: Path, seed: int = SEED) -> DemoResult:
    prometheus_binary()
    if not MODEL.is_file():
        pytest.skip(f"{MODEL} is not there yet (python -m training.train, then python -m export)")
    lines: list[str] = []
    result = run_demo(
        DemoOptions(
            scenario=scenario,
            seed=seed,
            interval_seconds=INTERVAL_SECONDS,
            run_dir=tmp_path,
            model_path=str(MODEL),
            plot=False,
        ),
        printer=lines.append,
    )
    # On failure, pytest shows the live log: which decisions, with which reasons.
    print("\n".join(lines))
    pids = json.loads((tmp_path / "pids.json").read_text())
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    return result


def _weights(result: DemoResult) -> list[int]:
    return [e.weight for e in result.events if e.kind == "weight"]


def test_healthy_reaches_100_percent_without_an_abort(tmp_path: Path) -> None:
    result = _run("healthy", tmp_path, HEALTHY_SEED)
    assert result.verdict.outcome == "promoted", result.verdict
    assert _weights(result) == [0, 5, 10, 20, 40, 60, 80, 100, 100]
    assert "abort" not in result.decisions
    # The load generator kept up, so every decision saw the evidence the simulator gives. A
    # shared CI machine can stall the apps for a moment; the generator then drops arrivals
    # beyond its in-flight limit instead of queueing them (CI once dropped 296 of 91,600, 0.3 %).
    # A few hundred lost requests over a minute do not change the evidence; a starved canary does.
    dropped = result.requests["dropped"]["requests"]
    served = result.requests["stable"]["requests"] + result.requests["canary"]["requests"]
    assert dropped <= 0.02 * (served + dropped), (dropped, served)
    assert result.served_rps >= 0.9 * result.rps, (result.served_rps, result.rps)


def test_buggy_aborts_at_the_first_analysis_step(tmp_path: Path) -> None:
    result = _run("buggy", tmp_path)
    assert result.verdict.outcome == "aborted", result.verdict
    assert _weights(result) == [0, 5, 0]
    assert result.verdict.step == 1  # the analysis after setWeight 5
    assert result.decisions[-1] == "abort"


def test_degrading_aborts_before_100_percent(tmp_path: Path) -> None:
    result = _run("degrading", tmp_path)
    assert result.verdict.outcome == "aborted", result.verdict
    assert max(_weights(result)) < 100
    assert result.decisions[-1] == "abort"


def test_flaky_is_not_promoted_without_evidence(tmp_path: Path) -> None:
    result = _run("flaky", tmp_path)
    minimum = GuardrailConfig().min_canary_requests
    promotes = [
        e for e in result.events if e.kind == "measurement" and e.data["decision"] == "promote"
    ]
    for event in promotes:
        assert event.data["guardrail"] is None
        served = re.search(r"over (\d+) requests", event.data["reason"])
        assert served is not None and int(served.group(1)) >= minimum, event.data["reason"]
    print(f"flaky: {result.verdict.outcome} at {result.verdict.weight} %: {result.verdict.reason}")
