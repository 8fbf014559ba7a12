"""The simulator samples metrics the way production produces them."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from scenarios import Scenario, VersionBehaviour, load_scenario
from tests.conftest import SCENARIOS_DIR
from training.simulator import (
    SUB_BUCKETS,
    RolloutSimulator,
    _bucket_distribution,
    _latency_mean_std,
    sample_version,
)
from training.stress import family_source


def sim(name: str, seed: int = 0) -> RolloutSimulator:
    return RolloutSimulator(
        load_scenario(SCENARIOS_DIR / f"{name}.yaml"), np.random.default_rng(seed), 30.0
    )


def test_traffic_splits_by_weight() -> None:
    s = sim("healthy")
    canary = stable = 0
    for _ in range(200):
        interval = s.next_interval(20.0)
        canary += interval.canary.requests
        stable += interval.stable.requests
        assert interval.canary.scrape_requests.sum() == interval.canary.requests
        assert len(interval.canary.scrape_requests) == SUB_BUCKETS
        assert interval.canary.buckets.sum() == interval.canary.requests
    assert canary / (canary + stable) == pytest.approx(0.2, abs=0.01)


def test_error_rates_follow_the_scenario() -> None:
    s = sim("buggy", 1)
    for _ in range(100):
        s.next_interval(50.0)
    snap = s.snapshot()
    expected = s.params.stable_error_rate + s.params.error_additive
    assert snap.canary_cumulative.error_rate == pytest.approx(expected, rel=0.1)
    assert snap.stable_cumulative.error_rate == pytest.approx(s.params.stable_error_rate, rel=0.3)


def test_quantiles_come_from_the_histogram_and_are_noisy_with_few_requests() -> None:
    busy, quiet = [], []
    for seed in range(40):
        s = sim("healthy", seed)
        s.next_interval(50.0)
        busy.append(
            s.snapshot().canary.latency_p95_ms
            / (s.params.stable_p50_ms * np.exp(1.645 * s.params.latency_spread))
        )
        q = sim("low_traffic", seed)
        for _ in range(50):
            q.next_interval(50.0)
            snap = q.snapshot()
            if snap.canary.requests > 0:
                quiet.append(
                    snap.canary.latency_p95_ms
                    / (q.params.stable_p50_ms * np.exp(1.645 * q.params.latency_spread))
                )
                break
    assert np.median(busy) == pytest.approx(1.0, abs=0.15)
    assert np.std(quiet) > 2 * np.std(busy)


def test_snapshot_without_canary_traffic_has_no_latency() -> None:
    s = sim("low_traffic", 2)
    for _ in range(100):
        interval = s.next_interval(5.0)
        if interval.canary.requests == 0:
            snap = s.snapshot()
            assert snap.canary.latency_p95_ms is None and snap.canary.error_rate is None
            return
    pytest.fail("expected an interval without canary requests at 5 % of low traffic")


def test_a_weather_change_inside_an_interval_splits_its_scrapes() -> None:
    before = VersionBehaviour(error_rate=1.0, latency_p50_ms=2000.0, latency_spread=0.1)
    after = VersionBehaviour(error_rate=0.0, latency_p50_ms=5.0, latency_spread=0.1)
    v = sample_version(6000, after, np.random.default_rng(0), earlier=before, earlier_scrapes=2)
    early = int(v.scrape_requests[:2].sum())
    assert v.scrape_errors[:2].tolist() == v.scrape_requests[:2].tolist()  # all failed before
    assert v.scrape_errors[2:].sum() == 0 and v.errors == early
    assert v.buckets.sum() == v.requests == 6000
    slow = int(v.buckets[np.searchsorted(LATENCY_BUCKETS_SECONDS, 1.0) :].sum())
    assert slow == early  # the earlier requests took ~2 s, the later ~5 ms
    assert (v.scrape_mean_latency_ms[:2] > 1000).all() and (v.scrape_mean_latency_ms[2:] < 50).all()
    with pytest.raises(ValueError, match="earlier_scrapes"):
        sample_version(10, after, np.random.default_rng(0), earlier=before, earlier_scrapes=6)


def _array_draws(
    requests: int,
    behaviour: VersionBehaviour,
    rng: np.random.Generator,
    earlier: VersionBehaviour | None = None,
    split: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scrape errors and mean latencies drawn with one array call each (how the simulator drew
    them until round 8); the first ``split`` scrapes under ``earlier``."""
    before = earlier or behaviour
    scrape_requests = rng.multinomial(requests, np.full(SUB_BUCKETS, 1.0 / SUB_BUCKETS))
    rates = np.full(SUB_BUCKETS, behaviour.error_rate)
    rates[:split] = before.error_rate
    if behaviour.error_dispersion > 0:
        k = 1.0 / behaviour.error_dispersion - 1.0
        inside = (rates > 0.0) & (rates < 1.0)
        rates[inside] = rng.beta(rates[inside] * k, (1.0 - rates[inside]) * k)
    errors = rng.binomial(scrape_requests, rates)
    if split:  # the histogram, as drawn
        early = int(scrape_requests[:split].sum())
        rng.multinomial(early, _bucket_distribution(before))
        rng.multinomial(requests - early, _bucket_distribution(behaviour))
    else:
        rng.multinomial(requests, _bucket_distribution(behaviour))
    # each period's log-normal mean and sd (scalars: numpy's vectorised exp may differ by an ulp)
    mean, std = (np.full(SUB_BUCKETS, v) for v in _latency_mean_std(behaviour))
    mean[:split], std[:split] = _latency_mean_std(before)
    latency = rng.normal(mean, std / np.sqrt(np.maximum(scrape_requests, 1)))
    return errors, np.where(scrape_requests > 0, np.maximum(latency, 0.0), np.nan)


@pytest.mark.parametrize("dispersion", [0.0, 0.05])
@pytest.mark.parametrize("requests", [0, 7, 240, 50_000])
def test_scalar_draws_are_the_array_draws(requests: int, dispersion: float) -> None:
    """The simulator draws each scrape's errors (and clump) with a scalar call, in order, and
    latency as loc + scale·z in Python floats: the same numbers, from the same stream, as the
    array calls, with or without a change of weather inside the interval."""
    behaviour = VersionBehaviour(0.01, 40.0, 0.5, error_dispersion=dispersion)
    storm = VersionBehaviour(0.2, 400.0, 0.9, error_dispersion=dispersion)
    for seed in range(20):
        split = seed % SUB_BUCKETS
        got = sample_version(
            requests, behaviour, np.random.default_rng(seed), earlier=storm, earlier_scrapes=split
        )
        errors, latency = _array_draws(
            requests, behaviour, np.random.default_rng(seed), storm, split
        )
        assert got.scrape_errors.tolist() == errors.tolist()
        assert got.errors == int(errors.sum())
        assert np.array_equal(got.scrape_mean_latency_ms, latency, equal_nan=True)


def _spiky(probability: float) -> Scenario:
    raw = yaml.safe_load((SCENARIOS_DIR / "flaky.yaml").read_text())
    raw["stable"]["error_rate"] = 0.0
    raw["canary"]["spikes"] = {"probability": probability, "error_rate": 1.0}
    return Scenario.model_validate(raw)


def test_spikes_run_on_their_own_clock_and_straddle_analysis_windows() -> None:
    """Live, a spike starts whenever it starts: the simulator draws the phase per episode."""
    offsets = set()
    straddled = 0
    for seed in range(30):
        s = RolloutSimulator(_spiky(0.3), np.random.default_rng(seed), 30.0)
        k = s.weather_offset
        offsets.add(k)
        spiking_before = s._weather_before[0]
        for _ in range(20):
            iv = s.next_interval(50.0).canary
            # errors happen only while a spike lasts (error rate 1.0 then, 0 otherwise)
            failed = iv.scrape_errors == iv.scrape_requests
            clean = iv.scrape_errors == 0
            expected_head, expected_tail = spiking_before, s._conditions.spike
            assert (failed if expected_head else clean)[:k].all()
            assert (failed if expected_tail else clean)[k:].all()
            straddled += int(k > 0 and expected_head != expected_tail)
            spiking_before = expected_tail
    assert offsets == set(range(SUB_BUCKETS))
    assert straddled > 50  # windows that saw part of a spike


def test_scenarios_without_weather_keep_aligned_windows() -> None:
    for name in ("healthy", "buggy", "degrading"):
        for seed in range(10):
            assert sim(name, seed).weather_offset == 0


# --------------------------------------------------------------------------- the newer effects


def _sim_of(name: str, seed: int = 0, **overrides: object) -> RolloutSimulator:
    from dataclasses import replace

    from scenarios import EpisodeParameters

    scenario = load_scenario(SCENARIOS_DIR / f"{name}.yaml")
    rng = np.random.default_rng(seed)
    params = replace(EpisodeParameters.draw(scenario, rng), **overrides)  # type: ignore[arg-type]
    return RolloutSimulator(scenario, rng, 30.0, params=params)


def test_over_dispersed_errors_vary_beyond_binomial() -> None:
    """Per-scrape error counts: binomial variance without dispersion, inflated by about
    1 + (n - 1)·ρ with it; the mean error rate is the same either way."""

    def scrape_counts(rho: float) -> np.ndarray:
        behaviour = VersionBehaviour(0.02, 50.0, 0.5, error_dispersion=rho)
        rng = np.random.default_rng(3)
        return np.concatenate(
            [sample_version(1200, behaviour, rng).scrape_errors for _ in range(2000)]
        )

    plain, clumped = scrape_counts(0.0), scrape_counts(0.05)
    assert plain.mean() == pytest.approx(4.0, rel=0.03)
    assert clumped.mean() == pytest.approx(4.0, rel=0.05)
    assert plain.var() == pytest.approx(200 * 0.02 * 0.98, rel=0.1)
    assert clumped.var() == pytest.approx(200 * 0.02 * 0.98 * (1 + 199 * 0.05), rel=0.15)


def test_the_traffic_profile_scales_the_requests() -> None:
    s = _sim_of("healthy", requests_per_second=100.0, traffic_profile=((0.0, 1.0), (1.0, 0.1)))
    first = [s.next_interval(50.0) for _ in range(2)]  # minutes 0.25 and 0.75
    later = [s.next_interval(50.0) for _ in range(20)]  # minute 1.25 and after: x0.1
    total = sum(i.canary.requests + i.stable.requests for i in later) / len(later)
    assert total == pytest.approx(300.0, rel=0.1)
    assert first[0].canary.requests + first[0].stable.requests > 1500


def test_stable_only_incidents_hit_stable_and_spare_the_canary() -> None:
    s = _sim_of(
        "healthy",
        stable_error_rate=0.001,
        error_multiplier=1.0,
        requests_per_second=400.0,
        stable_incident_probability=0.5,
        stable_incident_error_rate=0.2,
    )
    for _ in range(200):
        s.next_interval(50.0)
    snap = s.snapshot()
    assert snap.canary_cumulative.error_rate is not None
    assert snap.stable_cumulative.error_rate is not None
    assert snap.canary_cumulative.error_rate < 0.003
    assert snap.stable_cumulative.error_rate > 0.05


def test_a_cold_start_fades_and_returns_after_a_scale_up() -> None:
    s = _sim_of(
        "healthy",
        stable_error_rate=0.001,
        error_multiplier=1.0,
        requests_per_second=2000.0,
        cold_start_minutes=1.0,
        cold_start_error_rate=0.2,
        cold_start_after_scale_up=True,
    )
    rates = [s.next_interval(w).canary.errors / max(1, s.last.canary.requests) for w in
             (50.0, 50.0, 50.0, 50.0, 100.0, 100.0, 100.0)]  # fmt: skip
    assert rates[0] > 0.1  # minute 0.25: 75 % cold
    assert rates[3] < 0.01  # minute 1.75: warm
    assert rates[4] > 0.05  # after 50 -> 100: half the pods are new and cold
    assert rates[6] < 0.01
    assert s.scale_ups[0].new_share == pytest.approx(0.5)


def test_a_load_dependent_regression_grows_with_the_weight() -> None:
    s = _sim_of(
        "healthy",
        stable_error_rate=0.001,
        error_multiplier=1.0,
        requests_per_second=2000.0,
        load_from_weight=40.0,
        load_error_rate=0.1,
    )

    def rate(weight: float) -> float:
        errors = requests = 0
        for _ in range(5):
            interval = s.next_interval(weight)
            errors += interval.canary.errors
            requests += interval.canary.requests
        return errors / requests

    assert rate(20.0) < 0.004
    assert rate(70.0) == pytest.approx(0.001 + 0.05, rel=0.15)
    assert rate(100.0) == pytest.approx(0.001 + 0.1, rel=0.1)


def test_a_tail_only_change_moves_p95_and_not_p50() -> None:
    base = dict(requests_per_second=3000.0, latency_multiplier=1.0, stable_p50_ms=50.0)
    wide = _sim_of("healthy", **base, spread_multiplier=1.8)
    for _ in range(20):
        wide.next_interval(50.0)
    snap = wide.snapshot()
    c, st = snap.canary_cumulative, snap.stable_cumulative
    assert c.latency_p50_ms is not None and st.latency_p50_ms is not None
    assert c.latency_p95_ms is not None and st.latency_p95_ms is not None
    assert c.latency_p50_ms == pytest.approx(st.latency_p50_ms, rel=0.1)
    assert c.latency_p95_ms > 1.3 * st.latency_p95_ms


def test_without_traffic_routing_the_share_is_argos_pod_counts() -> None:
    """5 replicas: 5 % and 10 % are one canary pod of six, 20 % one of five (Argo's
    approximateWeightedCanaryStableReplicaCounts), and the simulator splits traffic so."""
    from training.simulator import pod_share

    assert pod_share(5, 5) == pytest.approx(1 / 6)
    assert pod_share(10, 5) == pytest.approx(1 / 6)
    assert pod_share(20, 5) == pytest.approx(1 / 5)
    assert pod_share(100, 5) == 1.0
    s = RolloutSimulator(
        load_scenario(SCENARIOS_DIR / "healthy.yaml"), np.random.default_rng(0), 30.0, replicas=5
    )
    canary = total = 0
    for _ in range(200):
        interval = s.next_interval(5.0)
        canary += interval.canary.requests
        total += interval.canary.requests + interval.stable.requests
    assert canary / total == pytest.approx(1 / 6, abs=0.01)


def _never_changes(value: object) -> bool:
    """None, a number, a string, a tuple of such, a frozen dataclass or a frozen model."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, tuple):
        return all(map(_never_changes, value))
    params = getattr(type(value), "__dataclass_params__", None)
    if params is not None:
        return bool(params.frozen)
    return isinstance(value, BaseModel) and bool(value.model_config.get("frozen"))


def test_a_copy_shares_only_what_never_changes() -> None:
    """An evaluation's agents go on from copies of one episode's start: a simulator's copy
    (and its weather's) shares a field only if that field never changes once made, so a field
    added later without a rule in ``copy`` fails here. Then both draw the same intervals from
    generators in the same state, and what one adds to its totals the other does not see."""
    scenario = family_source("everything")(np.random.default_rng(4))
    original = RolloutSimulator(scenario, np.random.default_rng(4), 30.0)
    for _ in range(3):
        original.next_interval(10.0)
    original.next_interval(20.0)  # a scale-up
    assert original.scale_ups and original.last is not None
    generator = np.random.default_rng(99)
    generator.bit_generator.state = original._rng.bit_generator.state
    copied = original.copy(generator)
    for before, after in ((original, copied), (original._conditions, copied._conditions)):
        for name, value in vars(before).items():
            shared = vars(after)[name] is value
            if name == "_rng":
                assert vars(after)[name] is generator
            else:
                assert shared == _never_changes(value), name
    mine, theirs = original.next_interval(20.0), copied.next_interval(20.0)
    assert mine.canary.requests == theirs.canary.requests
    assert mine.canary.scrape_errors.tolist() == theirs.canary.scrape_errors.tolist()
    original.next_interval(50.0)
    assert len(copied.scale_ups) == 1 and len(original.scale_ups) == 2
    assert (
        copied.snapshot().canary_cumulative.requests
        < original.snapshot().canary_cumulative.requests
    )
