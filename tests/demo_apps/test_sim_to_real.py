"""The sim-to-real comparison: the simulated side with a toy policy, and the agreement maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decision_service.actions import ABORT, PROMOTE
from decision_service.pipeline import FixedAction
from demo_apps.local.driver import Event
from demo_apps.sim_to_real import RunRecord, compare, live_record, rollout_shape, simulate
from scenarios import resolve_scenario

pytest.importorskip("training.env", reason="the train extra (gymnasium) is missing")


def test_the_simulator_runs_the_rollouts_shape() -> None:
    weights, count = rollout_shape()
    assert weights == (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0)
    assert count == 10
    # the shield lets a promote climb only once the canary leans within the zone, which at
    # 5 % of 20-200 req/s takes most healthy draws longer than their patience: 20 draws
    always_promote = simulate(resolve_scenario("healthy"), FixedAction(PROMOTE), episodes=20)
    for record in always_promote:
        # every step in order; the shield may hold a promote until its evidence allows it
        visited = list(dict.fromkeys(w for w, _ in record.decisions))
        assert visited == list(weights[: len(visited)])
        assert record.outcome in {"promoted", "paused"}
    assert any(r.outcome == "promoted" for r in always_promote)
    always_abort = simulate(resolve_scenario("buggy"), FixedAction(ABORT), episodes=3)
    assert {r.outcome for r in always_abort} == {"aborted"}
    assert all(r.decisions[-1] == (5.0, "abort") for r in always_abort)


def test_the_simulator_applies_the_guardrails_as_the_service_does() -> None:
    # A buggy canary whose window error rate breaks the hard limit is aborted whatever the policy
    # says, as the service's hard_slo_breach guardrail does.
    records = simulate(resolve_scenario("buggy"), FixedAction(PROMOTE), episodes=20, seed=3)
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


def test_a_pinned_draw_is_the_same_canary_in_every_episode() -> None:
    from demo_apps.app.behaviour import live_parameters
    from demo_apps.sim_to_real import pin_draw
    from scenarios import EpisodeParameters

    for name in (
        "healthy",
        "flaky",
        "degrading",
        "noisy_neighbour",
        "cold_start",
        "stable_incident",
        "load_dependent",
        "clumped_errors",
        "traffic_dip",
        "tail_latency",
    ):
        scenario = resolve_scenario(name)
        params = live_parameters(scenario, 4)
        pinned = pin_draw(scenario, params, 42.0)
        rng = np.random.default_rng(0)
        # every field drawn again from the pinned scenario is the live run's number
        again = EpisodeParameters.draw(pinned, rng)
        assert again == EpisodeParameters(**{**vars_of(params), "requests_per_second": 42.0})
        assert (pinned.name, pinned.truth) == (scenario.name, scenario.truth)
        incidents = pinned.shared_incidents.duration_intervals
        assert incidents == scenario.shared_incidents.duration_intervals


def vars_of(params: object) -> dict[str, float]:
    from dataclasses import asdict

    return asdict(params)  # type: ignore[call-overload]


def test_the_live_draw_carries_the_demos_load_per_template_second() -> None:
    from demo_apps.app.behaviour import live_parameters
    from demo_apps.sim_to_real import live_draw

    healthy = resolve_scenario("healthy")
    drawn = live_parameters(healthy, 5).requests_per_second  # 165 req/s
    # 3 s live intervals for the template's 30 s: the load is 10x the scenario's, capped
    uncapped = live_draw(healthy, 5, interval_seconds=3.0, max_rps=10_000.0)
    assert uncapped.traffic.requests_per_second == pytest.approx(drawn)
    capped = live_draw(healthy, 5, interval_seconds=3.0, max_rps=500.0)
    assert capped.traffic.requests_per_second == pytest.approx(50.0)


def test_merging_pools_live_runs_and_their_decisions() -> None:
    from demo_apps.sim_to_real import merge

    sim_a = [RunRecord("promoted", 100, [(5.0, "promote")])] * 3
    sim_b = [RunRecord("aborted", 5, [(5.0, "abort")])] * 1 + [
        RunRecord("promoted", 100, [(5.0, "promote")])
    ]
    live_a = RunRecord("promoted", 100, [(5.0, "promote")])
    live_b = RunRecord("aborted", 5, [(5.0, "hold"), (5.0, "abort")])
    merged = merge([compare("toy", sim_a, [live_a]), compare("toy", sim_b, [live_b])], "pinned")
    assert merged.live_outcomes == ["promoted", "aborted"]
    assert merged.outcome_agreement == pytest.approx((1.0 + 0.5) / 2)
    # decisions: run a 1 of 1 agrees fully; run b: hold 0, abort 0.5 -> (1 + 0 + 0.5) / 3
    assert merged.decision_agreement == pytest.approx(0.5)
    assert merged.live_decisions == 3
    assert merged.sim_episodes == 5
    assert merged.live_decision_mix["abort"] == pytest.approx(1 / 3)


def test_the_live_healthy_test_seed_is_one_the_simulator_promotes() -> None:
    """The live e2e test runs ``healthy`` with one seed; its premise is that the shipped policy
    promotes that draw (a canary as good as stable) almost surely; this keeps the e2e test from
    becoming a coin flip when the model changes. It must never abort it. The shipped policy
    pauses it instead (:data:`~tests.demo_apps.local.test_demo_e2e.KNOWN_PAUSE`): reported as
    an expected failure with the measured rate."""
    from decision_service.policy import DEFAULT_MODEL_PATH
    from demo_apps.local.demo import DemoOptions
    from demo_apps.sim_to_real import live_draw, onnx_policy
    from tests.demo_apps.local.test_demo_e2e import HEALTHY_SEED, INTERVAL_SECONDS, KNOWN_PAUSE

    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip(f"{DEFAULT_MODEL_PATH} is not built")
    scenario = live_draw(
        resolve_scenario("healthy"),
        HEALTHY_SEED,
        interval_seconds=INTERVAL_SECONDS,
        max_rps=DemoOptions().max_rps,
    )
    records = simulate(scenario, onnx_policy(DEFAULT_MODEL_PATH), episodes=400, seed=1000)
    promoted = sum(r.outcome == "promoted" for r in records) / len(records)
    aborted = sum(r.outcome == "aborted" for r in records) / len(records)
    print(f"healthy seed {HEALTHY_SEED} in the simulator: {promoted:.1%} promoted")
    assert aborted <= 0.01, aborted
    if promoted < 0.97:
        pytest.xfail(f"{promoted:.1%} promoted, {aborted:.1%} aborted: {KNOWN_PAUSE}")


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
