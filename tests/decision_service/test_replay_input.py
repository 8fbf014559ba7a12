"""What a replay replays: AnalysisRuns (and their Rollout) exported with kubectl, and timelines
by hand; every bad input is a PlanError with a message, never a traceback."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from decision_service.replay_input import (
    Plan,
    PlanError,
    format_time,
    load_documents,
    parse_time,
    plan_from_documents,
    plan_from_timeline,
    recorded_decision,
)
from tests.conftest import REPO_ROOT

T0 = parse_time("2024-05-01T10:00:30Z")


def analysis_run(
    weight: str | None,
    step_index: int,
    measurements: list[tuple[float, str, str | None]],
    *,
    canary: str = "6d4f8c9b7",
    stable: str | None = "5c8b7d6f4",
    rollout: str = "demo-app",
    namespace: str = "rollout-demo",
    count: int | None = None,
) -> dict[str, Any]:
    """An AnalysisRun as ``kubectl get analysisrun -o yaml`` prints one of the project's."""
    args: list[dict[str, Any]] = [
        {"name": "namespace", "value": namespace},
        {"name": "rollout", "value": rollout},
        {"name": "canary-hash", "value": canary},
        {"name": "interval", "value": "30s"},
        {"name": "count", "value": "10"},
        {
            "name": "api-token",
            "valueFrom": {"secretKeyRef": {"name": "k8s-rollout-agent-token", "key": "token"}},
        },
    ]
    if stable is not None:
        args.append({"name": "stable-hash", "value": stable})
    if weight is not None:
        args.append({"name": "step-weight", "value": weight})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {
            "name": f"{rollout}-{canary}-2-{step_index}",
            "namespace": namespace,
            "labels": {
                "rollout-type": "Step",
                "step-index": str(step_index),
                "rollouts-pod-template-hash": canary,
            },
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": rollout,
                    "uid": "a4b0c5de-0000-4000-8000-000000000000",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "args": args,
            "metrics": [
                {
                    "name": "rl-decision",
                    "interval": "30s",
                    "count": 10,
                    "successCondition": 'result.decision == "promote"',
                    "failureCondition": 'result.decision == "abort"',
                    "provider": {
                        "web": {
                            "method": "POST",
                            "url": "http://k8s-rollout-agent.rollout-agent.svc:8080/v1/decide",
                            "jsonPath": "{$}",
                        }
                    },
                }
            ],
        },
        "status": {
            "phase": measurements[-1][1] if measurements else "Running",
            "metricResults": [
                {
                    "name": "rl-decision",
                    "phase": measurements[-1][1] if measurements else "Running",
                    "count": count if count is not None else len(measurements),
                    "measurements": [
                        {
                            "phase": phase,
                            "startedAt": format_time(at),
                            "finishedAt": format_time(at + 0.2),
                            **(
                                {"value": json.dumps({"decision": decision, "reason": "…"})}
                                if decision
                                else {"message": "Post ...: context deadline exceeded"}
                            ),
                        }
                        for at, phase, decision in measurements
                    ],
                }
            ],
        },
    }


def _two_steps() -> list[dict[str, Any]]:
    return [
        analysis_run(
            "5",
            2,
            [(T0, "Inconclusive", "hold"), (T0 + 30, "Successful", "promote")],
        ),
        analysis_run(
            "10",
            5,
            [
                (T0 + 90, "Inconclusive", "hold"),
                (T0 + 120, "Error", None),
                (T0 + 130, "Failed", "abort"),
            ],
        ),
    ]


def _plan(objects: list[dict[str, Any]], **kwargs: Any) -> Plan:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects})
    return plan_from_documents(load_documents(text, "runs.yaml"), "runs.yaml", **kwargs)


def test_the_runs_schema_is_argos() -> None:
    """The fixture is what Argo writes: it validates against Argo's AnalysisRun CRD schema."""
    folder = os.environ.get("ARGO_ROLLOUTS_CRDS") or REPO_ROOT.parent / "shared/argo-rollouts/crds"
    crd_path = Path(folder) / "analysis-run-crd.yaml"
    if not crd_path.is_file():
        pytest.skip("Argo's analysis-run-crd.yaml not found (set ARGO_ROLLOUTS_CRDS)")
    crd = yaml.safe_load(crd_path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for run in _two_steps():
        jsonschema.validate(run, schema)


def test_an_analysisrun_list_gives_times_weights_hashes_and_what_argo_recorded() -> None:
    plan = _plan(_two_steps())
    assert (plan.namespace, plan.rollout) == ("rollout-demo", "demo-app")
    assert (plan.canary_hash, plan.stable_hash) == ("6d4f8c9b7", "5c8b7d6f4")
    assert [(i.at - T0, i.weight) for i in plan.instants] == [
        (0, 5.0),
        (30, 5.0),
        (90, 10.0),
        (120, 10.0),
        (130, 10.0),
    ]
    recorded = [i.recorded for i in plan.instants]
    assert [(r.phase, r.decision) for r in recorded if r] == [
        ("Inconclusive", "hold"),
        ("Successful", "promote"),
        ("Inconclusive", "hold"),
        ("Error", None),
        ("Failed", "abort"),
    ]
    assert [i.answered for i in plan.instants] == [True, True, True, False, True]
    assert plan.interval == "30s"
    assert plan.count == 10  # the template's count: where the shield's last look is
    assert plan.warnings == ()


def test_one_run_alone_and_several_documents_are_read_too() -> None:
    one = yaml.safe_dump(_two_steps()[0])
    plan = plan_from_documents(load_documents(one, "r.yaml"), "r.yaml")
    assert len(plan.instants) == 2
    several = "---\n".join(yaml.safe_dump(r) for r in _two_steps())
    assert len(plan_from_documents(load_documents(several, "r.yaml"), "r.yaml").instants) == 5


def test_the_weight_comes_from_the_rollout_when_the_run_has_no_weight_arg() -> None:
    """A template without a step-weight arg: the Rollout in the same file (the project's own,
    rollouts/base/rollout.yaml: setWeight, analysis, ..., so its analyses sit at step-index 1,
    3, ..., 13) gives the weight in force at the run's step-index."""
    rollout = yaml.safe_load((REPO_ROOT / "rollouts/base/rollout.yaml").read_text())
    runs = [
        analysis_run(None, 1, [(T0, "Successful", "promote")]),
        analysis_run(None, 3, [(T0 + 60, "Successful", "promote")]),
        analysis_run(None, 13, [(T0 + 120, "Inconclusive", "hold")]),
    ]
    plan = _plan([rollout, *runs])
    assert [i.weight for i in plan.instants] == [5.0, 10.0, 100.0]
    with pytest.raises(PlanError, match="step weight is unknown"):
        _plan(runs)


def test_the_command_line_must_agree_with_the_file() -> None:
    with pytest.raises(PlanError, match="--rollout checkout does not match"):
        _plan(_two_steps(), rollout="checkout")
    with pytest.raises(PlanError, match="--namespace shop does not match"):
        _plan(_two_steps(), namespace="shop")
    assert _plan(_two_steps(), rollout="demo-app", namespace="rollout-demo").rollout == "demo-app"


def test_several_canaries_in_one_file_need_a_choice() -> None:
    other = analysis_run("5", 2, [(T0 + 3600, "Successful", "promote")], canary="7f9c8d6b5")
    with pytest.raises(PlanError, match="several canaries"):
        _plan([*_two_steps(), other])
    plan = _plan([*_two_steps(), other], canary_hash="7f9c8d6b5")
    assert [i.at - T0 for i in plan.instants] == [3600]
    with pytest.raises(PlanError, match="no AnalysisRun of the canary aaaaaaaaa"):
        _plan(_two_steps(), canary_hash="aaaaaaaaa")


def test_a_missing_stable_hash_comes_from_the_rollout_with_a_warning_or_is_refused() -> None:
    runs = [analysis_run("5", 2, [(T0, "Successful", "promote")], stable=None)]
    with pytest.raises(PlanError, match="--stable-hash"):
        _plan(runs)
    rollout = {"kind": "Rollout", "metadata": {"name": "demo-app"}, "status": {}}
    rollout["status"] = {"stableRS": "5c8b7d6f4", "currentPodHash": "6d4f8c9b7"}
    plan = _plan([rollout, *runs])
    assert plan.stable_hash == "5c8b7d6f4"
    assert any("current status" in w for w in plan.warnings)
    # after a completed rollout the Rollout names the canary as stable
    rollout["status"] = {"stableRS": "6d4f8c9b7"}
    with pytest.raises(PlanError, match="previous stable hash"):
        _plan([rollout, *runs])


def test_argos_dropped_measurements_are_warned_about() -> None:
    run = analysis_run("5", 2, [(T0 + 30 * k, "Inconclusive", "hold") for k in range(10)])
    run["status"]["metricResults"][0]["count"] = 14
    plan = _plan([run])
    assert any("kept 10 of its 14" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [unclosed", "not valid YAML"),
        ("- 1\n- 2\n", "expected Kubernetes objects"),
        ("kind: Deployment\nmetadata: {name: x}\n", "no AnalysisRun found"),
        (
            "kind: Rollout\nmetadata: {name: demo-app}\n",
            "A Rollout does not record when Argo measured",
        ),
        (
            "kind: AnalysisRun\nmetadata: {name: r}\nspec: {args: 7}\n",
            "spec.args is not a list",
        ),
    ],
)
def test_malformed_files_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_from_documents(load_documents(text, "f.yaml"), "f.yaml")


def test_a_run_without_times_or_with_a_bad_weight_is_refused() -> None:
    run = analysis_run("5", 2, [(T0, "Successful", "promote")])
    broken = copy.deepcopy(run)
    del broken["status"]["metricResults"][0]["measurements"][0]["startedAt"]
    del broken["status"]["metricResults"][0]["measurements"][0]["finishedAt"]
    with pytest.raises(PlanError, match="neither startedAt nor finishedAt"):
        _plan([broken])
    broken = copy.deepcopy(run)
    broken["status"]["metricResults"][0]["measurements"][0]["startedAt"] = "yesterday"
    with pytest.raises(PlanError, match="not a time"):
        _plan([broken])
    with pytest.raises(PlanError, match="not within 0-100"):
        _plan([analysis_run("150", 2, [(T0, "Successful", "promote")])])
    with pytest.raises(PlanError, match="hold no measurement"):
        _plan([analysis_run("5", 2, [])])


def test_a_timeline_by_hand() -> None:
    plan = plan_from_timeline(
        "5%@2024-05-01T10:00:30Z, 10%@1714557690*3",
        30.0,
        namespace="shop",
        rollout="checkout",
        canary_hash="6d4f8c9b7",
        stable_hash="5c8b7d6f4",
    )
    assert [(i.at - T0, i.weight) for i in plan.instants] == [
        (0, 5.0),
        (60, 10.0),
        (90, 10.0),
        (120, 10.0),
    ]
    assert all(i.recorded is None for i in plan.instants)


@pytest.mark.parametrize(
    ("timeline", "kwargs", "message"),
    [
        ("5%@2024-05-01T10:00:30Z", {"canary_hash": None}, "--timeline needs --canary-hash"),
        ("5%2024-05-01", {}, "not WEIGHT%@TIME"),
        ("x%@2024-05-01T10:00:30Z", {}, "not a number"),
        ("5%@soon", {}, "not a time"),
        ("5%@1714557630*0", {}, "within 1-1000"),
        (",", {}, "no measurement"),
        ("5%@1714557630", {"stable_hash": "6d4f8c9b7"}, "both '6d4f8c9b7'"),
        ("5%@1714557630", {"canary_hash": "Not_A_Hash"}, "not a pod-template hash"),
    ],
)
def test_bad_timelines_are_refused(timeline: str, kwargs: dict[str, Any], message: str) -> None:
    values = {
        "namespace": "shop",
        "rollout": "checkout",
        "canary_hash": "6d4f8c9b7",
        "stable_hash": "5c8b7d6f4",
    }
    with pytest.raises(PlanError, match=message):
        plan_from_timeline(timeline, 30.0, **(values | kwargs))


def test_times_round_trip() -> None:
    assert format_time(T0) == "2024-05-01T10:00:30Z"
    assert parse_time("2024-05-01T12:00:30+02:00") == T0
    assert parse_time("2024-05-01T10:00:30") == T0  # no offset: UTC
    assert format_time(T0 + 0.25) == "2024-05-01T10:00:30.250Z"


def test_the_decision_is_read_from_json_go_maps_and_dry_run_answers() -> None:
    assert recorded_decision('{"decision":"promote","guardrail":null}') == "promote"
    assert recorded_decision("map[decision:abort dry_run:false reason:…]") == "abort"
    dry = {
        "decision": "hold",
        "guardrail": "dry_run",
        "reason": "Dry run: answering hold; the real decision is abort (shield): …",
        "dry_run": True,
    }
    assert recorded_decision(json.dumps(dry)) == "abort"
    assert recorded_decision("500 Internal Server Error") is None
    assert recorded_decision(None) is None
