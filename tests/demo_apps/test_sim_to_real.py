"""The sim-to-real comparison: the simulated side with a toy policy, and the agreement maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decision_service.actions import ABORT, PROMOTE
from decision_service.scenarios import resolve_scenario
from demo_apps.driver import Event
from demo_apps.sim_to_real import RunRecord, compare, live_record, rollout_shape, simulate

pytest.importorskip("training.env", reason="the train extra (gymnasium) is missing")


def test_the_simulator_runs_the_rollouts_shape() -> None:
    weights, count = rollout_shape()
    assert weights == (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0)
    assert count == 10
    always_promote = simulate(resolve_scenario("healthy"), lambda obs: PROMOTE, episodes=5)
    for record in always_promote:
        assert record.outcome == "promoted"
        assert [w for w, _ in record.decisions] == list(weights)
    always_abort = simulate(resolve_scenario("buggy"), lambda obs: ABORT, episodes=3)
    assert {r.outcome for r in always_abort} == {"aborted"}
    assert all(r.decisions == [(5.0, "abort")] for r in always_abort)


def test_the_simulator_applies_the_guardrails_as_the_service_does() -> None:
    # A buggy canary whose window error rate breaks the hard limit is aborted whatever the policy
    # says, as the service's hard_slo_breach guardrail does.
    records = simulate(resolve_scenario("buggy"), lambda obs: PROMOTE, episodes=20, seed=3)
    assert any(r.outcome == "aborted" for r in records)


def _event(weight: int, decision: str | None, guardrail: str | None = None) -> Event:
    return Event("measurement", 0.0, 1, weight, "", {"decision": decision, "guardrail": guardrail})


def test_live_records_keep_only_policy_decisions() -> None:
    events = [
        _event(5, "hold", "no_data"),
        _event(5, None),
        _event(5, "promote"),
        _event(10, "abort", "hard_slo_breach"),
        Event("weight", 0.0, 2, 10, ""),
    ]
    record = live_record(events, "aborted", 0)
    assert record.decisions == [(5.0, "promote"), (10.0, "abort")]


def test_agreement_numbers() -> None:
    sim = [
        RunRecord("promoted", 100, [(5.0, "promote"), (10.0, "promote")]),
        RunRecord("aborted", 10, [(5.0, "hold"), (5.0, "promote"), (10.0, "abort")]),
        RunRecord("promoted", 100, [(5.0, "promote"), (10.0, "promote")]),
        RunRecord("paused", 5, [(5.0, "hold")]),
    ]
    live = [RunRecord("promoted", 100, [(5.0, "promote"), (10.0, "promote"), (20.0, "hold")])]
    a = compare("toy", sim, live)
    assert a.sim_outcomes == {"promoted": 0.5, "aborted": 0.25, "paused": 0.25}
    assert a.outcome_agreement == pytest.approx(0.5)
    # at 5 %: 3 promotes of 5 decisions; at 10 %: 2 of 3; at 20 %: never simulated -> 0
    assert a.decision_agreement == pytest.approx(np.mean([3 / 5, 2 / 3, 0.0]))
    assert a.live_decision_mix["promote"] == pytest.approx(2 / 3)
    assert a.live_decisions == 3


def test_traffic_scaling_keeps_everything_else() -> None:
    from demo_apps.sim_to_real import scale_traffic

    healthy = resolve_scenario("healthy")
    scaled = scale_traffic(healthy, 0.1)
    assert scaled.traffic.requests_per_second == pytest.approx((2.0, 20.0))
    assert scaled.model_dump(exclude={"traffic"}) == healthy.model_dump(exclude={"traffic"})


def test_live_runs_are_read_back_from_the_demos_events(tmp_path: Path) -> None:
    import json

    from demo_apps.sim_to_real import live_record_from_file

    lines = [
        {"kind": "weight", "t": 0.0, "step": 0, "weight": 5, "message": ""},
        {"kind": "measurement", "t": 1.0, "step": 2, "weight": 5, "message": "",
         "decision": "hold", "guardrail": "no_data"},
        {"kind": "measurement", "t": 2.0, "step": 2, "weight": 5, "message": "",
         "decision": "abort", "guardrail": None},
        {"kind": "verdict", "t": 2.0, "step": 2, "weight": 0, "message": "",
         "outcome": "aborted"},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    record = live_record_from_file(path)
    assert (record.outcome, record.final_weight) == ("aborted", 0.0)
    assert record.decisions == [(5.0, "abort")]
