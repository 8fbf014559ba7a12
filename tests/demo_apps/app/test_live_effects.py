"""The six newer scenario effects, live: the real demo apps' counts against the simulator's.

Each test runs the demo app(s) as processes on loopback with a compressed clock, drives requests
itself (or with the load generator, for the traffic profile), reads the apps' own ``/metrics``
and compares the counts with what the same ``EpisodeParameters`` give the simulator
(``params.stable``, ``params.canary``, ``rate_factor``, ``Conditions``; ``training.simulator``
for the latency buckets and the beta-binomial scrapes), within sampling error: binomial standard
deviations at :data:`Z`, or for dispersion the simulator's own distribution of the statistic.
Each test also checks that the effect is at least twice its tolerance, so an app that ignored it
would fail. The simulator's side of each effect: ``tests/training/test_simulator.py``.

Seeds are fixed, so every run re-draws the same per-request stream and a count's deviation from
its expectation is mostly that stream's, not the machine's: e.g. the load generator's seed 5
schedules 574 arrivals in the profile's last second where 600 are expected, and the live apps
count 574-575 there run after run. The tests print their figures (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from demo_apps.app.behaviour import SCRAPES_PER_INTERVAL, live_parameters
from demo_apps.local.demo import live_request_rate
from demo_apps.local.loadgen import LoadGenerator, RateProfile
from scenarios import Conditions, EpisodeParameters, Scenario
from scenarios.sampling import ScaleUp
from tests.support.live_apps import (
    Counts,
    Pool,
    Sent,
    control,
    live_apps,
    put_weight,
    read_counts,
    timed_reader,
)
from training.simulator import SUB_BUCKETS, _dispersed, _latency_bucket_probabilities

#: Standard deviations a count may stray from its expectation (two-sided: 6e-5 per comparison).
Z = 4.0
SEED = 3
INTERVAL = 30.0  # scenario seconds, as in training
QUIET = {"error_rate": 0.001, "latency_p50_ms": 1.0, "latency_spread": 0.1}


def _scenario(name: str, **sections: Any) -> dict[str, Any]:
    return {
        "name": name,
        "truth": "good",
        "traffic": {"requests_per_second": 100},
        "stable": QUIET,
        **sections,
    }


def _params(document: dict[str, Any]) -> tuple[Scenario, EpisodeParameters]:
    scenario = Scenario.model_validate(document)
    return scenario, live_parameters(scenario, SEED)


def _band(probabilities: Sequence[float]) -> tuple[float, float]:
    """Expected errors and their standard deviation over requests with these probabilities."""
    p = np.asarray(probabilities, dtype=float)
    return float(p.sum()), float(math.sqrt(float((p * (1.0 - p)).sum())))


def _assert_within(observed: float, probabilities: Sequence[float], what: str) -> None:
    expected, sd = _band(probabilities)
    print(
        f"{what}: {observed:g} errors of {len(probabilities)}, expected {expected:.1f} ± {sd:.1f}"
    )
    assert abs(observed - expected) <= Z * sd + 0.5, (
        f"{what}: {observed:g} errors, expected {expected:.1f} ± {Z:g} x {sd:.1f}"
    )


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_the_scrape_period_is_the_simulators() -> None:
    assert SCRAPES_PER_INTERVAL == SUB_BUCKETS


# --------------------------------------------------------------------------- 1. traffic profile


def test_the_load_follows_the_traffic_profile(tmp_path: Path) -> None:
    """The load generator's total over both apps follows ``rate_factor`` of the canary's age
    (scenario minutes at ``time_scale``), as the simulator scales its requests."""
    document = _scenario(
        "live_profile",
        traffic={
            "requests_per_second": 20,
            "profile": [
                {"minute": 0, "factor": 1.0},
                {"minute": 0.5, "factor": 0.25},
                {"minute": 1.0, "factor": 0.25},
                {"minute": 1.5, "factor": 1.0},
            ],
        },
    )
    _, params = _params(document)
    time_scale = 30.0  # a scenario minute in 2 wall seconds
    profile = RateProfile(params, time_scale)
    rps = live_request_rate(params.requests_per_second, time_scale, 1500.0, profile.peak)
    assert rps == pytest.approx(600.0)
    reads: dict[str, list[tuple[float, float]]] = {"stable": [], "canary": []}
    with (
        live_apps(tmp_path, document, seed=SEED, time_scale=time_scale) as apps,
        httpx.Client(trust_env=False, timeout=10.0) as client,
    ):
        load = LoadGenerator(
            apps["stable"].url,
            apps["canary"].url,
            rps,
            seed=5,
            profile=profile,
            canary_control_url=apps["canary"].url + "/control/weight",
        )
        load.set_weight(50)
        with load:
            origin = load.canary_started_at
            assert origin is not None
            for mark in (0.0, 1.0, 2.0, 3.0, 4.0):
                time.sleep(max(0.0, origin + mark - time.monotonic()))
                for track, app in apps.items():
                    before = time.monotonic()
                    total = read_counts(app.url, client).requests
                    reads[track].append(((before + time.monotonic()) / 2 - origin, total))
        assert load.dropped == 0
        assert control(apps["canary"].url)["weight"] == 50

    def factor(seconds: float) -> float:  # the simulator's: rate_factor of the canary's minutes
        return params.rate_factor(seconds * time_scale / 60.0)

    def integral(t0: float, t1: float) -> float:
        return float(np.mean([factor(t) for t in np.linspace(t0, t1, 401)])) * (t1 - t0)

    for i in range(len(reads["stable"]) - 1):
        # Half of the load to each app (weight 50), each counted between its own reads.
        windows = [(reads[track][i], reads[track][i + 1]) for track in reads]
        expected = sum(0.5 * rps * integral(t0, t1) for (t0, _), (t1, _) in windows)
        served = sum(n1 - n0 for (_, n0), (_, n1) in windows)
        flat = sum(0.5 * rps * (t1 - t0) for (t0, _), (t1, _) in windows)  # without a profile
        print(f"segment {i}: {served:g} requests, expected {expected:.0f}, flat {flat:.0f}")
        # Poisson counts; 3 requests of slack for the ones in flight at a read.
        assert abs(served - expected) <= Z * math.sqrt(expected) + 3, (i, served, expected)
        if i == 1:  # the dip: a quarter of the flat load
            assert flat - expected > 2 * Z * math.sqrt(expected)


def test_the_cap_applies_at_the_profiles_peak() -> None:
    assert live_request_rate(100, 10, 1500) == 1000
    assert live_request_rate(200, 10, 1500) == 1500
    # A surge to 2x must fit under the cap too: the profile's shape is kept.
    assert live_request_rate(100, 10, 1500, peak_factor=2.0) == 750
    assert live_request_rate(100, 10, 1500, peak_factor=0.5) == 1000
    with pytest.raises(ValueError, match="peak_factor"):
        live_request_rate(100, 10, 1500, peak_factor=0.0)


# --------------------------------------------------------------------------- 2. stable incidents


def _interval(at: float, clock_start: float, time_scale: float) -> int:
    return int((at - clock_start) * time_scale // INTERVAL)


def test_stable_only_incidents_hit_stable_and_spare_the_canary(tmp_path: Path) -> None:
    """Stable's errors follow ``params.stable(incident, stable_incident)`` interval by
    interval, with the weather the simulator's ``Conditions`` draws; the canary's ignore it."""
    document = _scenario(
        "live_stable_incidents",
        stable={**QUIET, "error_rate": 0.01},
        stable_incidents={"probability": 0.5, "duration_intervals": 1, "error_rate": 0.3},
    )
    scenario, params = _params(document)
    time_scale = 100.0  # an interval in 0.3 wall seconds
    conditions = Conditions(params, scenario, np.random.default_rng([SEED, 1]))
    weather: list[tuple[bool, bool, bool]] = []

    def weather_at(index: int) -> tuple[bool, bool, bool]:
        while len(weather) <= index:
            conditions.advance()
            weather.append((conditions.spike, conditions.incident, conditions.stable_incident))
        return weather[index]

    clock_start = time.time()
    with live_apps(
        tmp_path, document, seed=SEED, time_scale=time_scale, clock_start=clock_start
    ) as apps:
        before = {track: read_counts(app.url) for track, app in apps.items()}

        async def drive() -> dict[str, list[Sent]]:
            pools = {track: Pool(app.url, 4) for track, app in apps.items()}
            sent: dict[str, list[Sent]] = {track: [] for track in apps}
            started = time.time()
            try:
                # 3 s, and on until both calm and incident intervals were served (bounded).
                while time.time() < started + 8.0:
                    deadline = time.time() + 0.3
                    chunks = await asyncio.gather(*(p.until(deadline) for p in pools.values()))
                    for track, chunk in zip(pools, chunks, strict=True):
                        sent[track].extend(chunk)
                    served = {
                        weather_at(_interval(s.middle, clock_start, time_scale))[2]
                        for s in sent["stable"]
                    }
                    if time.time() > started + 3.0 and served == {True, False}:
                        break
            finally:
                for pool in pools.values():
                    pool.close()
            return sent

        sent = _run(drive())
        counts = {track: read_counts(app.url) - before[track] for track, app in apps.items()}

    def probability(track: str, request: Sent, *, stable_incidents: bool = True) -> float:
        rates = []
        for at in (request.sent, request.answered):  # a request across a boundary: the mean
            _, incident, stable_incident = weather_at(_interval(at, clock_start, time_scale))
            if track == "stable":
                behaviour = params.stable(incident, stable_incident and stable_incidents)
            else:
                behaviour = params.canary(0.0, False, incident)
            rates.append(behaviour.error_rate)
        return float(np.mean(rates))

    for track in ("stable", "canary"):
        assert counts[track].requests == len(sent[track])
        ps = [probability(track, s) for s in sent[track]]
        _assert_within(counts[track].errors, ps, track)
    # Interval by interval: stable's errors in incident intervals and in calm ones.
    for incident in (True, False):
        inside = [
            s
            for s in sent["stable"]
            if {
                weather_at(_interval(at, clock_start, time_scale))[2] for at in (s.sent, s.answered)
            }
            == {incident}
        ]
        errors = sum(s.status >= 500 for s in inside)
        _assert_within(errors, [probability("stable", s) for s in inside], f"stable {incident}")
    # Not vacuous: without its incidents stable would be far below what it served.
    with_incidents, sd = _band([probability("stable", s) for s in sent["stable"]])
    without, _ = _band([probability("stable", s, stable_incidents=False) for s in sent["stable"]])
    assert with_incidents - without > 2 * Z * sd


# --------------------------------------------------------------------------- 3. cold start


def _windows(
    url: str, ends: Sequence[float], reader: httpx.Client, concurrency: int = 8
) -> list[tuple[Counts, list[Sent]]]:
    """Requests back to back until each wall time in ``ends``; ``/metrics`` after each, read
    with ``reader`` (from :func:`timed_reader`)."""

    async def drive() -> list[tuple[Counts, list[Sent]]]:
        pool = Pool(url, concurrency)
        out = []
        try:
            before = read_counts(url, reader)
            for end in ends:
                sent = await pool.until(end)
                after = read_counts(url, reader)
                out.append((after - before, sent))
                before = after
        finally:
            pool.close()
        return out

    result: list[tuple[Counts, list[Sent]]] = _run(drive())
    return result


def _check_windows(
    windows: Sequence[tuple[Counts, list[Sent]]],
    probability: Callable[[float], float],
    label: str,
) -> list[tuple[float, float, int]]:
    """Each window's errors against the simulator's probabilities at its requests' times;
    returns (expected, sd, requests) per window."""
    bands = []
    for i, (counts, sent) in enumerate(windows):
        assert counts.requests == len(sent)
        ps = [probability(s.middle) for s in sent]
        _assert_within(counts.errors, ps, f"{label} window {i}")
        bands.append((*_band(ps), len(sent)))
    return bands


def test_a_cold_start_fades_and_returns_after_a_scale_up(tmp_path: Path) -> None:
    """The canary's errors follow ``params.canary(age, weight=, scale_ups=)``: cold at its
    start (its weight's first rise above 0), warm after ``minutes``, and cold again for the new
    pods' share after a weight increase, as the simulator records the scale-up."""
    document = _scenario(
        "live_cold_start",
        canary={
            "cold_start": {
                "minutes": 1.0,
                "error_rate": 0.3,
                "latency_multiplier": 1.0,
                "after_scale_up": True,
            }
        },
    )
    _, params = _params(document)
    time_scale = 60.0  # a scenario minute per wall second
    canary_only = {"tracks": ("canary",), "seed": SEED, "time_scale": time_scale}
    with live_apps(tmp_path, document, **canary_only) as apps, timed_reader() as reader:
        url = apps["canary"].url
        put_weight(url, 0)
        t0 = put_weight(url, 50).at  # the canary starts: age 0
        first = _windows(url, [t0 + 0.5, t0 + 1.0, t0 + 1.4], reader)
        scale = put_weight(url, 100)  # half of the canary's pods are new
        t1 = scale.at
        second = _windows(url, [t1 + 0.5, t1 + 1.0, t1 + 1.4], reader)
        assert scale.state["scale_ups"] == [
            {"age_minutes": pytest.approx(t1 - t0, abs=0.05), "new_share": 0.5}
        ]
    scale_up = ScaleUp(t1 - t0, 0.5)

    def probability(at: float) -> float:
        minutes = (at - t0) * time_scale / 60.0
        if at < t1:
            return params.canary(minutes, False, False, weight=50).error_rate
        return params.canary(minutes, False, False, weight=100, scale_ups=[scale_up]).error_rate

    bands = _check_windows(first, probability, "start") + _check_windows(
        second, probability, "scale-up"
    )
    warm = params.stable_error_rate
    for index in (0, 3):  # the first half-minute after the start and after the scale-up
        expected, sd, n = bands[index]
        assert expected - n * warm > 2 * Z * sd, bands
    for index in (2, 5):  # past the minute: warm again
        assert bands[index][0] == pytest.approx(bands[index][2] * warm)


# --------------------------------------------------------------------------- 4. tail latency


def _cdf_band(
    counts: Counts, bounds: Sequence[float], expected_cdf: Sequence[float], slack: Sequence[float]
) -> None:
    n = counts.buckets[math.inf]
    for bound, f, f_low in zip(bounds, expected_cdf, slack, strict=True):
        observed = counts.buckets[bound]
        print(f"le {bound:g}: {observed:g} of {n:g}, expected {n * f_low:.0f}..{n * f:.0f}")
        sd_high, sd_low = math.sqrt(n * f * (1 - f)), math.sqrt(n * f_low * (1 - f_low))
        # Serving adds a little to every spent latency: a count below a bound may fall short
        # of the simulator's by the requests within the overhead of it, never exceed it.
        assert n * f_low - Z * sd_low - 0.5 <= observed <= n * f + Z * sd_high + 0.5, (
            bound,
            observed,
            n * f_low,
            n * f,
        )


def test_a_tail_only_change_moves_p95_and_not_p50(tmp_path: Path) -> None:
    """Live latency histograms against the simulator's bucket probabilities
    (``_latency_bucket_probabilities`` of ``params.stable``/``params.canary``): same median,
    the canary's spread times ``latency_spread_multiplier``."""
    document = _scenario(
        "live_tail",
        stable={"error_rate": 0.0, "latency_p50_ms": 200.0, "latency_spread": 0.3},
        canary={"latency_spread_multiplier": 2.0},
    )
    _, params = _params(document)
    requests = 800
    behaviours = {"stable": params.stable(False), "canary": params.canary(0.0, False, False)}
    assert behaviours["canary"].latency_spread == pytest.approx(0.6)
    with live_apps(tmp_path, document, seed=SEED) as apps:
        before = {track: read_counts(app.url) for track, app in apps.items()}

        async def drive() -> None:
            pools = [Pool(app.url, 150) for app in apps.values()]
            try:
                await asyncio.gather(*(pool.burst(requests) for pool in pools))
            finally:
                for pool in pools:
                    pool.close()

        _run(drive())
        counts = {track: read_counts(app.url) - before[track] for track, app in apps.items()}
    bounds = sorted(b for b in counts["stable"].buckets if math.isfinite(b))
    chosen = [b for b in bounds if 0.1 <= b <= 1.5]  # p5 .. p99.9 of either version
    overhead = 0.02  # seconds: the event loop's share of a busy machine, at most

    def cdf(track: str, shift: float = 0.0) -> list[float]:
        behaviour = behaviours[track]
        probs = np.cumsum(_latency_bucket_probabilities(behaviour))
        if shift:
            scaled = [b - shift for b in chosen]
            z = [
                (math.log(1000 * b) - math.log(behaviour.latency_p50_ms)) / behaviour.latency_spread
                for b in scaled
            ]
            return [0.5 * math.erfc(-v / math.sqrt(2)) for v in z]
        return [float(probs[bounds.index(b)]) for b in chosen]

    for track in ("stable", "canary"):
        assert counts[track].requests == requests
        _cdf_band(counts[track], chosen, cdf(track), cdf(track, overhead))
    # Not vacuous: in the tail the canary's counts are far from what stable's spread gives.
    gaps = [
        requests * (f_stable - f_canary) / math.sqrt(requests * f_canary * (1 - f_canary))
        for f_canary, f_stable in zip(cdf("canary"), cdf("stable"), strict=True)
    ]
    assert max(gaps) > 2 * Z, gaps


# --------------------------------------------------------------------------- 5. load dependence


def test_a_load_dependent_regression_grows_with_the_weight(tmp_path: Path) -> None:
    """The canary's errors follow ``params.canary(..., weight=w)`` at the weight the router
    announced: its own at 20 %, half the regression at 70 %, all of it at 100 %."""
    document = _scenario(
        "live_load_dependent",
        canary={"load_dependent": {"from_weight": 40, "error_rate": 0.2}},
    )
    _, params = _params(document)
    with (
        live_apps(tmp_path, document, tracks=("canary",), seed=SEED, time_scale=10.0) as apps,
        timed_reader() as reader,
    ):
        url = apps["canary"].url
        windows = []
        for weight in (20, 70, 100):
            put_weight(url, weight)
            windows.append((weight, _windows(url, [time.time() + 0.7], reader)[0]))
    bands = []
    for weight, window in windows:

        def probability(at: float, weight: float = weight) -> float:
            return params.canary(0.0, False, False, weight=weight).error_rate

        bands += _check_windows([window], probability, f"weight {weight}")
    own = params.stable_error_rate
    assert bands[0][0] == pytest.approx(bands[0][2] * own)
    for expected, sd, n in bands[1:]:
        assert expected - n * own > 2 * Z * sd, bands


# --------------------------------------------------------------------------- 6. dispersion


def _dispersion_statistic(errors: np.ndarray, requests: np.ndarray, rate: float) -> np.ndarray:
    """Sum over scrape periods of the squared Pearson residuals (the last axis)."""
    residual = (errors - requests * rate) ** 2 / (requests * rate * (1.0 - rate))
    result: np.ndarray = residual.sum(axis=-1)
    return result


def test_over_dispersed_errors_vary_per_scrape_period_as_simulated(tmp_path: Path) -> None:
    """Per scrape period (interval / 6 of scenario time) the errors of a version with
    ``error_dispersion`` ρ are beta-binomial: the sum of squared Pearson residuals over the
    periods falls inside the simulator's own distribution of it (``_dispersed`` then binomial,
    99.8 % band), and far above the binomial's; the canary's own ρ = 0 stays binomial."""
    rate, rho, per_period = 0.2, 0.3, 80
    document = _scenario(
        "live_dispersion",
        stable={**QUIET, "error_rate": rate, "error_dispersion": rho},
        canary={"error_dispersion": 0.0},
    )
    _, params = _params(document)
    assert params.stable(False).error_dispersion == rho
    assert params.canary(0.0, False, False).error_dispersion == 0.0
    period = 0.3  # wall seconds per scrape period
    time_scale = INTERVAL / SCRAPES_PER_INTERVAL / period
    clock_start = time.time()
    periods: dict[str, list[tuple[float, float]]] = {"stable": [], "canary": []}
    with live_apps(
        tmp_path, document, seed=SEED, time_scale=time_scale, clock_start=clock_start
    ) as apps:

        def index(at: float) -> int:
            return int((at - clock_start) // period)

        async def drive() -> None:
            pools = {track: Pool(app.url, 16) for track, app in apps.items()}
            before = {track: read_counts(app.url) for track, app in apps.items()}
            started = time.time()
            try:
                while len(periods["stable"]) < 12 and time.time() < started + 8.0:
                    k = index(time.time()) + 1
                    await asyncio.sleep(clock_start + k * period + 0.01 - time.time())
                    bursts = await asyncio.gather(*(p.burst(per_period) for p in pools.values()))
                    after = {track: read_counts(app.url) for track, app in apps.items()}
                    inside = all(
                        index(s.sent) == k and index(s.answered) == k
                        for burst in bursts
                        for s in burst
                    )
                    for track in apps:
                        delta = after[track] - before[track]
                        if inside:  # one period's draw, not two
                            periods[track].append((delta.requests, delta.errors))
                    before = after
            finally:
                for pool in pools.values():
                    pool.close()

        _run(drive())
    assert len(periods["stable"]) >= 12, f"only {len(periods['stable'])} whole periods"
    rng = np.random.default_rng(11)
    bands = {}
    for track, version_rho in (("stable", rho), ("canary", 0.0)):
        requests = np.array([n for n, _ in periods[track]], dtype=np.int64)
        errors = np.array([e for _, e in periods[track]], dtype=np.int64)
        assert (requests == per_period).all()
        observed = float(_dispersion_statistic(errors, requests, rate))
        # The simulator's scrapes: a Beta draw per scrape (none at rho 0), then binomial.
        rates = np.full((20_000, len(requests)), rate)
        if version_rho > 0:
            rates = np.asarray([_dispersed(row, version_rho, rng) for row in rates.tolist()])
        simulated = _dispersion_statistic(rng.binomial(requests, rates), requests, rate)
        low, high = np.quantile(simulated, [0.001, 0.999])
        bands[track] = (low, high)
        print(
            f"{track}: {len(requests)} periods of {per_period}, {errors.sum()} errors, "
            f"statistic {observed:.1f}, simulator's 99.8 % band {low:.1f}..{high:.1f}"
        )
        assert low <= observed <= high, (track, observed, low, high)
        # The mean error rate is the version's either way.
        variance = requests * rate * (1 - rate) * (1 + (requests - 1) * version_rho)
        assert abs(errors.sum() - requests.sum() * rate) <= Z * math.sqrt(variance.sum())
    # Not vacuous: the two bands do not meet, so an app drawing per request would fail.
    assert bands["canary"][1] < bands["stable"][0], bands
