"""The safety shield: promote only on proof, abort only on rejection, hold always allowed.

The policy proposes; the shield decides which proposals may stand (shielded RL, Alshiekh et al.,
"Safe Reinforcement Learning via Shielding", AAAI 2018). Its bounds are anytime-valid
confidence sequences (Howard, Ramdas, McAuliffe, Sekhon 2021; the normal-mixture boundary), so
they hold at every measurement of the canary's life however often the service is asked, which
is how canaries are watched (Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software
Deployments through Sequential Testing", KDD 2022). With counts estimated from the data the
guarantee is the asymptotic one of time-uniform central limit theory (Waudby-Smith et al. 2023).

**What is compared.** Per analysis window ``k`` (stratified, as Mantel–Haenszel does: a shared
incident, a traffic change or the weight change between steps never compares a canary window
with a stable window from another time), for each metric:

* errors: ``D_k = canary error rate − (factor × reference + floor)``;
* latency (p95 and p50): ``D_k = share of canary requests slower than
  (factor × reference quantile + floor) − (1 − q)`` — under the tolerance's limit at most
  ``1 − q`` of the canary's requests are slower than that (read from the histogram buckets).

``D_k ≤ 0`` is "within tolerance". The windows are averaged with the canary's requests as
weights, so windows at high weight count most. The **reference** is chosen against the action
the bound licenses. For the promote bound it is stable's **baseline**, its normal level: the
request-weighted median of stable's *calm* windows (including the windows before the canary
started, when the source has them). Incidents only raise errors and latency, so the calm band
is found from the low side: a first level is the median of the windows under the band's upper
edge drawn around their 10 % quantile, the baseline the median of the windows inside the band
drawn around that first level, on both sides (the band is the calm test's own: errors, three
standard deviations with the dispersion plus a quarter of the level; latency, a factor 1.25
either way). With the plain median of all its windows, a stable that spends most windows in
incidents had an incident's level as its baseline, and a canary twice as bad as the normal
stable was proven "within tolerance" of it: with 90 measurements per step the shield alone
promoted 71 % of such canaries. A stable-only incident never flatters the
canary into a promote, and a shared incident only delays one. For the abort bound it is the
*higher* of stable's value in the same window and its baseline: a shared incident never
blames the canary. A window where stable served nothing (the canary at 100 %) is compared
with the baseline.

**Variance.** Errors come in clumps (one bad pod, a retry burst): a window's error count varies
more than a binomial one. The shield estimates the extra variance from stable's windows
(method of moments: ``Var = n p (1 − p) (1 + n κ)``, κ from Pearson residuals) and applies it to
both versions; it also takes the windows' empirical variance when that is larger: on the abort
side within each step around the step's mean (a canary whose excess differs from step to step
is not noisy for it), on the promote side over the life (a drifting canary is less proven).
Incidents that move stable's windows raise κ too: the bounds widen instead of producing
false aborts.

**Decisions.** With ``W`` canary requests and the weighted mean ``D̄``:

* ``promote`` at the last step (100 %) only when the upper bound of ``D̄`` at ``1 − α_promote`` is
  below 0 for every metric — over the canary's life, and over its windows at high weight alone
  (70 % of the traffic or more, at least ``proof_windows`` of them: a soak, because a slow
  leak that starts late or a fault that strikes at random needs time to show). ``D̄`` here is
  measured against the edge of the indifference zone (``indifference`` × the tolerance's excess):
  a canary just beyond the tolerance cannot be told from one just inside it on finite evidence,
  so the guarantee is for canaries beyond the zone. Below the last step (``full_proof_weight``)
  the proof is lighter: no sign of a regression (the lower bound against the tolerance at
  ``1 − α_light`` not above 0) and, from ``partial_proof_weight`` on, a **partial proof**: the
  life's upper bound at ``1 − partial_proof_alpha`` below 0. A canary that cannot even lean good
  does not climb to weights where, neither proven nor rejected, it could only wait while
  serving most of the traffic. Reaching 100 % moves no user onto an unproven canary for good;
  completing the rollout does. The final proof also holds while a canary **drifts**: over the
  calm windows at high weight, the least-squares slope of a metric's ``D`` less two standard
  errors is above 0 and, at that rate, ``D`` would leave the zone within
  ``drift_horizon_windows`` windows after promotion (the truth judges a canary over the half
  hour after promotion, where a drift that barely shows during the rollout will be).
* ``abort`` only when, for some metric, the **abort null** is rejected — stable itself by
  default (``abort_margin`` 0: the canary shown worse than stable, so a canary no worse than
  stable is aborted with probability at most ``α_abort``), the tolerance with ``abort_margin``
  1 — over the canary's life,
  the lower bound at ``1 − α_L`` is above 0 (the e-value of the mixture martingale reaches
  ``1 / α_L``), or over the windows of the current **step** alone (a run of windows at about
  one traffic share), the lower bound of the ``j``-th step at ``1 − α_L × 6 / (π² j²)`` is,
  with ``α_L = α_abort (1 − s) / 6`` and ``s`` the share of the **last looks**
  (``last_look_share``, default 1/3). The life test has most power against a canary that is
  bad from the start; the step test sees a regression that starts late (a drift, a fault that
  appears only under load) without the good early windows diluting it. Each step's
  confidence sequence is anytime-valid on its own and their levels sum to ``α_L``
  (``Σ 6 / (π² j²) = 1``). At a step's **last measurement**, where a hold pauses the rollout
  and a promote is not allowed, the abort may also rest on a one-time fixed-sample test of the
  step's windows after the canary's warm-up (:func:`_last_look`) at ``α_abort s / 3 × 6 /
  (π² j²)``, its variance estimated from the windows' successive differences (a regression
  that starts within the step is a signal for it, not noise). The three tests on three
  metrics together stay within ``α_abort``.
* ``hold`` always.

One abort is **required** (``enforce_abort``): where the abort is allowed and, for some metric,
the same two anytime-valid tests (the life at ``α_L``, the ``j``-th step at its level) also
reject the tolerance itself, over the canary's windows after its first ``warmup_windows``
(pods that start cold), the answer is ``abort`` whatever the policy proposed. Each of those
tests runs only once its windows outnumber the steps they span, so that their own variance is
estimated: a single window, one clump of errors, never requires an abort. A required abort is
an allowed one, so it adds no false-abort risk of its own.

The evidence accumulates window by window (:class:`Evidence`): the simulator adds each interval
as it happens, the service adds the windows Prometheus returns for the canary's life. Both then
read the same :class:`EvidenceSummary` through :func:`verdict_at` (:func:`shield_verdict` at a
step weight).
"""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from itertools import accumulate
from operator import attrgetter, itemgetter
from statistics import NormalDist
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from decision_service.histogram import LATENCY_BUCKETS_SECONDS, histogram_quantile
from decision_service.tolerance import Metric, Tolerance

_BOUNDS_MS: Final = tuple(b * 1000.0 for b in LATENCY_BUCKETS_SECONDS)
#: The latency quantiles the shield tests, with their metric names.
QUANTILES: Final[tuple[tuple[Metric, float], ...]] = (
    ("latency_p95_ms", 0.95),
    ("latency_p50_ms", 0.50),
)
METRICS: Final[tuple[Metric, ...]] = ("error_rate", "latency_p95_ms", "latency_p50_ms")
_ALL_METRICS: Final = frozenset(METRICS)
#: Canary requests at which the normal-mixture boundary is tightest (its mixing scale).
MIXTURE_REQUESTS: Final = 2000.0
#: The canary's share of requests from which a window counts as "at high weight": the final
#: proof must also hold on those windows alone, at least ``ShieldConfig.proof_windows`` of them.
HIGH_SHARE: Final = 0.7
#: Confidence of the light check below the last step (promote unless a regression shows).
ALPHA_LIGHT: Final = 0.2
#: The drift check: windows at high weight its line needs, and how many standard errors the
#: slope must clear to count as growth (one-sided, about 97.7 %).
TREND_MIN_WINDOWS: Final = 6
TREND_Z: Final = 2.0
#: Stable's windows its baseline and dispersion are taken from: the most recent this many (an
#: hour of 30-s windows). Bounded, so a window's cost does not grow with a canary's age and the
#: baseline follows stable as it is now; longer than any simulated episode (10 baseline windows
#: and 7 steps of 10), so training and the evaluation never reach it.
STABLE_HISTORY_WINDOWS: Final = 120
#: A stable window's latency quantile is calm within this factor of its baseline, either way.
CALM_LATENCY_FACTOR: Final = 1.25
#: The low quantile of stable's windows (by requests) its normal level's ceiling starts from:
#: incidents only raise errors and latency, and may fill most of stable's windows (a stress
#: family's stable spends up to about three quarters of them in incidents).
STABLE_LOW_SHARE: Final = 0.1
_CHI2_UPPER_QUARTILE: Final = 1.3233036969314669  # of chi-square, one degree of freedom


class ShieldConfig(BaseModel):
    """The shield's error levels (settings ``SHIELD_*``, Helm values, per-request overrides)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Apply the shield (off: the policy and guardrails).")
    alpha_promote: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Chance a canary beyond the tolerance is promoted at the last step.",
    )
    alpha_abort: float = Field(
        0.01, gt=0, lt=0.5, description="Chance a canary within the tolerance is aborted."
    )
    indifference: float = Field(
        2.0,
        ge=1.0,
        le=10.0,
        description="Edge of the indifference zone, in multiples of the tolerance's excess: "
        "promote needs proof that the canary is not beyond it.",
    )
    abort_margin: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="What an abort must reject, in multiples of the tolerance's excess: 1 the "
        "tolerance (a canary within it is aborted at most α_abort), 0 stable itself (a canary "
        "no worse than stable is aborted at most α_abort).",
    )
    partial_proof_weight: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="From this step weight (%) on, below the full proof's, a promote also needs "
        "a partial proof: the canary shown within the indifference zone at 1 − "
        "partial_proof_alpha over its life. A canary that cannot be shown good does not climb "
        "to weights where it could only wait.",
    )
    partial_proof_alpha: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="The partial proof's error level (see partial_proof_weight).",
    )
    full_proof_weight: float = Field(
        100.0,
        gt=0.0,
        le=100.0,
        description="From this step weight (%) on, a promote needs the full proof, not only no "
        "sign of a regression: set it to the last step at which stable still serves traffic, "
        "since above it nothing is compared and an unproven canary could only wait.",
    )
    drift_horizon_windows: int = Field(
        60,
        ge=0,
        le=10_000,
        description="Analysis windows after promotion a drift is projected over (60: 30 minutes "
        "of 30 s windows; 0: no drift check). The final proof also fails while a metric's "
        "excess over the windows at high weight is shown to grow fast enough to leave the zone "
        "within them.",
    )
    last_look_share: float = Field(
        1.0 / 3.0,
        ge=0.0,
        lt=1.0,
        description="Share of α_abort spent on the step's last measurement, where a hold "
        "pauses the rollout: there, when a promote is not allowed, a fixed-sample test of the "
        "step's windows may allow the abort (0: no such look; the anytime-valid tests then "
        "share all of α_abort).",
    )
    proof_windows: int = Field(
        10,
        ge=1,
        le=100,
        description="Analysis windows with the canary at 70 % of the traffic or more that the "
        "final proof needs (a soak: drifts and rare faults need time to show).",
    )
    enforce_abort: bool = Field(
        True,
        description="Abort, whatever the policy proposes, once an abort is allowed and the "
        "canary is also shown beyond the tolerance itself (the anytime-valid abort tests at "
        "their levels, against the tolerance, over the windows after the warm-up). The policy "
        "may wait out a canary shown only worse than stable; not one shown beyond the limit.",
    )
    decline_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="The policy declines an abort the shield allows only if more than this "
        "share of its ensemble's members rank the action it would take instead above the abort "
        "(0.5: a majority; 0: the members' mean alone decides; 1: every allowed abort is "
        "taken). A model file without member outputs counts as one member.",
    )
    decline_share_beyond: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="decline_share for a canary whose excess over its life, after the "
        "warm-up, is estimated beyond the tolerance itself (a point estimate, not yet shown at "
        "the enforced abort's level): the share of members that must rank another action above "
        "the allowed abort to decline it. 1 (the default): such an abort is never declined; "
        "the policy's discretion is for canaries estimated within the tolerance.",
    )
    warmup_windows: int = Field(
        2,
        ge=0,
        le=100,
        description="The canary's first analysis windows the enforced abort and the last look "
        "leave out (pods that start cold: empty caches, connection pools not yet filled), as "
        "Kayenta's warm-up does. The anytime-valid tests read them.",
    )


@dataclass(frozen=True, slots=True)
class VersionWindow:
    """One version's counts in one analysis window: requests, errors, latency histogram
    (per-bucket counts, not cumulative, for ``bounds_ms`` then +Inf; the demo apps' and the
    simulator's bounds by default). No buckets: no latency measured in the window."""

    requests: float
    errors: float
    buckets: tuple[float, ...]
    bounds_ms: tuple[float, ...] = _BOUNDS_MS

    @property
    def has_latency(self) -> bool:
        return len(self.buckets) == len(self.bounds_ms) + 1 and sum(self.buckets) > 0


@dataclass(frozen=True, slots=True)
class Windows:
    """The shield's input: stable's windows before the canary, then (canary, stable) ones."""

    baseline: tuple[VersionWindow, ...]
    life: tuple[tuple[VersionWindow, VersionWindow], ...]


def _share_above(window: VersionWindow, threshold_ms: float, *, unresolved_slower: bool) -> float:
    """Share of the histogram's requests slower than ``threshold_ms`` (linear in a bucket).

    A threshold at or beyond the last finite bound cannot place the +Inf bucket's requests:
    they may be faster or slower than it. ``unresolved_slower`` says which way the caller can
    afford to err: a proof counts them as slower, a rejection as faster (two versions both
    beyond the histogram's range never make the canary look slower than stable)."""
    buckets = window.buckets
    total = sum(buckets)
    below, lower = 0.0, 0.0
    for bound, count in zip(window.bounds_ms, buckets, strict=False):
        if threshold_ms >= bound:
            below += count
            lower = bound
            continue
        below += count * (threshold_ms - lower) / (bound - lower)
        break
    else:
        below = total - (buckets[-1] if unresolved_slower else 0.0)
    return max(0.0, 1.0 - below / total)


@dataclass(slots=True)
class _Sums:
    """Weighted sums of one metric's per-window excess ``D`` (one side's reference).

    The windows' own (empirical) variance is taken around the life's mean, or with
    ``within_steps`` around each step's own mean. The abort side takes it within steps: a
    canary whose excess differs from step to step (one that fails only under load) is not
    noisy for a test of "no worse than stable", while errors that clump within a step still
    widen the bound. The promote side takes it over the life: a canary whose excess moves (a
    drift) is less proven, not more."""

    weight: float = 0.0  # Σ w
    total: float = 0.0  # Σ w·D
    binomial_var: float = 0.0  # Σ w²·var_k
    dispersion_var: float = 0.0  # Σ w²·p(1 − p)(1 + f²): variance per unit of κ
    within_steps: bool = False
    windows: int = 0
    sq: float = 0.0  # Σ w²·D² over the life
    w2d: float = 0.0  # Σ w²·D
    weight_sq: float = 0.0  # Σ w²
    steps: int = 0  # steps with a window
    closed: float = 0.0  # Σ over finished steps of Σ w²·(D − D̄_step)²
    step: int = -1  # the current step's number, and its sums:
    step_w: float = 0.0  # Σ w
    step_wd: float = 0.0  # Σ w·D
    step_w2: float = 0.0  # Σ w²
    step_w2d: float = 0.0  # Σ w²·D
    step_w2d2: float = 0.0  # Σ w²·D²

    def copy(self) -> _Sums:
        return _Sums(*_SUMS_STATE(self))

    def add(self, w: float, d: float, var: float, dispersion: float, step: int) -> None:
        if step != self.step:
            self.closed += self._centered()
            self.step, self.steps = step, self.steps + 1
            self.step_w = self.step_wd = self.step_w2 = self.step_w2d = self.step_w2d2 = 0.0
        self.weight += w
        self.total += w * d
        self.binomial_var += w * w * var
        self.dispersion_var += w * w * dispersion
        self.windows += 1
        self.sq += w * w * d * d
        self.w2d += w * w * d
        self.weight_sq += w * w
        self.step_w += w
        self.step_wd += w * d
        self.step_w2 += w * w
        self.step_w2d += w * w * d
        self.step_w2d2 += w * w * d * d

    def _centered(self) -> float:
        if self.step_w <= 0:
            return 0.0
        mean = self.step_wd / self.step_w
        return max(0.0, self.step_w2d2 - 2.0 * mean * self.step_w2d + mean * mean * self.step_w2)

    def variance(self, kappa: float) -> float:
        """Of Σ w·D: the model's (binomial and dispersion) or the windows' own, the larger
        (within steps, each step's mean costs one degree of freedom)."""
        model = self.binomial_var + kappa * self.dispersion_var
        if not self.within_steps:
            if self.windows < 2:
                return model
            mean = self.total / self.weight
            centered = self.sq - 2.0 * mean * self.w2d + mean * mean * self.weight_sq
            return max(model, max(0.0, centered) * self.windows / (self.windows - 1))
        free = self.windows - self.steps
        if free < 1:
            return model
        empirical = (self.closed + self._centered()) * self.windows / free
        return max(model, empirical)


@dataclass(slots=True)
class _Look:
    """Weighted sums of one metric's abort-side excess ``D`` over the current step's windows
    after the canary's warm-up: the last look's test (:func:`_last_look`).

    The windows' own variance is estimated from their **successive differences** (von
    Neumann's mean square successive difference), not around the step's mean. For windows
    whose noise is independent the two estimate the same variance; but a regression that
    starts within the step (a late burst of errors, a drift, a load the canary only now
    meets) moves the mean of the later windows, which the spread around the step's mean
    counts as noise and a successive difference sees once. A window's ``D`` has variance
    about ``σ² / w``, so ``(D_i − D_{i−1})² / (1/w_i + 1/w_{i−1})`` estimates ``σ²`` and
    ``Σ w·D`` has variance ``σ² Σ w``."""

    weight: float = 0.0  # Σ w
    total: float = 0.0  # Σ w·D
    binomial_var: float = 0.0  # Σ w²·var_k
    dispersion_var: float = 0.0  # Σ w²·p(1 − p)(1 + f²): variance per unit of κ
    last_w: float = 0.0  # the last window's w and D
    last_d: float = 0.0
    differences: float = 0.0  # Σ (D_i − D_{i−1})² / (1/w_i + 1/w_{i−1})
    pairs: int = 0

    def copy(self) -> _Look:
        return _Look(*_LOOK_STATE(self))

    def add(self, w: float, d: float, var: float, dispersion: float) -> None:
        if self.weight > 0:
            delta = d - self.last_d
            self.differences += delta * delta / (1.0 / w + 1.0 / self.last_w)
            self.pairs += 1
        self.last_w, self.last_d = w, d
        self.weight += w
        self.total += w * d
        self.binomial_var += w * w * var
        self.dispersion_var += w * w * dispersion

    def variance(self, kappa: float) -> float:
        """Of Σ w·D: the model's (binomial and dispersion) or the windows' own from their
        successive differences, the larger."""
        model = self.binomial_var + kappa * self.dispersion_var
        if self.pairs < 1:
            return model
        return max(model, self.differences / self.pairs * self.weight)


@dataclass(slots=True)
class _Trend:
    """Least-squares line of one metric's promote-side excess ``D`` against the canary window's
    index, over the calm windows at high weight (each window one point: at high weight they
    serve about the same requests). Accumulated window by window."""

    n: int = 0
    sx: float = 0.0
    sxx: float = 0.0
    sd: float = 0.0
    sxd: float = 0.0
    sdd: float = 0.0
    svar: float = 0.0  # Σ of the windows' model variances of D
    last_x: float = 0.0

    def copy(self) -> _Trend:
        return _Trend(*_TREND_STATE(self))

    def add(self, x: float, d: float, var: float) -> None:
        self.n += 1
        self.sx += x
        self.sxx += x * x
        self.sd += d
        self.sxd += x * d
        self.sdd += d * d
        self.svar += var
        self.last_x = x

    def line(self) -> tuple[float, float, float]:
        """(slope per window, its standard error, the line's value at the last window); the
        standard error is ``inf`` with fewer than :data:`TREND_MIN_WINDOWS` windows. The
        residual variance is taken when larger than the windows' model variance (spikes,
        clumps)."""
        if self.n < TREND_MIN_WINDOWS:
            return 0.0, math.inf, 0.0
        mx, md = self.sx / self.n, self.sd / self.n
        cxx = self.sxx - self.n * mx * mx
        if cxx <= 0:
            return 0.0, math.inf, md
        slope = (self.sxd - self.n * mx * md) / cxx
        residual = max(0.0, self.sdd - self.n * md * md - slope * slope * cxx) / (self.n - 2)
        noise = max(residual, self.svar / self.n)
        return slope, math.sqrt(noise / cxx), md + slope * (self.last_x - mx)


#: Every field of the sums, in order (their copies are made from these: a field added to either
#: class is copied too).
_SUMS_STATE: Final = attrgetter(*(f.name for f in fields(_Sums)))
_TREND_STATE: Final = attrgetter(*(f.name for f in fields(_Trend)))
_LOOK_STATE: Final = attrgetter(*(f.name for f in fields(_Look)))


@dataclass(frozen=True, slots=True)
class MetricEvidence:
    """One metric's accumulated evidence (immutable, what a snapshot carries)."""

    metric: Metric
    windows: int
    weight: float  # canary requests of the windows compared with stable (the abort side)
    mean_abort: float  # -inf before any compared window
    variance_abort: float  # of Σ w·D
    mean_light: float  # the same windows against the tolerance itself (the light check)
    variance_light: float
    proof_weight: float  # canary requests of the calm windows (the promote side)
    mean_promote: float  # inf before any calm window
    variance_promote: float
    recent_windows: int  # calm windows at high weight (canary share >= HIGH_SHARE)
    recent_weight: float
    mean_recent: float
    variance_recent: float
    step: int  # the current step's number (1, 2, ...): its share of α_abort
    step_weight: float  # canary requests of this step's windows compared with stable
    mean_step: float  # -inf before any
    variance_step: float
    unit_variance: float  # binomial variance per canary request (the mixture's scale)
    trend_slope: float = 0.0  # D per window over the calm windows at high weight
    trend_se: float = math.inf  # its standard error (inf: too few windows)
    trend_last: float = 0.0  # the line's value at the last of them
    # against the tolerance itself, leaving out the warm-up windows (the enforced abort)
    beyond_weight: float = 0.0  # over the life
    mean_beyond: float = -math.inf
    variance_beyond: float = 0.0
    beyond_free: int = 0  # its windows less its steps: the windows' own variance's freedom
    beyond_step_weight: float = 0.0  # over this step's windows
    mean_beyond_step: float = -math.inf
    variance_beyond_step: float = 0.0
    beyond_step_windows: int = 0
    # against the abort null, this step's windows after the warm-up (the last look)
    look_weight: float = 0.0
    mean_look: float = -math.inf
    variance_look: float = 0.0  # from the windows' successive differences (:class:`_Look`)


@dataclass(frozen=True, slots=True)
class EvidenceSummary:
    """The shield's evidence after some windows: one entry per metric with data."""

    tolerance: Tolerance
    metrics: tuple[MetricEvidence, ...]
    canary_requests: float
    last_window_canary_requests: float


def _weighted_median(values: list[tuple[float, float]]) -> float:
    """The first value (in ``values``' sorted order) at which the running weight reaches half
    the total (:func:`_weighted_share` of the whole list)."""
    running = list(accumulate(map(itemgetter(1), values)))
    return _weighted_share(values, running, 0, len(values), 0.5)


def _weighted_share(
    values: list[tuple[float, float]], running: list[float], start: int, end: int, share: float
) -> float:
    """The first value of ``values[start:end]`` (``end > start``) at which the running weight
    within the slice reaches ``share`` of the slice's total, from the running weights of the
    whole list (``running[i]``: the weights of ``values[: i + 1]``). The running sums come from
    ``accumulate`` and the search from ``bisect``, both in C: stable's history grows by a
    window at a time, and its levels are taken again after each of its windows."""
    before = running[start - 1] if start > 0 else 0.0
    index = bisect.bisect_left(running, before + (running[end - 1] - before) * share, start, end)
    return values[min(index, end - 1)][0]


def _stable_quantiles(stable: VersionWindow) -> dict[Metric, float | None] | None:
    """Stable's quantiles in one window (None: stable served nothing in it)."""
    if not stable.requests > 0:
        return None
    if not stable.has_latency:
        return {metric: None for metric, _ in QUANTILES}
    cumulative, total = [], 0.0
    for count in stable.buckets:
        total += count
        cumulative.append(total)
    # the cumulative counts built once for both quantiles
    return {metric: histogram_quantile(q, stable.bounds_ms, cumulative) for metric, q in QUANTILES}


class _StableCounts:
    """Stable's windows for the dispersion estimate, appended one at a time, with what each
    estimate needs kept up to date (the requests sorted, for their median, and their largest)
    rather than recomputed from stable's whole history at every window (a full read in the
    service builds a whole life's evidence at once)."""

    __slots__ = ("errors", "most_requests", "requests", "sorted_requests")

    def __init__(self) -> None:
        self.requests: list[float] = []
        self.errors: list[float] = []
        self.sorted_requests: list[float] = []
        self.most_requests = 0.0

    def copy(self) -> _StableCounts:
        other = _StableCounts()
        other.requests, other.errors = list(self.requests), list(self.errors)
        other.sorted_requests, other.most_requests = list(self.sorted_requests), self.most_requests
        return other

    def append(self, requests: float, errors: float) -> None:
        self.requests.append(requests)
        self.errors.append(errors)
        bisect.insort(self.sorted_requests, requests)
        self.most_requests = max(self.most_requests, requests)

    def drop_oldest(self) -> None:
        """Forget the oldest window (the history is bounded: :data:`STABLE_HISTORY_WINDOWS`)."""
        requests = self.requests.pop(0)
        self.errors.pop(0)
        _remove_sorted(self.sorted_requests, requests)
        self.most_requests = self.sorted_requests[-1] if self.sorted_requests else 0.0


def _remove_sorted(values: list[Any], value: Any) -> None:
    """Remove one entry equal to ``value`` from the sorted list ``values``."""
    index = bisect.bisect_left(values, value)
    if index == len(values) or values[index] != value:
        raise ValueError(f"{value!r} is not in the history")
    del values[index]


def _copied(value: object) -> object:
    """``value`` copied for :meth:`Evidence.copy`: lists anew, stable's counts and the sums by
    value; tuples, numbers and frozen models are shared."""
    if type(value) is list:
        return list(value)
    if isinstance(value, _StableCounts | _Sums | _Trend | _Look):
        return value.copy()
    return value


@dataclass
class Evidence:
    """The shield's evidence, accumulated one analysis window at a time (never rescanned)."""

    tolerance: Tolerance
    #: The indifference zone's edge in multiples of the tolerance's excess (the proof's limit).
    indifference: float = 2.0
    #: The abort test's null, in multiples of the tolerance's excess (1: the tolerance; 0:
    #: stable itself, G2's "no worse than stable", ShieldConfig's default: build evidence
    #: with :func:`new_evidence` to take a config's).
    abort_margin: float = 1.0
    #: The canary's first windows the enforced abort's sums leave out (ShieldConfig's).
    warmup_windows: int = 0
    _sums: dict[Metric, _Sums] = field(default_factory=dict)  # abort side, every window
    _light: dict[Metric, _Sums] = field(default_factory=dict)  # against the tolerance itself
    _proof: dict[Metric, _Sums] = field(default_factory=dict)  # promote side, calm windows
    _recent: dict[Metric, _Sums] = field(default_factory=dict)  # the same, at high weight
    _step: dict[Metric, _Sums] = field(default_factory=dict)  # abort side, this step's windows
    # against the tolerance, the windows after the warm-up: over the life, and this step's
    _beyond: dict[Metric, _Sums] = field(default_factory=dict)
    _beyond_step: dict[Metric, _Sums] = field(default_factory=dict)
    # the abort side over this step's windows after the warm-up (the last look)
    _look: dict[Metric, _Look] = field(default_factory=dict)
    _trend: dict[Metric, _Trend] = field(default_factory=dict)  # promote side, at high weight
    _windows: int = 0  # canary windows so far (the trend's x)
    _step_index: int = 0  # the current step's number (1, 2, ...), 0 before any canary window
    _step_canary: float = 0.0  # canary and all requests of the step's windows (its share)
    _step_total: float = 0.0
    _unit_var: dict[Metric, float] = field(default_factory=dict)
    # stable's window values so far, sorted, with their request weights (for the baseline)
    _stable_rates: list[tuple[float, float]] = field(default_factory=list)
    _stable_quantiles: dict[Metric, list[tuple[float, float]]] = field(default_factory=dict)
    # stable's windows for the dispersion estimate
    _stable_counts: _StableCounts = field(default_factory=lambda: _StableCounts())
    # what each stable window added to the two above, oldest first (to forget it again)
    _stable_order: list[
        tuple[tuple[float, float], tuple[tuple[Metric, tuple[float, float]], ...]]
    ] = field(default_factory=list)
    _canary_requests: float = 0.0
    _last_canary: float = 0.0
    _share: float = 0.0
    # derived from stable's windows; recomputed only when a stable window arrives
    _kappa: float | None = None
    _baselines: dict[str, float] = field(default_factory=dict)

    #: The edge of the indifference zone: what a promote must be shown not to exceed.
    zone: Tolerance = field(init=False)
    #: What an abort must reject: the tolerance scaled by ``abort_margin``.
    abort_null: Tolerance = field(init=False)

    def __post_init__(self) -> None:
        self.zone = self.tolerance.widened(self.indifference)
        self.abort_null = self.tolerance.widened(self.abort_margin)

    def copy(self) -> Evidence:
        """An independent copy (the service adds a decision's newest windows to a copy of a
        canary's kept evidence, :mod:`decision_service.canary_life`). Every field is copied by
        its kind, so a field added later is copied too: containers are copied one level down,
        the per-metric sums one by one; everything else is immutable."""
        other = copy.copy(self)
        state = other.__dict__
        for name, value in state.items():  # replacing values only: the dict keeps its size
            if type(value) is dict:
                state[name] = {k: _copied(v) for k, v in value.items()}
            else:
                state[name] = _copied(value)
        return other

    def add_baseline(self, stable: VersionWindow) -> None:
        """A window of stable before the canary started: its baseline and dispersion only."""
        self._record_stable(stable, _stable_quantiles(stable))

    def add(self, canary: VersionWindow, stable: VersionWindow) -> None:
        """One analysis window of both versions (a window without canary requests adds none)."""
        self._last_canary = canary.requests
        total = canary.requests + stable.requests
        self._share = canary.requests / total if total > 0 else 0.0
        # stable's quantiles, computed once for the comparison and for its history
        quantiles = _stable_quantiles(stable)
        if canary.requests > 0:
            self._windows += 1
            self._track_step(canary.requests, total)
            self._canary_requests += canary.requests
            self._add_errors(canary, stable)
            for metric, q in QUANTILES:
                value_s = quantiles[metric] if quantiles is not None else None
                self._add_latency(metric, q, canary, value_s)
        self._record_stable(stable, quantiles)

    def _track_step(self, canary: float, total: float) -> None:
        """Start a new step when the canary's share leaves the current step's (within 5
        points or 30 %, as :func:`windows_at_current_share` judges it). The share depends on
        request counts only, never on errors or latency, so the split does not bias a test."""
        current = self._step_canary / self._step_total if self._step_total > 0 else None
        if current is not None and _same_share(canary / total, current):
            self._step_canary += canary
            self._step_total += total
            return
        self._step_index += 1
        self._step.clear()
        self._beyond_step.clear()
        self._look.clear()
        self._step_canary, self._step_total = canary, total

    def _record_stable(
        self, stable: VersionWindow, quantiles: dict[Metric, float | None] | None
    ) -> None:
        if not stable.requests > 0:
            return
        self._kappa = None
        self._baselines.clear()
        rate = (stable.errors / stable.requests, stable.requests)
        bisect.insort(self._stable_rates, rate)
        self._stable_counts.append(stable.requests, stable.errors)
        added = []
        for metric, value in (quantiles or {}).items():  # None only when stable served nothing
            if value is not None:
                entry = (value, stable.requests)
                bisect.insort(self._stable_quantiles.setdefault(metric, []), entry)
                added.append((metric, entry))
        self._stable_order.append((rate, tuple(added)))
        if len(self._stable_order) > STABLE_HISTORY_WINDOWS:
            oldest_rate, oldest_quantiles = self._stable_order.pop(0)
            _remove_sorted(self._stable_rates, oldest_rate)
            self._stable_counts.drop_oldest()
            for metric, entry in oldest_quantiles:
                _remove_sorted(self._stable_quantiles[metric], entry)

    def dispersion(self) -> float:
        """κ: the extra error variance per request of a window (0 = binomial), from stable.

        Pearson residuals ``r = (e − n p)² / (n p (1 − p))`` are about ``(1 + n κ)·χ²₁``, whose
        upper quartile is ``1.323 (1 + n κ)``. The upper quartile over stable's windows is not
        moved by a few incident windows, and still sees errors that clump hard (most windows
        calm, some heavy), which a median would miss."""
        if self._kappa is None:
            self._kappa = self._dispersion()
        return self._kappa

    def _dispersion(self) -> float:
        counts = self._stable_counts
        windows = len(counts.requests)
        if windows < 3:
            return 0.0
        p = _weighted_median(self._stable_rates)
        p = min(max(p, 0.5 / counts.most_requests), 0.5)
        residuals = sorted(
            (e - n * p) ** 2 / (n * p * (1.0 - p))
            for n, e in zip(counts.requests, counts.errors, strict=True)
        )
        upper_residual = residuals[(3 * windows) // 4]
        median_requests = counts.sorted_requests[windows // 2]
        return max(0.0, (upper_residual / _CHI2_UPPER_QUARTILE - 1.0) / median_requests)

    def _baseline(self, metric: str, history: list[tuple[float, float]]) -> float:
        cached = self._baselines.get(metric)
        if cached is None:
            cached = self._baselines[metric] = self._normal_level(metric, history)
        return cached

    def _normal_level(self, metric: str, history: list[tuple[float, float]]) -> float:
        """Stable's normal level of a metric: the weighted median of its calm windows (module
        docstring, "What is compared"). ``history``: ``(value, requests)`` sorted by value.

        Two passes. A first level is the median of the windows below the calm band's upper
        edge drawn around the low quantile :data:`STABLE_LOW_SHARE` (incidents only raise a
        metric, so the low side is normal). The level is then the median of the windows inside
        the calm band drawn around that first level, on both sides, so that noise in a stable
        without incidents is trimmed evenly and its median stays where it was."""
        running = list(accumulate(map(itemgetter(1), history)))  # once for the three
        low = _weighted_share(history, running, 0, len(history), STABLE_LOW_SHARE)
        below = bisect.bisect_right(history, (self._band(metric, low)[1], math.inf))
        first = _weighted_share(history, running, 0, below, 0.5)
        lower, upper = self._band(metric, first)
        start = bisect.bisect_left(history, (lower, -math.inf))
        end = bisect.bisect_right(history, (upper, math.inf))
        return _weighted_share(history, running, start, end, 0.5) if end > start else first

    def _band(self, metric: str, level: float) -> tuple[float, float]:
        """The calm band around a level: the values a calm stable window takes (errors: three
        standard deviations at the median window's requests, dispersion included, and a
        quarter of the level; latency: a factor :data:`CALM_LATENCY_FACTOR` either way)."""
        if metric != "error_rate":
            return level / CALM_LATENCY_FACTOR, level * CALM_LATENCY_FACTOR
        counts = self._stable_counts.sorted_requests
        requests = counts[len(counts) // 2]
        p = max(level, 0.5 / requests)
        sd = math.sqrt(p * (1.0 - p) / requests * (1.0 + requests * self.dispersion()))
        width = 3.0 * sd + 0.25 * level
        return level - width, level + width

    def _calm(self, rate_s: float | None, requests_s: float, kappa: float) -> bool:
        """Whether stable's window is within noise of its baseline (no incident moving it)."""
        if rate_s is None or not self._stable_rates:
            return True
        baseline = self._baseline("error_rate", self._stable_rates)
        p = max(baseline, 0.5 / requests_s)
        sd = math.sqrt(p * (1.0 - p) / requests_s * (1.0 + requests_s * kappa))
        return abs(rate_s - baseline) <= 3.0 * sd + 0.25 * baseline

    def _references(
        self, metric: str, window_value: float | None, history: list[tuple[float, float]]
    ) -> tuple[float, float] | None:
        """(promote reference, abort reference): stable's baseline, and the higher of its
        window value and the baseline; ``None`` before stable has any window."""
        if not history:
            return None
        baseline = self._baseline(metric, history)
        if window_value is None:
            return baseline, baseline
        return baseline, max(window_value, baseline)

    def _add_errors(self, canary: VersionWindow, stable: VersionWindow) -> None:
        t = self.tolerance
        rate_c = canary.errors / canary.requests
        rate_s = stable.errors / stable.requests if stable.requests > 0 else None
        references = self._references("error_rate", rate_s, self._stable_rates)
        if references is None:
            return
        ref_promote, ref_abort = references
        calm = self._calm(rate_s, stable.requests, self.dispersion())
        pooled = (canary.errors + stable.errors + 0.5) / (canary.requests + stable.requests + 1.0)
        unit = pooled * (1.0 - pooled)
        var = unit / canary.requests
        if stable.requests > 0:
            var += t.error_factor**2 * unit / stable.requests
        zone, null = self.zone, self.abort_null
        d_promote = rate_c - (zone.error_factor * ref_promote + zone.error_floor)
        d_abort = rate_c - (null.error_factor * ref_abort + null.error_floor)
        d_light = rate_c - (t.error_factor * ref_abort + t.error_floor)
        dispersion = unit * (1.0 + t.error_factor**2)
        self._accumulate(
            "error_rate",
            canary.requests,
            (d_promote, d_abort, d_light),
            var,
            unit,
            calm,
            dispersion,
            compared=rate_s is not None,
        )

    def _add_latency(
        self, metric: Metric, q: float, canary: VersionWindow, value_s: float | None
    ) -> None:
        """``value_s``: stable's quantile ``q`` in the window (None: stable had no latency)."""
        t = self.tolerance
        if not canary.has_latency:
            return
        references = self._references(metric, value_s, self._stable_quantiles.get(metric, []))
        if references is None:
            return
        ref_promote, ref_abort = references
        # calm: stable's quantile within a factor 1.25 of its baseline (no incident moving it)
        calm = (
            value_s is None
            or ref_promote / CALM_LATENCY_FACTOR <= value_s <= ref_promote * CALM_LATENCY_FACTOR
        )
        null = self.abort_null
        limit_promote = self.zone.latency_factor * ref_promote + self.zone.latency_floor_ms
        limit_abort = null.latency_factor * ref_abort + null.latency_floor_ms
        limit_light = t.latency_factor * ref_abort + t.latency_floor_ms
        allowed = 1.0 - q
        d_promote = _share_above(canary, limit_promote, unresolved_slower=True) - allowed
        d_abort = _share_above(canary, limit_abort, unresolved_slower=False) - allowed
        d_light = _share_above(canary, limit_light, unresolved_slower=False) - allowed
        unit = allowed * q
        self._accumulate(
            metric,
            canary.requests,
            (d_promote, d_abort, d_light),
            unit / canary.requests,
            unit,
            calm,
            0.0,
            compared=value_s is not None,
        )

    def _accumulate(
        self,
        metric: Metric,
        w: float,
        excess: tuple[float, float, float],
        var: float,
        unit: float,
        calm: bool,
        dispersion: float,
        compared: bool,
    ) -> None:
        """Add a window. Only windows where stable served requests count toward an abort (a
        canary at 100 % has no same-window comparison: an incident would look like its fault);
        only calm windows (stable not in an incident) count toward a proof."""
        d_promote, d_abort, d_light = excess
        step = self._step_index
        if compared:
            for sums, d in ((self._sums, d_abort), (self._light, d_light), (self._step, d_abort)):
                sums.setdefault(metric, _Sums(within_steps=True)).add(w, d, var, dispersion, step)
            if self._windows > self.warmup_windows:
                for sums in (self._beyond, self._beyond_step):
                    sums.setdefault(metric, _Sums(within_steps=True)).add(
                        w, d_light, var, dispersion, step
                    )
                self._look.setdefault(metric, _Look()).add(w, d_abort, var, dispersion)
        if calm:
            self._proof.setdefault(metric, _Sums()).add(w, d_promote, var, dispersion, step)
            if self._share >= HIGH_SHARE:
                self._recent.setdefault(metric, _Sums()).add(w, d_promote, var, dispersion, step)
                self._trend.setdefault(metric, _Trend()).add(self._windows, d_promote, var)
        self._unit_var[metric] = unit

    def summary(self) -> EvidenceSummary:
        """The evidence so far, frozen (cheap: a few numbers per metric)."""
        metrics = []
        kappa = self.dispersion()
        for metric in METRICS:
            abort = self._sums.get(metric) or _Sums()
            proof = self._proof.get(metric) or _Sums()
            recent = self._recent.get(metric) or _Sums()
            step = self._step.get(metric) or _Sums()
            light = self._light.get(metric) or _Sums()
            beyond = self._beyond.get(metric) or _Sums()
            beyond_step = self._beyond_step.get(metric) or _Sums()
            look = self._look.get(metric) or _Look()
            if abort.weight <= 0 and proof.weight <= 0:
                continue
            k = kappa if metric == "error_rate" else 0.0
            slope, slope_se, last = (self._trend.get(metric) or _Trend()).line()
            metrics.append(
                MetricEvidence(
                    metric=metric,
                    windows=abort.windows,
                    weight=abort.weight,
                    mean_abort=_mean(abort),
                    variance_abort=abort.variance(k),
                    mean_light=_mean(light),
                    variance_light=light.variance(k),
                    proof_weight=proof.weight,
                    mean_promote=proof.total / proof.weight if proof.weight > 0 else math.inf,
                    variance_promote=proof.variance(k),
                    recent_windows=recent.windows,
                    recent_weight=recent.weight,
                    mean_recent=recent.total / recent.weight if recent.weight > 0 else math.inf,
                    variance_recent=recent.variance(k),
                    step=self._step_index,
                    step_weight=step.weight,
                    mean_step=_mean(step),
                    variance_step=step.variance(k),
                    unit_variance=self._unit_var[metric],
                    trend_slope=slope,
                    trend_se=slope_se,
                    trend_last=last,
                    beyond_weight=beyond.weight,
                    mean_beyond=_mean(beyond),
                    variance_beyond=beyond.variance(k),
                    beyond_free=beyond.windows - beyond.steps,
                    beyond_step_weight=beyond_step.weight,
                    mean_beyond_step=_mean(beyond_step),
                    variance_beyond_step=beyond_step.variance(k),
                    beyond_step_windows=beyond_step.windows,
                    look_weight=look.weight,
                    mean_look=_mean(look),
                    variance_look=look.variance(k),
                )
            )
        return EvidenceSummary(
            self.tolerance, tuple(metrics), self._canary_requests, self._last_canary
        )


def _mean(sums: _Sums | _Look) -> float:
    """The weighted mean of the sums' ``D`` (-inf before any window)."""
    return sums.total / sums.weight if sums.weight > 0 else -math.inf


# --------------------------------------------------------------------------- the decision


def radius(variance: float, unit_variance: float, alpha: float) -> float:
    """Half-width, in units of Σ w·D, of the normal-mixture confidence sequence at ``alpha``.

    ``|S_t| < sqrt(2 (V_t + ρ) log(sqrt((V_t + ρ) / ρ) / α))`` for every t at once with
    probability 1 − α (Robbins' normal mixture; Howard et al. 2021, eq. (14)); ρ is the variance
    :data:`MIXTURE_REQUESTS` canary requests would have, where the boundary is tightest."""
    rho = max(unit_variance, 1e-9) * MIXTURE_REQUESTS
    total = variance + rho
    return math.sqrt(2.0 * total * math.log(math.sqrt(total / rho) / alpha))


def e_value(mean: float, weight: float, variance: float, unit_variance: float) -> float:
    """The normal-mixture e-value of "excess > 0" (1 when the estimate is not above 0)."""
    if mean <= 0:
        return 1.0
    rho = max(unit_variance, 1e-9) * MIXTURE_REQUESTS
    total = variance + rho
    s = mean * weight
    return math.sqrt(rho / total) * math.exp(min(700.0, s * s / (2.0 * total)))


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    metric: Metric
    upper_promote: float  # upper bound of D̄ (promote reference) at 1 − α_promote
    lower_abort: float  # the larger of life_lower and step_lower: > 0 rejects the abort null
    lower_light: float  # lower bound of D̄ (abort reference) at 1 − ALPHA_LIGHT
    e_value: float  # over the life
    life_lower: float = -math.inf  # lower bound of D̄ over the life at 1 − life_alpha(config)
    step: int = 0
    step_lower: float = -math.inf  # lower bound of this step's D̄ at 1 − step_alpha(config, j)
    step_e_value: float = 1.0
    partial_upper: float = math.inf  # upper bound of D̄ (promote reference) at 1 − α_partial
    drift_projected: float = -math.inf  # D projected over the drift horizon (> 0: leaves the zone)
    drift_growth: float = 0.0  # the growth per window it is projected with (the slope's bound)
    # this step's z-score against the abort null after the warm-up (the last look's)
    step_z: float = -math.inf
    #: D̄ against the tolerance itself over the life after the warm-up (the point estimate the
    #: enforced abort's life test bounds; -inf before any window): > 0 estimates the canary
    #: beyond the tolerance (:attr:`ShieldConfig.decline_share_beyond`)
    beyond_estimate: float = -math.inf
    #: the larger lower bound of D̄ against the tolerance after the warm-up, over the life at
    #: 1 − life_alpha or this step at 1 − step_alpha: > 0 shows the canary beyond the tolerance
    #: (set only where it requires the abort, on every metric's verdict; -inf elsewhere)
    beyond_lower: float = -math.inf


#: A :class:`MetricVerdict`'s fields in order, but ``beyond_lower`` (set only where the abort is
#: required).
_VerdictFields = tuple[
    Metric, float, float, float, float, float, int, float, float, float, float, float, float, float
]


@dataclass(frozen=True, slots=True)
class Grounds:
    """What a verdict's reasons are written from (:meth:`ShieldVerdict.promote_reason`)."""

    evidence: EvidenceSummary
    config: ShieldConfig
    last_step: bool
    partial: bool
    #: The metric the step's last look allowed the abort on (None: no look allowed it).
    looked: MetricVerdict | None
    #: How long a window is, seconds (None: not known; the reasons count windows only).
    window_seconds: float | None = None
    #: Measurements this step has after the current one before a hold pauses it (None: the
    #: count is not known).
    measurements_left: int | None = None

    def requests_to(self, metric: Metric, alpha: float) -> float | None:
        """About how many more canary requests until ``metric``'s promote bound at ``alpha``
        is below 0, if its mean stays (None: the mean is not below 0, or no calm window)."""
        m = next(m for m in self.evidence.metrics if m.metric == metric)
        if m.proof_weight <= 0 or m.mean_promote >= 0:
            return None
        return _requests_to(m.mean_promote, m.variance_promote, m.proof_weight, alpha)

    def reasons(self, verdict: ShieldVerdict) -> tuple[str, str]:
        """The promote and the abort reason of ``verdict``."""
        verdicts = list(verdict.metrics)
        complete = {v.metric for v in verdicts} == set(METRICS)
        config = self.config
        if self.last_step:
            blocking = [v for v in verdicts if v.upper_promote >= 0]
            drifting = [v for v in verdicts if v.drift_projected > 0]
            promote_reason = _proof_reason(verdicts, blocking, complete, self)
            if complete and not blocking and drifting:
                promote_reason = _drift_reason(drifting, config)
        else:
            promote_reason = _climb_reason(verdicts, complete, self)
        abort_reason = _abort_reason(verdicts, config, self.looked)
        if verdict.abort_required:
            abort_reason = f"{abort_reason}; {self._required_reason(verdicts)}"
        return promote_reason, abort_reason

    def _required_reason(self, verdicts: list[MetricVerdict]) -> str:
        """Why the abort is required: the first metric shown beyond the tolerance itself."""
        config = self.config
        v = next(v for v in verdicts if v.beyond_lower > 0)
        m = next(m for m in self.evidence.metrics if m.metric == v.metric)
        warm = config.warmup_windows
        after = f", leaving out the canary's first {_counted(warm, 'window')}" if warm else ""
        level = life_alpha(config)
        if _beyond_life_lower(m, level) > 0:
            where = f"over the canary's life{after}"
            ev = e_value(m.mean_beyond, m.beyond_weight, m.variance_beyond, m.unit_variance)
        else:
            level = step_alpha(config, m.step)
            where = f"at this step (step {m.step}{after})"
            ev = e_value(
                m.mean_beyond_step, m.beyond_step_weight, m.variance_beyond_step, m.unit_variance
            )
        return (
            f"abort required: {_label(v.metric)} beyond the tolerance itself {where}, e-value "
            f"{_fmt_e(ev)} >= {1.0 / level:.3g} (a canary shown beyond the limit is not waited "
            "out)"
        )


@dataclass(frozen=True, slots=True)
class ShieldVerdict:
    """What the shield allows now, and why.

    The reasons are written when first read (:attr:`promote_reason`, :attr:`abort_reason`),
    from ``why``: most decisions hold and show neither, and writing both at every verdict took
    about a fifth of its time. ``why`` may also be the two reasons themselves."""

    promote_allowed: bool
    abort_allowed: bool
    full_proof: bool
    metrics: tuple[MetricVerdict, ...]
    why: Grounds | tuple[str, str] = field(repr=False, compare=False)
    #: The abort is allowed and the canary shown beyond the tolerance itself: the answer is an
    #: abort whatever the policy proposes (:attr:`ShieldConfig.enforce_abort`).
    abort_required: bool = False
    _written: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def promote_reason(self) -> str:
        """Why a promote is allowed or not, with the bounds that decided it."""
        return self._reasons()[0]

    @property
    def abort_reason(self) -> str:
        """Why an abort is allowed or not, with the test that decided it."""
        return self._reasons()[1]

    def _reasons(self) -> tuple[str, str]:
        if self._written is None:
            why = self.why
            written = why.reasons(self) if isinstance(why, Grounds) else why
            object.__setattr__(self, "_written", written)
            return written
        return self._written


def life_alpha(config: ShieldConfig) -> float:
    """The level of a metric's abort test over the canary's life: ``α_abort (1 − s) / 6``, with
    ``s`` the share spent on last looks (:attr:`ShieldConfig.last_look_share`)."""
    return config.alpha_abort * (1.0 - config.last_look_share) / 6.0


def step_alpha(config: ShieldConfig, step: int) -> float:
    """The level of the ``step``-th step's abort test: ``α_abort (1 − s) / 6 × 6 / (π² j²)``;
    the levels of all steps sum to :func:`life_alpha`'s."""
    return config.alpha_abort * (1.0 - config.last_look_share) / (math.pi**2 * max(step, 1) ** 2)


def look_alpha(config: ShieldConfig, step: int) -> float:
    """The level of the last look at the ``step``-th step: ``α_abort s / 3 × 6 / (π² j²)``; the
    looks of all steps sum to ``α_abort s / 3`` per metric."""
    return 2.0 * config.alpha_abort * config.last_look_share / (math.pi**2 * max(step, 1) ** 2)


def _z_upper(alpha: float) -> float:
    """The standard normal's upper ``alpha`` quantile."""
    return NormalDist().inv_cdf(1.0 - alpha)


def verdict_at(
    evidence: EvidenceSummary,
    config: ShieldConfig,
    step_weight: float,
    last_look: bool = False,
    *,
    window_seconds: float | None = None,
    measurements_left: int | None = None,
) -> ShieldVerdict:
    """:func:`shield_verdict` at a step weight: from ``full_proof_weight`` on a promote needs
    the full proof, from ``partial_proof_weight`` on the partial one. ``last_look``: this is
    the step's last measurement (a hold pauses the rollout). ``window_seconds`` and
    ``measurements_left`` only word the reasons (:class:`Grounds`)."""
    return shield_verdict(
        evidence,
        config,
        step_weight >= config.full_proof_weight,
        partial=step_weight >= config.partial_proof_weight,
        last_look=last_look,
        window_seconds=window_seconds,
        measurements_left=measurements_left,
    )


def _requests_to(mean: float, variance: float, weight: float, alpha: float) -> float:
    """About how many more canary requests until the bound at ``alpha`` meets a negative
    mean (the bound shrinks about as 1/sqrt(requests))."""
    per_request = variance / weight
    log_term = math.log(1.0 / alpha) + 2.0
    return max(0.0, 2.0 * per_request * log_term / mean**2 - weight)


def shield_verdict(
    evidence: EvidenceSummary,
    config: ShieldConfig,
    last_step: bool,
    partial: bool = False,
    last_look: bool = False,
    *,
    window_seconds: float | None = None,
    measurements_left: int | None = None,
) -> ShieldVerdict:
    """The actions the evidence allows (see the module docstring). ``last_step``: a promote
    now needs the full proof; ``partial``: below it, the partial proof; ``last_look``: the
    step's last measurement, where a hold pauses the rollout. ``window_seconds`` and
    ``measurements_left`` only word the reasons (:class:`Grounds`).

    A verdict is computed at every decision, so its bounds are :func:`radius` and
    :func:`e_value` written out in the loop, with each metric's mixture scale ``ρ`` computed
    once: the same expressions in the same order, so the same numbers bit for bit
    (``tests/decision_service/test_shield.py`` holds them to the functions)."""
    sqrt, log, exp, inf = math.sqrt, math.log, math.exp, math.inf
    life_level = life_alpha(config)
    alpha_promote, alpha_partial = config.alpha_promote, config.partial_proof_alpha
    proof_windows, horizon = config.proof_windows, config.drift_horizon_windows
    # step_alpha's numerator (its denominator depends on the step)
    step_level = config.alpha_abort * (1.0 - config.last_look_share)
    rows: list[_VerdictFields] = []
    for m in evidence.metrics:
        rho = max(m.unit_variance, 1e-9) * MIXTURE_REQUESTS
        w, wp = m.weight, m.proof_weight
        upper = partial_upper = inf
        if wp > 0:
            total = m.variance_promote + rho
            partial_upper = (
                m.mean_promote + sqrt(2.0 * total * log(sqrt(total / rho) / alpha_partial)) / wp
            )
            upper = m.mean_promote + sqrt(2.0 * total * log(sqrt(total / rho) / alpha_promote)) / wp
            # the proof must also hold on the windows at high weight alone: a canary that
            # drifts, or only fails under load, shows there first (inf: too few windows there)
            recent = inf
            if m.recent_windows >= proof_windows and m.recent_weight > 0:
                total = m.variance_recent + rho
                recent = (
                    m.mean_recent
                    + sqrt(2.0 * total * log(sqrt(total / rho) / alpha_promote)) / m.recent_weight
                )
            upper = max(upper, recent)
        growth = m.trend_slope - TREND_Z * m.trend_se
        projected = -inf
        if horizon > 0 and growth > 0:
            projected = m.trend_last + growth * horizon
        lower = light = -inf
        mean = m.mean_abort
        total_abort = m.variance_abort + rho
        if w > 0:
            lower = mean - sqrt(2.0 * total_abort * log(sqrt(total_abort / rho) / life_level)) / w
            total = m.variance_light + rho
            light = m.mean_light - sqrt(2.0 * total * log(sqrt(total / rho) / ALPHA_LIGHT)) / w
        ev = 1.0
        if mean > 0:
            s = mean * w
            ev = sqrt(rho / total_abort) * exp(min(700.0, s * s / (2.0 * total_abort)))
        step_lower, step_ev, step_z = -inf, 1.0, -inf
        if m.step_weight > 0:
            alpha_j = step_level / (math.pi**2 * max(m.step, 1) ** 2)
            total = m.variance_step + rho
            mean = m.mean_step
            step_lower = mean - sqrt(2.0 * total * log(sqrt(total / rho) / alpha_j)) / m.step_weight
            if mean > 0:
                s = mean * m.step_weight
                step_ev = sqrt(rho / total) * exp(min(700.0, s * s / (2.0 * total)))
        if m.look_weight > 0 and m.variance_look > 0:
            step_z = m.mean_look * m.look_weight / sqrt(m.variance_look)
        rows.append(
            (
                m.metric,
                upper,
                max(lower, step_lower),
                light,
                ev,
                lower,
                m.step,
                step_lower,
                step_ev,
                partial_upper,
                projected,
                growth if projected > -inf else 0.0,
                step_z,
                m.mean_beyond,
            )
        )
    verdicts = [MetricVerdict(*row) for row in rows]
    complete = len(verdicts) == len(METRICS) and {v.metric for v in verdicts} == _ALL_METRICS
    if last_step:
        promote_ok = (
            complete
            and not any(v.upper_promote >= 0 for v in verdicts)
            and not any(v.drift_projected > 0 for v in verdicts)
        )
    else:
        promote_ok = _climb(verdicts, complete, partial)
    rejecting = any(v.lower_abort > 0 for v in verdicts)
    looked = (
        _last_look(verdicts, config)
        if last_look and config.last_look_share > 0 and not rejecting and not promote_ok
        else None
    )
    abort_ok = rejecting or looked is not None
    required = False
    if abort_ok and config.enforce_abort:
        # only here: most verdicts allow no abort, and then none can be required
        beyond = [_beyond_lower(m, config, life_level) for m in evidence.metrics]
        required = any(b > 0 for b in beyond)
        if required:
            verdicts = [
                MetricVerdict(*row, beyond_lower=b) for row, b in zip(rows, beyond, strict=True)
            ]
    return ShieldVerdict(
        promote_ok,
        abort_ok,
        last_step,
        tuple(verdicts),
        Grounds(evidence, config, last_step, partial, looked, window_seconds, measurements_left),
        required,
    )


def _beyond_lower(m: MetricEvidence, config: ShieldConfig, life_level: float) -> float:
    """The larger lower bound of ``m``'s excess over the tolerance itself, after the warm-up:
    over the life at ``life_level``, over this step at its :func:`step_alpha`. Each only once
    the windows can estimate their own variance (a window more than the steps they span): a
    single window, one clump of errors in a service whose stable shows too few errors to
    estimate their dispersion, never requires an abort."""
    lower = _beyond_life_lower(m, life_level)
    if m.beyond_step_windows >= 2:
        r = radius(m.variance_beyond_step, m.unit_variance, step_alpha(config, m.step))
        lower = max(lower, m.mean_beyond_step - r / m.beyond_step_weight)
    return lower


def _beyond_life_lower(m: MetricEvidence, life_level: float) -> float:
    """:func:`_beyond_lower`'s test over the life (-inf until it may run)."""
    if m.beyond_free < 1:
        return -math.inf
    r = radius(m.variance_beyond, m.unit_variance, life_level)
    return m.mean_beyond - r / m.beyond_weight


def _abort_reason(
    verdicts: list[MetricVerdict], config: ShieldConfig, looked: MetricVerdict | None
) -> str:
    """Why an abort is allowed (the first rejecting test, or the last look on ``looked``) or
    not (the largest e-values against their thresholds)."""
    if looked is not None:
        level = look_alpha(config, looked.step)
        return (
            f"abort allowed at the step's last measurement (a hold would pause the rollout): "
            f"{_label(looked.metric)} {_null_text(config)} at this step (step {looked.step}), z "
            f"{looked.step_z:.2f} >= {_z_upper(level):.2f} (a one-time test at {1.0 - level:.4%})"
        )
    threshold = 1.0 / life_alpha(config)
    rejecting = [v for v in verdicts if v.lower_abort > 0]
    if rejecting:
        best = rejecting[0]
        if best.life_lower > 0:
            return (
                f"abort allowed: {_label(best.metric)} {_null_text(config)} over the canary's "
                f"life, e-value {_fmt_e(best.e_value)} >= {threshold:g}"
            )
        return (
            f"abort allowed: {_label(best.metric)} {_null_text(config)} at this step "
            f"(step {best.step}), e-value {_fmt_e(best.step_e_value)} >= "
            f"{1.0 / step_alpha(config, best.step):.3g}"
        )
    best_e = max((v.e_value for v in verdicts), default=1.0)
    best_step = max(verdicts, key=lambda v: v.step_e_value, default=None)
    reason = (
        f"abort blocked: no metric shown {_null_text(config)} (largest e-value over the life "
        f"{_fmt_e(best_e)} < {threshold:g}"
    )
    if best_step is not None and best_step.step > 0:
        reason += (
            f", at step {best_step.step} {_fmt_e(best_step.step_e_value)} < "
            f"{1.0 / step_alpha(config, best_step.step):.3g}"
        )
    return reason + ")"


def _last_look(verdicts: Sequence[MetricVerdict], config: ShieldConfig) -> MetricVerdict | None:
    """The metric on which the step's last look allows an abort (None: it does not).

    At a step's last measurement a hold pauses the rollout. If a promote is not allowed there,
    the one choice left is between that pause and an abort, and it is made once: the rollout
    ends either way. So the abort may rest on a fixed-sample test of the step's own windows
    after the canary's warm-up (the z-score of their request-weighted excess against the abort
    null, its variance from the windows' successive differences: :class:`_Look`) at the look's
    level :func:`look_alpha`, far less evidence than an anytime-valid bound needs. The j-th step's
    looks sum, over the steps, to ``α_abort s / 3`` per metric, so with the life's and the
    steps' anytime-valid tests the three metrics together stay within ``α_abort``."""
    for v in verdicts:
        if v.step_z >= _z_upper(look_alpha(config, v.step)):
            return v
    return None


_LABEL: Final[dict[Metric, str]] = {
    "error_rate": "error rate",
    "latency_p95_ms": "p95",
    "latency_p50_ms": "p50",
}


def _null_text(config: ShieldConfig) -> str:
    """What an abort shows: the canary beyond the tolerance, or worse than stable (margin 0)."""
    if config.abort_margin >= 1.0:
        return "beyond the tolerance"
    if config.abort_margin <= 0.0:
        return "worse than stable"
    return f"beyond {config.abort_margin:g}x the tolerance's excess"


def _label(metric: Metric) -> str:
    return _LABEL[metric]


def beyond_estimate_text(v: MetricVerdict) -> str:
    """``v``'s life estimate against the tolerance itself, in words (its metric, how far)."""
    how_far = (
        f"{100 * v.beyond_estimate:+.2f} pp"
        if v.metric == "error_rate"
        else f"{100 * v.beyond_estimate:+.1f} pp of requests"
    )
    return (
        f"{_label(v.metric)} over its life after its warm-up is estimated {how_far} beyond "
        "the tolerance itself"
    )


def _fmt_e(value: float) -> str:
    return f"{value:.3g}" if value < 1e6 else f"{value:.1e}"


def _climb(verdicts: list[MetricVerdict], complete: bool, partial: bool) -> bool:
    """Below the full proof's weight: a promote needs no sign of a regression, and with
    ``partial`` the canary shown within the zone at 1 − α_partial (:func:`_climb_reason`
    says why)."""
    if not verdicts or any(v.lower_light > 0 for v in verdicts):
        return False
    if not partial:
        return True
    return complete and not any(v.partial_upper >= 0 for v in verdicts)


def _climb_reason(verdicts: list[MetricVerdict], complete: bool, grounds: Grounds) -> str:
    """Why :func:`_climb` allows a promote or not."""
    config = grounds.config
    if not verdicts:
        return "promote blocked: no comparable window yet"
    leaning = [v for v in verdicts if v.lower_light > 0]
    if leaning:
        return "promote blocked: " + "; ".join(
            f"{_label(v.metric)} leans beyond the tolerance" for v in leaning
        )
    if not grounds.partial:
        return "promote allowed: no sign of a regression before the last step"
    confidence = f"{100 * (1 - config.partial_proof_alpha):g} %"
    if not complete:
        missing = sorted(set(METRICS) - {v.metric for v in verdicts})
        return "promote blocked: no comparable window yet for " + ", ".join(map(_label, missing))
    blocking = [v for v in verdicts if v.partial_upper >= 0]
    if not blocking:
        return f"promote allowed: no sign of a regression, and within the zone at {confidence}"
    reason = f"promote blocked: not yet shown within the zone at {confidence} (" + "; ".join(
        _excess_text(v.metric, v.partial_upper) for v in blocking
    )
    reason += ")"
    needs = [grounds.requests_to(v.metric, config.partial_proof_alpha) for v in blocking]
    if any(n is None for n in needs):
        return reason + "; the canary's estimate is beyond the zone"
    more = max(n for n in needs if n is not None)
    return (
        reason
        + f"; about {more:,.0f} more canary requests would show it"
        + _time_to(more, grounds, "a larger step weight, a longer interval or a larger count")
    )


def _drift_reason(drifting: list[MetricVerdict], config: ShieldConfig) -> str:
    """Why a proven canary is still held: its excess grows fast enough to leave the zone."""
    parts = []
    for v in drifting:
        unit = "pp" if v.metric == "error_rate" else "pp of requests beyond the zone's limit"
        parts.append(
            f"{_label(v.metric)} grows by at least {100 * v.drift_growth:.3f} {unit} per window "
            f"at {100 * _TREND_CONFIDENCE:.1f} %"
        )
    return (
        "promote blocked: shown within the zone, but drifting: "
        + "; ".join(parts)
        + f"; at that rate it leaves the zone within {config.drift_horizon_windows} windows "
        "after promotion (SHIELD_DRIFT_HORIZON_WINDOWS)"
    )


#: One-sided confidence of :data:`TREND_Z`.
_TREND_CONFIDENCE: Final = 0.5 * (1.0 + math.erf(TREND_Z / math.sqrt(2.0)))


def _excess_text(metric: Metric, upper: float) -> str:
    if not math.isfinite(upper):
        return f"{_label(metric)}: no calm window yet"
    if metric == "error_rate":
        return f"error excess upper bound {100 * upper:+.2f} pp over the zone's edge"
    return (
        f"{_label(metric)}: up to {100 * upper:+.1f} pp more requests than allowed beyond the "
        "zone's latency limit"
    )


def _proof_reason(
    verdicts: list[MetricVerdict], blocking: list[MetricVerdict], complete: bool, grounds: Grounds
) -> str:
    """Why the final proof allows a promote or not (drift aside: :func:`_drift_reason`)."""
    config, evidence = grounds.config, grounds.evidence
    confidence = f"{100 * (1 - config.alpha_promote):g} %"
    if not complete:
        missing = sorted(set(METRICS) - {v.metric for v in verdicts})
        return "promote blocked: no comparable window yet for " + ", ".join(map(_label, missing))
    if not blocking:
        return f"promote allowed: every metric shown within the tolerance at {confidence}"
    parts = []
    needs: list[float | None] = []
    for v in blocking:
        needs.append(grounds.requests_to(v.metric, config.alpha_promote))
        if not math.isfinite(v.upper_promote):
            continue
        parts.append(_excess_text(v.metric, v.upper_promote))
    reason = f"promote blocked at {confidence}"
    if parts:
        reason += ": " + "; ".join(parts)
    recent = min((m.recent_windows for m in evidence.metrics), default=0)
    if any(n is None for n in needs):
        return reason + (
            " (the canary's estimate is beyond the zone: more requests will not prove it)"
        )
    if recent < config.proof_windows:
        return (
            f"promote blocked: the proof needs {config.proof_windows} windows with the canary "
            f"serving {100 * HIGH_SHARE:.0f} % or more of the traffic, it has {recent}"
        )
    more = max(n for n in needs if n is not None)
    return (
        reason
        + f"; about {more:,.0f} more canary requests would decide it"
        + _time_to(more, grounds, "a longer interval or a larger count")
    )


def _time_to(more: float, grounds: Grounds, remedy: str) -> str:
    """How long ``more`` canary requests take at the last window's rate: windows, minutes when
    the window's length is known, and whether this step has that many measurements left (a
    quiet canary at a low weight often has not: the step would pause before the evidence is
    in, and the reason says what, the ``remedy``, gives it the traffic)."""
    rate = grounds.evidence.last_window_canary_requests
    if rate <= 0:
        return ""
    windows = math.ceil(more / rate)
    text = f" ({_counted(windows, 'more window')}"
    if grounds.window_seconds is not None:
        text += f", about {_duration(windows * grounds.window_seconds)},"
    text += " at the current rate)"
    left = grounds.measurements_left
    if left is None or windows <= left:
        return text
    if left == 0:
        text += "; this is the step's last measurement: a hold now pauses the rollout"
    else:
        text += (
            f"; this step has {_counted(left, 'more measurement')} before a hold pauses it, so "
            "at this rate it pauses first"
        )
    return text + f" ({remedy} gives the canary the traffic)"


def _counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless the count is 1 ("3 more windows", "1 window")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _duration(seconds: float) -> str:
    minutes = seconds / 60.0
    if minutes < 90:
        return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min"
    return f"{minutes / 60.0:.1f} h"


def new_evidence(tolerance: Tolerance, config: ShieldConfig) -> Evidence:
    """Empty evidence for a canary, judged against ``tolerance`` with ``config``'s zone and
    abort margin (the simulator's episode and the service's request alike)."""
    return Evidence(tolerance, config.indifference, config.abort_margin, config.warmup_windows)


def evidence_from(
    baseline: Iterable[VersionWindow],
    life: Iterable[tuple[VersionWindow, VersionWindow]],
    tolerance: Tolerance,
    config: ShieldConfig,
) -> Evidence:
    """The evidence of a canary's windows, added in order (what the simulator does live)."""
    evidence = new_evidence(tolerance, config)
    for stable in baseline:
        evidence.add_baseline(stable)
    for canary, stable in life:
        evidence.add(canary, stable)
    return evidence


def _same_share(share: float, reference: float) -> bool:
    """Whether ``share`` is the same step as ``reference`` (within 5 points or 30 % of it)."""
    return abs(share - reference) <= max(0.05, 0.3 * reference)


def windows_at_current_share(life: Sequence[tuple[VersionWindow, VersionWindow]]) -> int:
    """How many windows before the last one the canary spent at about its current traffic
    share: the measurements already taken at this step, counted from Prometheus.

    Within 5 points or 30 % of the last window's share counts as the same step. Without
    traffic routing two steps can share one pod count (5 % and 10 % are both one pod of six),
    so this can be larger than the true count; the service takes the smaller of it and its own
    memory, which can only be short (a restart, another replica) or, after a retried rollout,
    long: the minimum is never longer than the truth in either case."""
    return windows_at_last_share(
        [c.requests / (c.requests + s.requests) for c, s in life if c.requests + s.requests > 0]
    )


def windows_at_last_share(shares: Sequence[float]) -> int:
    """:func:`windows_at_current_share` from the canary's share of each window with traffic,
    in order: scanned back from the last one only as far as that step goes."""
    if not shares:
        return 0
    last = shares[-1]
    same = 0
    for share in reversed(shares):
        if not _same_share(share, last):
            break
        same += 1
    return same - 1
