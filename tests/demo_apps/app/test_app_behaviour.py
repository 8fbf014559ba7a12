"""The live behaviour model: same draw as the simulator, time scaling, shared weather."""

from __future__ import annotations

import math

import numpy as np
import pytest

from demo_apps.app.behaviour import LiveBehaviour
from scenarios import EpisodeParameters, Scenario, resolve_scenario


def _pair(scenario: Scenario, **kwargs: float) -> tuple[LiveBehaviour, LiveBehaviour]:
    stable = LiveBehaviour(scenario, "stable", seed=7, started_at=1000.0, **kwargs)
    canary = LiveBehaviour(scenario, "canary", seed=7, started_at=1000.0, **kwargs)
    return stable, canary


def test_both_versions_draw_the_same_episode_parameters() -> None:
    stable, canary = _pair(resolve_scenario("buggy"))
    assert stable.params == canary.params
    other = LiveBehaviour(resolve_scenario("buggy"), "stable", seed=8, started_at=0.0)
    assert other.params != stable.params


def test_canary_is_relative_to_stable_as_in_the_scenario() -> None:
    stable, canary = _pair(resolve_scenario("buggy"))
    p = canary.params
    s, c = stable.at(1000.0), canary.at(1000.0)
    assert s.error_rate == pytest.approx(p.stable_error_rate)
    assert c.error_rate == pytest.approx(
        p.stable_error_rate * p.error_multiplier + p.error_additive
    )
    assert c.error_rate > s.error_rate + 0.04  # buggy adds 5-25 % errors
    assert c.latency_p50_ms == pytest.approx(p.stable_p50_ms * p.latency_multiplier)


def test_time_scale_makes_drift_faster_in_wall_time() -> None:
    degrading = resolve_scenario("degrading")
    slow = LiveBehaviour(degrading, "canary", seed=3, started_at=0.0, time_scale=1.0)
    fast = LiveBehaviour(degrading, "canary", seed=3, started_at=0.0, time_scale=10.0)
    # 60 wall seconds at time scale 10 are ten scenario minutes.
    assert fast.scenario_seconds(60.0) == pytest.approx(600.0)
    expected = slow.params.canary(10.0, spike=False, incident=False)
    assert fast.at(60.0).error_rate == pytest.approx(expected.error_rate)
    assert fast.at(60.0).error_rate > slow.at(60.0).error_rate
    assert fast.at(60.0).latency_p50_ms > fast.at(0.0).latency_p50_ms


def test_weather_is_drawn_once_per_scaled_interval_and_shared_by_both_apps() -> None:
    scenario = Scenario.model_validate(
        {
            "name": "stormy",
            "truth": "good",
            "traffic": {"requests_per_second": 10},
            "stable": {"error_rate": 0.01, "latency_p50_ms": 50},
            "canary": {"spikes": {"probability": 0.5, "error_rate": 0.2}},
            "shared_incidents": {"probability": 0.3, "duration_intervals": 2, "error_rate": 0.1},
        }
    )
    stable, canary = _pair(scenario, time_scale=10.0, interval_seconds=30.0)
    spikes, incidents = [], []
    for i in range(60):
        now = 1000.0 + 3.0 * i + 1.5  # one scaled interval = 3 wall seconds
        s, c = stable.at(now), canary.at(now)
        assert stable.incident == canary.incident
        incidents.append(stable.incident)
        spikes.append(canary.spike)
        assert math.isclose(s.error_rate, 0.01 + (0.1 if stable.incident else 0.0))
        extra = (0.2 if canary.spike else 0.0) + (0.1 if canary.incident else 0.0)
        assert c.error_rate == pytest.approx(0.01 + extra)
    assert 10 < sum(spikes) < 50 and 5 < sum(incidents) < 50
    # Within one interval the weather does not change.
    before = canary.at(1000.0 + 3.0 * 60 + 0.1), canary.spike
    assert (canary.at(1000.0 + 3.0 * 60 + 2.9), canary.spike) == before


def test_sampled_requests_follow_the_behaviour() -> None:
    scenario = resolve_scenario("healthy")
    canary = LiveBehaviour(scenario, "canary", seed=1, started_at=0.0)
    behaviour = canary.at(0.0)
    outcomes = [canary.sample(behaviour) for _ in range(20_000)]
    errors = sum(o.error for o in outcomes) / len(outcomes)
    assert errors == pytest.approx(behaviour.error_rate, abs=0.004)
    median_ms = 1000.0 * float(np.median([o.latency_seconds for o in outcomes]))
    assert median_ms == pytest.approx(behaviour.latency_p50_ms, rel=0.05)
    p95_ms = 1000.0 * float(np.quantile([o.latency_seconds for o in outcomes], 0.95))
    expected_p95 = behaviour.latency_p50_ms * math.exp(1.645 * behaviour.latency_spread)
    assert p95_ms == pytest.approx(expected_p95, rel=0.08)


def test_the_draw_matches_the_simulators_parameters_model() -> None:
    scenario = resolve_scenario("flaky")
    live = LiveBehaviour(scenario, "canary", seed=11, started_at=0.0)
    assert isinstance(live.params, EpisodeParameters)
    assert 0.1 <= live.params.spike_probability <= 0.25


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_time_scale_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        LiveBehaviour(resolve_scenario("healthy"), "stable", seed=0, started_at=0, time_scale=bad)


# --------------------------------------------------------------------------- the newer effects


def _effects(**sections: object) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "effects",
            "truth": "good",
            "traffic": {"requests_per_second": 100},
            "stable": {"error_rate": 0.01, "latency_p50_ms": 50},
            **sections,
        }
    )


def test_weight_announcements_give_the_simulators_canary_start_and_scale_ups() -> None:
    """The same weights, one per interval, through the simulator and through announcements at
    the intervals' starts: the same scale-ups (age, new pods' share)."""
    from training.simulator import RolloutSimulator

    scenario = _effects(canary={"cold_start": {"minutes": 1, "error_rate": 0.1}})
    weights = [5, 5, 10, 20, 20, 40, 60, 80, 100]
    simulator = RolloutSimulator(scenario, np.random.default_rng(0), 30.0)
    live = LiveBehaviour(scenario, "canary", seed=1, started_at=0.0, time_scale=10.0)
    assert live.weight == 100.0 and not live.weight_announced  # untold: serves everything
    live.set_weight(0, now=0.5)  # the driver routes 0 % first: not the canary's start
    assert live.canary_started_at is None
    for i, weight in enumerate(weights):
        simulator.next_interval(float(weight))
        live.set_weight(weight, now=7.0 + 3.0 * i)  # one 30 s interval per 3 wall seconds
    assert live.canary_started_at == 7.0
    assert live.scale_ups == pytest.approx(simulator.scale_ups)
    assert live.canary_age_seconds(7.0 + 3.0 * len(weights)) == 30.0 * len(weights)


def test_the_canary_serves_at_its_announced_weight() -> None:
    scenario = _effects(canary={"load_dependent": {"from_weight": 40, "error_rate": 0.2}})
    live = LiveBehaviour(scenario, "canary", seed=1, started_at=0.0)
    assert live.at(1.0).error_rate == pytest.approx(0.01 + 0.2)  # untold: 100 %
    live.set_weight(70, now=2.0)
    assert live.at(3.0).error_rate == pytest.approx(0.01 + 0.1)
    with pytest.raises(ValueError, match="weight"):
        live.set_weight(101, now=4.0)


def test_stable_only_incidents_reach_stable_alone() -> None:
    scenario = _effects(stable_incidents={"probability": 0.5, "error_rate": 0.3})
    stable, canary = _pair(scenario, time_scale=10.0)
    seen = set()
    for i in range(40):
        now = 1000.0 + 3.0 * i + 1.5
        s, c = stable.at(now), canary.at(now)
        assert stable.stable_incident == canary.stable_incident
        seen.add(stable.stable_incident)
        assert s.error_rate == pytest.approx(0.01 + (0.3 if stable.stable_incident else 0.0))
        assert c.error_rate == pytest.approx(0.01)
    assert seen == {True, False}


def test_dispersed_error_probability_is_one_beta_draw_per_scrape_period() -> None:
    """Within a scrape period every request has the same error probability; across periods it
    is Beta with mean = the rate and variance rate·(1 − rate)·ρ, the simulator's draw."""
    scenario = _effects(stable={"error_rate": 0.1, "latency_p50_ms": 50, "error_dispersion": 0.2})
    live = LiveBehaviour(scenario, "stable", seed=2, started_at=0.0, time_scale=1.0)
    period = live.interval_seconds / 6
    draws = []
    for k in range(4000):
        at = [k * period + f * period for f in (0.1, 0.5, 0.9)]
        ps = {live.error_probability(live.at(t), t) for t in at}
        assert len(ps) == 1
        draws.append(ps.pop())
    values = np.asarray(draws)
    assert values.mean() == pytest.approx(0.1, abs=0.004)
    assert values.var() == pytest.approx(0.1 * 0.9 * 0.2, rel=0.1)
    # One draw per period, not per interval: consecutive periods are independent.
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.1
    # Without dispersion the rate itself.
    plain = LiveBehaviour(_effects(), "stable", seed=2, started_at=0.0)
    assert plain.error_probability(plain.at(1.0), 1.0) == 0.01


def test_a_weight_change_inside_a_scrape_period_draws_afresh() -> None:
    scenario = _effects(
        stable={"error_rate": 0.1, "latency_p50_ms": 50, "error_dispersion": 0.2},
        canary={"load_dependent": {"from_weight": 40, "error_rate": 0.4}},
    )
    live = LiveBehaviour(scenario, "canary", seed=2, started_at=0.0)
    live.set_weight(20, now=0.0)
    low = live.error_probability(live.at(0.5), 0.5)
    assert live.error_probability(live.at(0.6), 0.6) == low  # same period, same regime
    live.set_weight(100, now=0.7)
    high = live.error_probability(live.at(0.8), 0.8)
    assert high != low
    assert live.error_probability(live.at(0.9), 0.9) == high
