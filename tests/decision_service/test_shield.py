"""The shield: anytime-valid bounds, what each side compares with, and what it allows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from decision_service.histogram import LATENCY_BUCKETS_SECONDS
from decision_service.shield import (
    STABLE_HISTORY_WINDOWS,
    Evidence,
    MetricEvidence,
    ShieldConfig,
    VersionWindow,
    _Sums,
    _z_upper,
    beyond_estimate_text,
    e_value,
    evidence_from,
    life_alpha,
    look_alpha,
    new_evidence,
    radius,
    shield_verdict,
    step_alpha,
    verdict_at,
)
from decision_service.tolerance import DEFAULT_TOLERANCE

_BOUNDS = np.asarray(LATENCY_BUCKETS_SECONDS) * 1000.0


def _buckets(rng: np.random.Generator, requests: int, p50_ms: float, sigma: float = 0.5) -> tuple:
    latencies = p50_ms * np.exp(sigma * rng.standard_normal(requests))
    counts = np.bincount(np.searchsorted(_BOUNDS, latencies), minlength=len(_BOUNDS) + 1)
    return tuple(float(c) for c in counts)


def _window(
    rng: np.random.Generator, requests: int, rate: float, p50: float = 60.0
) -> VersionWindow:
    return VersionWindow(
        float(requests), float(rng.binomial(requests, rate)), _buckets(rng, requests, p50)
    )


def _evidence(
    rng: np.random.Generator,
    windows: int,
    canary_rate: float,
    stable_rate: float = 0.005,
    rps: float = 100.0,
    weight: float = 0.8,
    canary_p50: float = 60.0,
    baseline: int = 10,
) -> Evidence:
    evidence = Evidence(DEFAULT_TOLERANCE)
    total = int(rps * 30)
    for _ in range(baseline):
        evidence.add_baseline(_window(rng, total, stable_rate))
    for _ in range(windows):
        n_c = int(total * weight)
        evidence.add(
            _window(rng, n_c, canary_rate, canary_p50), _window(rng, total - n_c, stable_rate)
        )
    return evidence


def test_the_normal_mixture_bound_holds_at_every_time_at_once() -> None:
    """A Gaussian random walk crosses the boundary ``radius(V_t)`` at any of 400 steps with
    probability at most α (Monte Carlo, 4,000 paths; the bound is conservative, so well under)."""
    rng = np.random.default_rng(0)
    alpha, steps, paths = 0.05, 400, 4000
    unit = 0.25  # variance per step
    walks = np.cumsum(rng.normal(0.0, math.sqrt(unit), (paths, steps)), axis=1)
    variance = unit * np.arange(1, steps + 1)
    bound = np.array([radius(v, unit, alpha) for v in variance])
    crossed = (np.abs(walks) >= bound).any(axis=1).mean()
    assert crossed <= alpha
    # and it is not vacuous: a bound at 5x the level is crossed more often
    looser = np.array([radius(v, unit, 0.5) for v in variance])
    assert (np.abs(walks) >= looser).any(axis=1).mean() > crossed


def test_an_equal_canary_is_never_aborted_and_is_proven_with_enough_traffic() -> None:
    rng = np.random.default_rng(1)
    evidence = _evidence(rng, windows=20, canary_rate=0.005, rps=400)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.abort_allowed
    assert verdict.promote_allowed, verdict.promote_reason
    assert "every metric shown within" in verdict.promote_reason


def test_a_clear_regression_is_aborted_and_never_proven() -> None:
    rng = np.random.default_rng(2)
    evidence = _evidence(rng, windows=12, canary_rate=0.02, weight=0.5)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert verdict.abort_allowed and "error rate worse than stable" in verdict.abort_reason
    assert not verdict.promote_allowed
    assert "more requests will not prove it" in verdict.promote_reason


def test_a_latency_regression_is_caught_by_the_bucket_counts() -> None:
    rng = np.random.default_rng(3)
    evidence = _evidence(rng, windows=4, canary_rate=0.005, canary_p50=100.0, weight=0.5)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert verdict.abort_allowed and (
        "p95" in verdict.abort_reason or "p50" in verdict.abort_reason
    )


def test_thin_evidence_says_how_much_more_it_needs() -> None:
    rng = np.random.default_rng(4)
    evidence = _evidence(rng, windows=12, canary_rate=0.004, rps=20, weight=0.8)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.promote_allowed and not verdict.abort_allowed
    assert "more canary requests would decide it" in verdict.promote_reason
    assert " min" not in verdict.promote_reason and "pauses first" not in verdict.promote_reason


def test_thin_evidence_says_how_long_it_takes_and_whether_the_step_has_that_long() -> None:
    """A quiet canary at 5 %: the reason gives the time the missing requests take at the
    current rate, and says the step will pause first when it has fewer measurements left than
    the windows needed (what a team on a quiet service needs to see to change its schedule)."""
    rng = np.random.default_rng(4)
    summary = _evidence(rng, windows=3, canary_rate=0.004, rps=20, weight=0.05).summary()
    rate = summary.last_window_canary_requests
    short = verdict_at(summary, ShieldConfig(), 5.0, window_seconds=30.0, measurements_left=7)
    assert not short.promote_allowed
    match = re.search(
        r"about ([\d,]+) more canary requests would show it \((\d+) more windows, "
        r"about ([\d.]+) min, at the current rate\)",
        short.promote_reason,
    )
    assert match, short.promote_reason
    more, windows, minutes = int(match[1].replace(",", "")), int(match[2]), float(match[3])
    assert abs(windows - more / rate) < 1.01
    assert minutes == pytest.approx(windows * 0.5, abs=0.5)
    assert windows > 7 and "this step has 7 more measurements" in short.promote_reason
    assert "pauses first (a larger step weight" in short.promote_reason
    roomy = verdict_at(summary, ShieldConfig(), 5.0, window_seconds=30.0, measurements_left=windows)
    assert "pauses first" not in roomy.promote_reason
    assert roomy.promote_reason == short.promote_reason.split("; this step has")[0]


def test_the_final_proof_needs_windows_at_high_weight() -> None:
    """Proven on the canary's life at 50 %, but no window at 70 % or more yet: a canary that
    fails only under load, or drifts, would show there first."""
    rng = np.random.default_rng(10)
    evidence = _evidence(rng, windows=20, canary_rate=0.005, rps=400, weight=0.5)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.promote_allowed
    assert "windows with the canary serving 70 %" in verdict.promote_reason


def test_below_the_last_step_a_promote_needs_only_no_sign_of_a_regression() -> None:
    rng = np.random.default_rng(5)
    evidence = _evidence(rng, windows=1, canary_rate=0.005, rps=20, weight=0.05)
    assert shield_verdict(evidence.summary(), ShieldConfig(), last_step=False).promote_allowed
    assert not shield_verdict(evidence.summary(), ShieldConfig(), last_step=True).promote_allowed


def test_a_shared_incident_never_blames_the_canary() -> None:
    """Windows where both versions fail 10 % more: the abort side compares with the same
    window's stable, so no abort; the promote side leaves incident windows out."""
    rng = np.random.default_rng(6)
    evidence = _evidence(rng, windows=3, canary_rate=0.005)
    for _ in range(5):
        evidence.add(_window(rng, 1500, 0.105), _window(rng, 1500, 0.105))
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=False)
    assert not verdict.abort_allowed


def test_latencies_beyond_the_histogram_never_make_the_canary_look_slower() -> None:
    """An incident slows both versions past the last finite bucket (10 s): their requests sit
    in +Inf, where the histogram cannot tell a canary within 1.2x of stable's p95 from one
    beyond it. That is no evidence either way: never an abort, never a proof. (Counting the
    whole +Inf bucket as slower than the limit let a stress-suite canary equal to stable be
    aborted on p95, e-value 767.)"""
    rng = np.random.default_rng(8)
    evidence = _evidence(rng, windows=0, canary_rate=0.005)
    beyond = (0.0,) * len(_BOUNDS) + (1000.0,)
    for _ in range(12):
        evidence.add(VersionWindow(1000.0, 5.0, beyond), VersionWindow(1000.0, 5.0, beyond))
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.abort_allowed, verdict.abort_reason
    assert not verdict.promote_allowed
    # the same canary really beyond: stable fast, the canary past the histogram, is aborted
    slow = _evidence(rng, windows=0, canary_rate=0.005)
    for _ in range(4):
        slow.add(VersionWindow(1000.0, 5.0, beyond), _window(rng, 1000, 0.005))
    assert shield_verdict(slow.summary(), ShieldConfig(), last_step=False).abort_allowed


def test_a_stable_only_incident_does_not_flatter_a_bad_canary_into_a_promote() -> None:
    """A canary at 2x stable's usual 1 %, during windows where stable alone fails 5 %: next to
    the incident it looks better than stable, but the proof compares it with stable's baseline."""
    rng = np.random.default_rng(7)
    evidence = _evidence(rng, windows=0, canary_rate=0.02, stable_rate=0.01, rps=400)
    for _ in range(20):
        evidence.add(_window(rng, 6000, 0.02), _window(rng, 6000, 0.05))
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.promote_allowed


def _stable_mostly_in_incidents(rng: np.random.Generator, requests: int) -> VersionWindow:
    """Stable at 1 % errors, in an incident at 10 % in 70 % of its windows."""
    return _window(rng, requests, 0.10 if rng.random() < 0.7 else 0.01)


def test_a_stable_mostly_in_incidents_keeps_its_normal_level_as_the_reference() -> None:
    """Incidents in most of stable's windows: the plain median of its windows is an incident's
    level, and a canary at 2.5x stable's normal 1 % (beyond the zone) looked well within
    tolerance of it (proven, promoted). The baseline is the median of the calm windows."""
    rng = np.random.default_rng(11)
    evidence = Evidence(DEFAULT_TOLERANCE)
    for _ in range(10):
        evidence.add_baseline(_stable_mostly_in_incidents(rng, 12000))
    for _ in range(110):
        evidence.add(_window(rng, 9600, 0.025), _stable_mostly_in_incidents(rng, 2400))
    rates = evidence._stable_rates
    plain = sorted(rate for rate, _ in rates)[len(rates) // 2]
    assert plain > 0.05  # the plain median: an incident's level
    calm = [(rate, w) for rate, w in rates if rate < 0.04]
    running = np.cumsum([w for _, w in calm])
    calm_median = calm[int(np.searchsorted(running, running[-1] / 2))][0]
    level = evidence._baseline("error_rate", rates)
    assert level == calm_median and level == pytest.approx(0.01, rel=0.25)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=True)
    assert not verdict.promote_allowed, verdict.promote_reason


def test_without_incidents_the_normal_level_is_the_median_of_stables_windows() -> None:
    """The calm band trims stable's windows evenly around their median: without incidents the
    baseline is the plain request-weighted median, clumped errors or not."""
    for seed, dispersion in ((1, 0.0), (2, 0.002)):
        rng = np.random.default_rng(seed)
        evidence = Evidence(DEFAULT_TOLERANCE)
        for _ in range(100):
            requests = int(rng.integers(2000, 4000))
            rate = rng.beta(1 / dispersion * 0.005, 1 / dispersion * 0.995) if dispersion else 0.005
            evidence.add_baseline(_window(rng, requests, rate))
        rates = evidence._stable_rates
        running = np.cumsum([w for _, w in rates])
        median = rates[int(np.searchsorted(running, running[-1] / 2))][0]
        spread = np.std([r for r, _ in rates])
        level = evidence._baseline("error_rate", rates)
        assert abs(level - median) <= 0.1 * spread, (dispersion, level, median, spread)


def test_a_window_without_stable_counts_for_the_proof_only() -> None:
    """At 100 % stable serves nothing: a shared incident there cannot be told from a canary
    fault, so such windows never license an abort."""
    rng = np.random.default_rng(8)
    evidence = _evidence(rng, windows=0, canary_rate=0.005)
    empty = VersionWindow(0.0, 0.0, tuple(0.0 for _ in range(len(_BOUNDS) + 1)))
    for _ in range(5):
        evidence.add(_window(rng, 3000, 0.05), empty)
    summary = evidence.summary()
    assert not shield_verdict(summary, ShieldConfig(), last_step=True).abort_allowed
    assert not shield_verdict(summary, ShieldConfig(), last_step=True).promote_allowed


def test_dispersion_is_estimated_from_stable_and_widens_the_bounds() -> None:
    """Beta-binomial stable windows (errors in clumps) give κ > 0; binomial ones about 0."""
    rng = np.random.default_rng(9)
    plain = Evidence(DEFAULT_TOLERANCE)
    clumped = Evidence(DEFAULT_TOLERANCE)
    for _ in range(40):
        plain.add_baseline(_window(rng, 3000, 0.01))
        rate = rng.beta(0.01 * 30, 0.99 * 30)  # intra-window correlation 1/31
        clumped.add_baseline(
            VersionWindow(3000.0, float(rng.binomial(3000, rate)), _buckets(rng, 3000, 60.0))
        )
    assert plain.dispersion() < 2e-4
    assert clumped.dispersion() > 5e-3


def test_stable_history_is_bounded_to_its_recent_windows() -> None:
    """Stable's baseline and dispersion come from its last STABLE_HISTORY_WINDOWS windows: a
    long-lived canary's evidence equals that of one that saw only those windows, and a window
    costs the same at any age (the history it re-reads stops growing)."""
    rng = np.random.default_rng(21)
    old = [_window(rng, 3000, 0.03, p50=200.0) for _ in range(60)]  # stable as it was
    recent = [_window(rng, 3000, 0.005) for _ in range(STABLE_HISTORY_WINDOWS)]
    long_lived, fresh = Evidence(DEFAULT_TOLERANCE), Evidence(DEFAULT_TOLERANCE)
    for window in old + recent:
        long_lived.add_baseline(window)
    for window in recent:
        fresh.add_baseline(window)
    assert long_lived.dispersion() == fresh.dispersion()
    for _ in range(30):  # canary windows: each moves the oldest stable window out of both
        canary, stable = _window(rng, 1000, 0.012), _window(rng, 2000, 0.005)
        long_lived.add(canary, stable)
        fresh.add(canary, stable)
        assert long_lived.summary() == fresh.summary()
    verdicts = [
        shield_verdict(e.summary(), ShieldConfig(), last_step=False) for e in (long_lived, fresh)
    ]
    assert verdicts[0] == verdicts[1] and verdicts[0].abort_allowed  # 2.4x stable's errors
    # with the old windows kept, stable's baseline would be 3 % and the canary look better
    assert len(long_lived._stable_rates) == STABLE_HISTORY_WINDOWS
    assert all(len(v) == STABLE_HISTORY_WINDOWS for v in long_lived._stable_quantiles.values())


def test_e_value_and_bound_agree() -> None:
    """The abort bound clears 0 exactly when the mixture's e-value passes 1/α."""
    for mean in (0.0005, 0.001, 0.002, 0.004):
        weight, variance, unit = 5000.0, 5000.0 * 0.005, 0.005
        e = e_value(mean, weight, variance, unit)
        lower = mean - radius(variance, unit, 0.01) / weight
        assert (lower > 0) == (e >= 1 / 0.01), (mean, e, lower)


def _pair(canary: float, stable: float) -> tuple[VersionWindow, VersionWindow]:
    return VersionWindow(canary, 0.0, ()), VersionWindow(stable, 0.0, ())


def test_the_windows_at_the_current_share_count_the_measurements_at_the_step() -> None:
    """The stateless step count: windows at about the last window's share, minus that one."""
    from decision_service.shield import windows_at_current_share

    steps = [_pair(5, 95)] * 3 + [_pair(20, 80)] * 4
    assert windows_at_current_share(steps) == 3
    assert windows_at_current_share(steps[:1]) == 0
    # a retried rollout: the canary back at 0 %, then its first window at 20 % again
    retried = [*steps, _pair(0, 100), _pair(0, 100), _pair(20, 80)]
    assert windows_at_current_share(retried) == 0
    assert windows_at_current_share([]) == 0


def _steps(
    rng: np.random.Generator,
    shares: tuple[float, ...],
    windows_per_step: int,
    canary_rate: float | tuple[float, ...],
    stable_rate: float = 0.005,
    rps: float = 100.0,
) -> Evidence:
    """A canary through ``shares``, ``windows_per_step`` windows each; ``canary_rate`` per step
    when a tuple."""
    evidence = Evidence(DEFAULT_TOLERANCE)
    total = int(rps * 30)
    for _ in range(10):
        evidence.add_baseline(_window(rng, total, stable_rate))
    rates = canary_rate if isinstance(canary_rate, tuple) else (canary_rate,) * len(shares)
    for share, rate in zip(shares, rates, strict=True):
        for _ in range(windows_per_step):
            n_c = int(total * share)
            evidence.add(_window(rng, n_c, rate), _window(rng, total - n_c, stable_rate))
    return evidence


def test_a_regression_that_starts_late_is_rejected_by_its_step_alone() -> None:
    """Good for three steps, then +1.5 points of errors at 80 %: the life's average, diluted by
    the good windows, does not reject; the step's own windows do, and the reason says so."""
    rng = np.random.default_rng(23)
    evidence = _steps(rng, (0.2, 0.4, 0.6, 0.8), 10, (0.005, 0.005, 0.005, 0.02), rps=100)
    verdict = shield_verdict(evidence.summary(), ShieldConfig(), last_step=False)
    error = next(v for v in verdict.metrics if v.metric == "error_rate")
    assert error.step == 4
    assert error.life_lower <= 0 < error.step_lower
    assert verdict.abort_allowed
    assert "at this step (step 4)" in verdict.abort_reason


def test_the_abort_side_takes_the_windows_variance_within_steps() -> None:
    """A canary whose excess differs from step to step (one that fails only under load) is not
    noisy for a test of "no worse than stable": the abort side takes the windows' own variance
    around each step's mean. The promote side takes it over the life: a canary whose excess
    moves is less proven. Errors that clump within a step count on both."""
    steady, moving = _Sums(within_steps=True), _Sums()
    for step, excess in enumerate((-0.002, 0.03)):  # as stable, then 3 points worse
        for _ in range(5):
            steady.add(1000.0, excess, 1e-5, 0.0, step)
            moving.add(1000.0, excess, 1e-5, 0.0, step)
    assert steady.variance(0.0) == pytest.approx(steady.binomial_var)  # the model's alone
    assert moving.variance(0.0) > 20 * moving.binomial_var
    clumped = _Sums(within_steps=True)
    for step in range(2):
        for excess in (0.0, 0.0, 0.0, 0.0, 0.05):  # one bad window in five, at each step
            clumped.add(1000.0, excess, 1e-5, 0.0, step)
    assert clumped.variance(0.0) > 10 * clumped.binomial_var


def test_the_steps_tests_keep_their_level_together() -> None:
    """An equal canary through seven steps of ten windows, 400 rollouts: the life test and the
    seven step tests together abort at most α_abort (3-sigma Monte-Carlo allowance), and each
    step has its own, smaller level (``α / (π² j²)``)."""
    rng = np.random.default_rng(21)
    config = ShieldConfig(alpha_abort=0.05)
    shares = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
    aborted = 0
    runs = 400
    for _ in range(runs):
        evidence = Evidence(DEFAULT_TOLERANCE)
        total = 1500
        for _ in range(10):
            evidence.add_baseline(_window(rng, total, 0.01))
        hit = False
        for share in shares:
            for _ in range(10):
                n_c = int(total * share)
                evidence.add(_window(rng, n_c, 0.01), _window(rng, total - n_c, 0.01))
                if shield_verdict(evidence.summary(), config, last_step=False).abort_allowed:
                    hit = True
        aborted += hit
    rate = aborted / runs
    assert rate <= config.alpha_abort + 3 * math.sqrt(config.alpha_abort / runs), rate
    assert step_alpha(ShieldConfig(alpha_abort=0.05, last_look_share=0.0), 2) == pytest.approx(
        0.05 / (4 * math.pi**2)
    )


def test_below_the_last_step_climbing_needs_the_partial_proof() -> None:
    """With the partial proof (the default from the first step), a promote below the last step
    needs the canary shown within the zone at 80 %: thin evidence holds and says how much
    more it needs; plenty climbs."""
    thin = _evidence(np.random.default_rng(30), windows=3, canary_rate=0.005, rps=40, weight=0.05)
    config = ShieldConfig()
    assert config.partial_proof_weight == 0.0 and config.partial_proof_alpha == 0.2
    verdict = verdict_at(thin.summary(), config, step_weight=5.0)
    assert not verdict.promote_allowed
    assert "not yet shown within the zone at 80 %" in verdict.promote_reason
    assert "more canary requests would show it" in verdict.promote_reason
    # the same evidence without the partial proof: no sign of a regression is enough
    off = config.model_copy(update={"partial_proof_weight": 100.0})
    assert verdict_at(thin.summary(), off, step_weight=5.0).promote_allowed
    plenty = _evidence(np.random.default_rng(31), windows=10, canary_rate=0.005, weight=0.2)
    verdict = verdict_at(plenty.summary(), config, step_weight=20.0)
    assert verdict.promote_allowed, verdict.promote_reason
    assert "within the zone at 80 %" in verdict.promote_reason


def _margin_evidence(
    config: ShieldConfig, canary_rates: list[float], seed: int = 32, requests: int = 5000
) -> Evidence:
    rng = np.random.default_rng(seed)
    evidence = new_evidence(DEFAULT_TOLERANCE, config)
    for _ in range(10):
        evidence.add_baseline(_window(rng, 2 * requests, 0.02))
    for rate in canary_rates:
        evidence.add(_window(rng, requests, rate), _window(rng, requests, 0.02))
    return evidence


def test_the_abort_margin_sets_what_an_abort_must_show() -> None:
    """A canary 22 % worse than stable is within the tolerance (1.2x + 0.1 pp): with margin 0
    an abort may stand once it is shown worse than stable; with margin 1 it may not."""
    for margin, allowed in ((0.0, True), (1.0, False)):
        config = ShieldConfig(abort_margin=margin)
        evidence = _margin_evidence(config, [0.0245] * 30)
        verdict = shield_verdict(evidence.summary(), config, last_step=False)
        assert verdict.abort_allowed is allowed, (margin, verdict.abort_reason)
        assert ("worse than stable" in verdict.abort_reason) is (margin == 0.0)


def test_an_abort_is_required_only_once_the_canary_is_shown_beyond_the_tolerance() -> None:
    """Stable at 2 %: the tolerance's limit is 2.5 %. A canary at 2.45 % is shown worse than
    stable (the abort is allowed: the policy may take it) but not beyond the limit; one at 4 %
    is shown beyond it, so the abort is required, and the reason says which test showed it.
    ``enforce_abort`` off: allowed only."""
    inside = ShieldConfig()
    verdict = shield_verdict(
        _margin_evidence(inside, [0.0245] * 30).summary(), inside, last_step=False
    )
    assert verdict.abort_allowed and not verdict.abort_required
    assert "abort required" not in verdict.abort_reason
    beyond = shield_verdict(
        _margin_evidence(inside, [0.04] * 30).summary(), inside, last_step=False
    )
    assert beyond.abort_allowed and beyond.abort_required
    error = next(v for v in beyond.metrics if v.metric == "error_rate")
    assert error.beyond_lower > 0
    assert beyond.abort_reason.startswith("abort allowed: error rate worse than stable")
    assert (
        "; abort required: error rate beyond the tolerance itself over the canary's life, "
        "leaving out the canary's first 2 windows, e-value "
    ) in beyond.abort_reason, beyond.abort_reason
    free = ShieldConfig(enforce_abort=False)
    off = shield_verdict(_margin_evidence(free, [0.04] * 30).summary(), free, last_step=False)
    assert off.abort_allowed and not off.abort_required
    assert "abort required" not in off.abort_reason


def test_the_enforced_abort_leaves_out_the_warm_up_windows() -> None:
    """Two cold windows (10 % errors), then a canary equal to stable: without a warm-up the
    cold windows alone require the abort; with the default two windows left out nothing
    requires it (the abort stays allowed: the policy may still take it)."""
    cold = [0.10, 0.10]
    for warmup, required in ((0, True), (2, False)):
        config = ShieldConfig(warmup_windows=warmup)
        verdict = shield_verdict(_margin_evidence(config, cold).summary(), config, last_step=False)
        assert verdict.abort_allowed
        assert verdict.abort_required is required, warmup
    config = ShieldConfig()
    later = _margin_evidence(config, [*cold, *[0.02] * 20]).summary()
    error = next(m for m in later.metrics if m.metric == "error_rate")
    assert error.beyond_weight == 20 * 5000.0  # the windows after the warm-up only
    assert not shield_verdict(later, config, last_step=False).abort_required


def test_a_required_abort_is_always_an_allowed_one() -> None:
    """The enforced abort adds no false-abort risk: it is required only where the shield
    already allows it (so G2's bound is the allowed abort's). Canaries from better than
    stable to far beyond the tolerance, every window."""
    config = ShieldConfig(warmup_windows=0)
    required = 0
    for seed, rate in enumerate((0.01, 0.02, 0.024, 0.026, 0.03, 0.05)):
        rng = np.random.default_rng(seed)
        evidence = new_evidence(DEFAULT_TOLERANCE, config)
        for _ in range(10):
            evidence.add_baseline(_window(rng, 2000, 0.02))
        for _ in range(40):
            evidence.add(_window(rng, 1000, rate), _window(rng, 1000, 0.02))
            verdict = shield_verdict(evidence.summary(), config, last_step=False)
            assert verdict.abort_allowed or not verdict.abort_required
            required += verdict.abort_required
    assert required > 0


def _drifting(rng: np.random.Generator, windows: int, ms_per_window: float) -> Evidence:
    """A canary at 90 % of 2,000 req/s whose median latency grows by ``ms_per_window`` from a
    stable-like 60 ms, every window (errors as stable's)."""
    evidence = Evidence(DEFAULT_TOLERANCE, abort_margin=0.0)
    total = 2000 * 30
    for _ in range(10):
        evidence.add_baseline(_window(rng, total, 0.005))
    for k in range(windows):
        n_c = int(total * 0.9)
        evidence.add(
            _window(rng, n_c, 0.005, 60.0 + ms_per_window * k),
            _window(rng, total - n_c, 0.005),
        )
    return evidence


def test_a_proven_canary_whose_latency_drifts_out_of_the_zone_is_held() -> None:
    """Within the zone over its windows (the proof holds), but its median grows 0.5 ms a window:
    at that rate it leaves the zone (1.4x + 10 ms) within the horizon after promotion."""
    evidence = _drifting(np.random.default_rng(20), windows=16, ms_per_window=0.5)
    summary = evidence.summary()
    off = shield_verdict(summary, ShieldConfig(drift_horizon_windows=0), last_step=True)
    assert off.promote_allowed, off.promote_reason  # what the proof alone would do
    verdict = shield_verdict(summary, ShieldConfig(), last_step=True)
    assert not verdict.promote_allowed
    assert "drifting" in verdict.promote_reason and "p50 grows" in verdict.promote_reason
    assert "within 60 windows" in verdict.promote_reason
    # a drift that needs far longer than the horizon to leave the zone does not hold
    slow = shield_verdict(summary, ShieldConfig(drift_horizon_windows=5), last_step=True)
    assert slow.promote_allowed, slow.promote_reason


def test_the_drift_check_rarely_holds_a_canary_that_does_not_drift() -> None:
    """No drift: over 200 canaries the check holds a proven one in at most a few percent (the
    slope must clear two standard errors *and* carry the canary out of the zone)."""
    rng = np.random.default_rng(21)
    held = proven = 0
    for _ in range(200):
        summary = _drifting(rng, windows=12, ms_per_window=0.0).summary()
        if not shield_verdict(summary, ShieldConfig(drift_horizon_windows=0), True).promote_allowed:
            continue
        proven += 1
        held += not shield_verdict(summary, ShieldConfig(), True).promote_allowed
    assert proven >= 150
    assert held <= 0.03 * proven


def test_the_drift_line_is_the_least_squares_line_of_the_windows() -> None:
    """The trend's incremental sums give numpy's least-squares slope and its fitted last value."""
    from decision_service.shield import _Trend

    rng = np.random.default_rng(22)
    x = np.arange(3, 15, dtype=float)
    d = -0.2 + 0.01 * x + rng.normal(0, 0.005, x.size)
    trend = _Trend()
    for xi, di in zip(x, d, strict=True):
        trend.add(xi, di, 0.0)
    slope, se, last = trend.line()
    fit = np.polyfit(x, d, 1)
    assert slope == pytest.approx(fit[0], rel=1e-9)
    assert last == pytest.approx(np.polyval(fit, x[-1]), rel=1e-9)
    residual = d - np.polyval(fit, x)
    expected_se = math.sqrt(residual @ residual / (x.size - 2) / ((x - x.mean()) ** 2).sum())
    assert se == pytest.approx(expected_se, rel=1e-9)
    assert _Trend().line()[1] == math.inf  # too few windows: no drift is ever shown


def test_a_copy_of_the_evidence_goes_on_alone() -> None:
    """Windows added to a copy (the service's newest windows, canary_life) leave the original
    as it was, and the copy ends where evidence given every window in one go ends."""
    rng = np.random.default_rng(11)
    total = 3000
    baseline = [_window(rng, total, 0.005) for _ in range(10)]
    life = []
    for share, rate in ((0.05, 0.01), (0.2, 0.01), (0.5, 0.012)):
        for _ in range(6):
            n_c = int(total * share)
            life.append((_window(rng, n_c, rate, 70.0), _window(rng, total - n_c, 0.005)))
    config = ShieldConfig()

    def built(windows: list[tuple[VersionWindow, VersionWindow]]) -> Evidence:
        return evidence_from(baseline, windows, DEFAULT_TOLERANCE, config)

    for cut in (0, 5, 12, 17):
        original = built(life[:cut])
        before = repr(original.summary())
        copied = original.copy()
        for canary, stable in life[cut:]:
            copied.add(canary, stable)
        assert repr(original.summary()) == before == repr(built(life[:cut]).summary())
        assert repr(copied.summary()) == repr(built(life).summary())
        for canary, stable in life[cut:]:  # and the original goes on as it would have
            original.add(canary, stable)
        assert repr(original.summary()) == repr(copied.summary())


def _one_step(
    rng: np.random.Generator, ratio: float, rate: float = 0.01, total: int = 3000
) -> Evidence:
    """Ten windows of a canary at 5 % with errors ``ratio`` x stable's (no latency measured, so
    the error rate is the one metric), after ten windows of stable alone."""
    return _step_of(rng, [rate * ratio] * 10, ShieldConfig(), rate, total=total)


def test_the_abort_levels_sum_to_alpha_abort() -> None:
    """Per metric: the life test, the steps' tests and the steps' last looks; over the three
    metrics they use all of α_abort and no more, whatever the last looks' share."""
    for share in (0.0, 1.0 / 3.0, 0.5):
        config = ShieldConfig(alpha_abort=0.02, last_look_share=share)
        steps = range(1, 200_000)
        per_metric = (
            life_alpha(config)
            + sum(step_alpha(config, j) for j in steps)
            + sum(look_alpha(config, j) for j in steps)
        )
        assert 3 * per_metric == pytest.approx(0.02, rel=1e-4)
    assert look_alpha(ShieldConfig(last_look_share=0.0), 1) == 0.0


def test_the_last_look_allows_an_abort_the_anytime_bounds_do_not_yet() -> None:
    """A canary with twice stable's errors at 5 %: after the step's ten windows the anytime-valid
    bounds rarely reject, the one-time look at the step's last measurement far more often; it
    never happens before the last measurement, nor with a share of 0, and it says why."""
    config = ShieldConfig()
    anytime = looked = 0
    reason = ""
    for seed in range(300):
        summary = _one_step(np.random.default_rng(seed), ratio=2.0).summary()
        verdict = shield_verdict(summary, config, last_step=True)
        last = shield_verdict(summary, config, last_step=True, last_look=True)
        off = shield_verdict(
            summary, ShieldConfig(last_look_share=0.0), last_step=True, last_look=True
        )
        anytime += verdict.abort_allowed
        looked += last.abort_allowed
        assert (
            off.abort_allowed
            == shield_verdict(
                summary, ShieldConfig(last_look_share=0.0), last_step=True
            ).abort_allowed
        )
        if last.abort_allowed and not verdict.abort_allowed:
            reason = last.abort_reason
    assert anytime <= 3 and looked >= 10 * max(anytime, 1), (anytime, looked)
    assert reason.startswith("abort allowed at the step's last measurement"), reason
    assert "error rate worse than stable at this step (step 1), z " in reason


def test_the_last_look_is_not_offered_when_a_promote_is() -> None:
    """At the last measurement with a promote allowed the choice is not pause-or-abort: no look
    (its level is spent only where a hold would pause)."""
    no_partial = ShieldConfig(partial_proof_weight=100.0)
    cases = 0
    for seed in range(40):
        # 15 % more errors than stable, within the tolerance (1.2x): often shown worse than
        # stable by the look, not by the anytime bounds, with no sign of a regression
        rng = np.random.default_rng(seed)
        summary = _one_step(rng, ratio=1.15, rate=0.02, total=60_000).summary()
        if shield_verdict(summary, no_partial, False).abort_allowed:
            continue
        if not shield_verdict(summary, no_partial, True, False, True).abort_allowed:
            continue
        climbing = shield_verdict(summary, no_partial, False, False, True)
        assert climbing.promote_allowed and not climbing.abort_allowed
        cases += 1
    assert cases >= 5


def test_the_last_look_keeps_its_level() -> None:
    """A canary equal to stable, 3,000 steps of ten windows at rare errors (1.5 expected per
    canary window): the look allows an abort at most at its level (3-sigma allowance), here set
    high (α_abort 0.3, half of it for the looks) so that a breach would show."""
    config = ShieldConfig(alpha_abort=0.3, last_look_share=0.5)
    level = look_alpha(config, 1)
    runs = 3000
    rng = np.random.default_rng(5)
    looked = sum(
        shield_verdict(_one_step(rng, ratio=1.0).summary(), config, True, False, True).abort_allowed
        for _ in range(runs)
    )
    assert looked / runs <= level + 3 * math.sqrt(level / runs), (looked, level)


def _step_of(
    rng: np.random.Generator,
    canary_rates: list[float],
    config: ShieldConfig,
    rate: float = 0.01,
    clump: float = 0.0,
    total: int = 3000,
) -> Evidence:
    """One step of a canary at 5 % of ``total`` requests a window, after ten windows of stable
    alone (``config``'s evidence, the abort null by default stable itself): the canary's error
    rate window by window (no latency measured). With ``clump`` the canary's errors are
    over-dispersed (beta-binomial, that share of the windows' variance shared within a
    window), stable's are not."""
    evidence = new_evidence(DEFAULT_TOLERANCE, config)
    n_c = total // 20
    for _ in range(10):
        evidence.add_baseline(VersionWindow(float(total), float(rng.binomial(total, rate)), ()))
    for p in canary_rates:
        if clump > 0:
            a, b = p * (1 - clump) / clump, (1 - p) * (1 - clump) / clump
            p = float(rng.beta(a, b))
        canary = VersionWindow(float(n_c), float(rng.binomial(n_c, p)), ())
        stable = VersionWindow(float(total - n_c), float(rng.binomial(total - n_c, rate)), ())
        evidence.add(canary, stable)
    return evidence


def _looks(evidence: Evidence, config: ShieldConfig) -> tuple[bool, bool]:
    """(the last look allows the abort, a look on all the step's windows with their variance
    around the step's mean would: the look before round 15)."""
    summary = evidence.summary()
    verdict = shield_verdict(summary, config, True, False, True)
    (error,) = summary.metrics
    level = look_alpha(config, error.step)
    old_z = error.mean_step * error.step_weight / math.sqrt(error.variance_step)
    return verdict.abort_allowed, old_z >= _z_upper(level)


def test_the_last_look_sees_a_regression_that_starts_within_the_step() -> None:
    """A canary equal to stable for five windows, then at six times its errors (a burst, a
    fault the canary meets only now): the look at the step's end allows the abort in most
    rollouts. Around the step's mean the jump would count as noise: a look with that variance
    allowed it in far fewer (measured: 84 of 100 against 10)."""
    config = ShieldConfig()
    rng = np.random.default_rng(31)
    new = old = 0
    for _ in range(100):
        looked, looked_before = _looks(_step_of(rng, [0.01] * 5 + [0.06] * 5, config), config)
        new += looked
        old += looked_before
    assert new >= 70 and new >= 4 * old, (new, old)


def test_the_last_look_leaves_the_canarys_warm_up_out() -> None:
    """A canary that starts cold (its first three windows at eight times stable's errors) and
    is stable's equal after: the look leaves the first two out (``warmup_windows``) and, one
    cold window left, hardly ever allows the abort; reading all three (no warm-up) it allows it
    in many rollouts (measured: 0 and 44 of 100)."""
    rates = [0.08] * 3 + [0.01] * 7
    rng = np.random.default_rng(37)
    warm = cold = 0
    for _ in range(100):
        warm += _looks(_step_of(rng, rates, ShieldConfig()), ShieldConfig())[0]
        no_warmup = ShieldConfig(warmup_windows=0)
        cold += _looks(_step_of(rng, rates, no_warmup), no_warmup)[0]
    assert warm <= 3 and cold >= 30, (warm, cold)


@pytest.mark.parametrize("clump", [0.0, 0.02, 0.1])
def test_the_last_look_keeps_its_level_when_the_canarys_errors_clump(clump: float) -> None:
    """A canary equal to stable on average whose errors clump (stable's do not, so the
    dispersion estimated from stable does not widen the bound): the windows' successive
    differences see the clumps, and the look allows the abort at most at its level (3-sigma
    allowance; the level set high, α_abort 0.3 with half for the looks, so a breach would
    show)."""
    config = ShieldConfig(alpha_abort=0.3, last_look_share=0.5)
    level = look_alpha(config, 1)
    runs = 2000
    rng = np.random.default_rng(41)
    looked = sum(
        _looks(_step_of(rng, [0.01] * 10, config, clump=clump), config)[0] for _ in range(runs)
    )
    assert looked / runs <= level + 3 * math.sqrt(level / runs), (looked, level)


def test_the_reasons_say_what_the_verdict_allows() -> None:
    """The verdict decides what it allows without writing its reasons, and writes them when
    they are read: the two must agree, whatever the evidence, weight, setting and look. A grid
    of canaries (equal, worse, much worse, faster; quiet and busy; few and many windows) under
    three settings; each reason is read twice (written once, the same text)."""
    configs = (
        ShieldConfig(),
        ShieldConfig(abort_margin=1.0),
        ShieldConfig(abort_margin=0.5, last_look_share=0.0, partial_proof_weight=100),
    )
    seen = {"promote": set(), "abort": set()}
    rng = np.random.default_rng(17)
    for rate in (0.0, 0.005, 0.008, 0.03):
        for p50 in (45.0, 60.0, 90.0):
            for rps, windows, weight in ((20, 3, 0.05), (400, 12, 0.5), (400, 25, 0.9)):
                summary = _evidence(
                    rng, windows, rate, rps=rps, weight=weight, canary_p50=p50
                ).summary()
                for config in configs:
                    for step_weight in (5.0, 100.0):
                        for last_look in (False, True):
                            v = verdict_at(summary, config, step_weight, last_look=last_look)
                            promote, abort = v.promote_reason, v.abort_reason
                            assert promote.startswith("promote allowed") == v.promote_allowed, (
                                promote
                            )
                            assert abort.startswith("abort allowed") == v.abort_allowed, abort
                            assert (v.promote_reason, v.abort_reason) == (promote, abort)
                            seen["promote"].add(v.promote_allowed)
                            seen["abort"].add(v.abort_allowed)
    assert seen == {"promote": {False, True}, "abort": {False, True}}


def test_every_verdict_carries_the_life_estimate_against_the_tolerance_itself() -> None:
    """``beyond_estimate`` is the life's mean excess over the tolerance after the warm-up (what
    the enforced abort's life test bounds): below 0 for a canary at 2.45 % (limit 2.5 % of
    stable's 2 %), above 0 for ten windows at 3 %, before that test shows it beyond (the abort
    allowed, not required), and -inf while every window is a warm-up one."""
    config = ShieldConfig()
    inside = shield_verdict(
        _margin_evidence(config, [0.0245] * 30).summary(), config, last_step=False
    )
    assert next(v for v in inside.metrics if v.metric == "error_rate").beyond_estimate < 0
    early = _margin_evidence(config, [0.03] * 10).summary()
    verdict = shield_verdict(early, config, last_step=False)
    error = next(v for v in verdict.metrics if v.metric == "error_rate")
    assert verdict.abort_allowed and not verdict.abort_required, verdict.abort_reason
    summary = next(m for m in early.metrics if m.metric == "error_rate")
    assert error.beyond_estimate == summary.mean_beyond > 0
    assert "error rate over its life after its warm-up is estimated +0." in (
        beyond_estimate_text(error)
    )
    warm = shield_verdict(_margin_evidence(config, [0.04] * 2).summary(), config, False)
    assert all(v.beyond_estimate == -math.inf for v in warm.metrics)


def _reference_bounds(m: MetricEvidence, config: ShieldConfig) -> tuple[float, ...]:
    """A metric's bounds as :func:`radius` and :func:`e_value` give them (the verdict writes
    them out in its loop for speed)."""
    inf, uv = math.inf, m.unit_variance
    upper = partial = inf
    if m.proof_weight > 0:
        partial = m.mean_promote + radius(m.variance_promote, uv, config.partial_proof_alpha) / (
            m.proof_weight
        )
        upper = m.mean_promote + radius(m.variance_promote, uv, config.alpha_promote) / (
            m.proof_weight
        )
        recent = inf  # too few windows at high weight: not proven there
        if m.recent_windows >= config.proof_windows and m.recent_weight > 0:
            r = radius(m.variance_recent, uv, config.alpha_promote)
            recent = m.mean_recent + r / m.recent_weight
        upper = max(upper, recent)
    lower = light = -inf
    if m.weight > 0:
        lower = m.mean_abort - radius(m.variance_abort, uv, life_alpha(config)) / m.weight
        light = m.mean_light - radius(m.variance_light, uv, 0.2) / m.weight
    step_lower, step_e = -inf, 1.0
    if m.step_weight > 0:
        r = radius(m.variance_step, uv, step_alpha(config, m.step))
        step_lower = m.mean_step - r / m.step_weight
        step_e = e_value(m.mean_step, m.step_weight, m.variance_step, uv)
    e = e_value(m.mean_abort, m.weight, m.variance_abort, uv)
    return upper, partial, lower, light, e, step_lower, step_e


def test_the_verdicts_bounds_are_the_bound_functions_bit_for_bit() -> None:
    """The verdict's confidence bounds and e-values, written out in its loop with each
    metric's mixture scale computed once, equal :func:`radius`'s and :func:`e_value`'s exactly,
    on canaries good and bad, quiet and busy, at several steps."""
    rng = np.random.default_rng(41)
    config = ShieldConfig()
    checked = soaked = 0
    for rate in (0.002, 0.005, 0.02, 0.08):
        for rps in (5.0, 100.0, 2000.0):
            total = int(rps * 30)
            evidence = new_evidence(DEFAULT_TOLERANCE, config)
            for _ in range(10):
                evidence.add_baseline(_window(rng, total, 0.005))
            for share, most in ((0.05, 6), (0.2, 6), (0.8, 14)):  # three steps, the last high
                for _ in range(int(rng.integers(1, most))):
                    canary = max(1, int(total * share))
                    evidence.add(_window(rng, canary, rate), _window(rng, total - canary, 0.005))
            summary = evidence.summary()
            assert all(m.step == 3 for m in summary.metrics)
            verdict = shield_verdict(summary, config, last_step=False, partial=True)
            for m, v in zip(summary.metrics, verdict.metrics, strict=True):
                got = (
                    v.upper_promote,
                    v.partial_upper,
                    v.life_lower,
                    v.lower_light,
                    v.e_value,
                    v.step_lower,
                    v.step_e_value,
                )
                assert got == _reference_bounds(m, config), (rate, rps, m.metric)
                checked += 1
                soaked += m.recent_windows >= config.proof_windows
    assert checked >= 30 and soaked >= 5  # the soak's bound too
