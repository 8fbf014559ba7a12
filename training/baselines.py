"""Classical canary analysers on the same decision interface as the policy.

Each one answers ``hold``/``promote``/``abort`` after every analysis interval, from what the
service could know (the metrics snapshot and, for the statistical judges, the raw per-scrape
samples). None sees the ground truth. Each promotes as soon as its own rule allows. Their
parameters are tuned for the shared objective by :mod:`training.tune` (grids below); the tuned
values live in ``training/configs/baselines.yaml``.

1. :class:`StaticThreshold` — what a typical Prometheus AnalysisTemplate does: the canary's
   window error rate and p95 against fixed limits; a measurement over a limit is a failure, more
   than ``failure_limit`` failures at a step abort, a measurement within limits is a success
   (``consecutive_successes`` of them promote). Fewer than ``min_requests`` canary requests →
   inconclusive (hold).
2. :class:`MannWhitneyJudge` — in the style of Kayenta's NetflixACAJudge: per metric (scrape
   error rate, scrape mean latency), a two-sided Mann-Whitney U test of canary vs stable samples
   at 98 % confidence, the Hodges–Lehmann shift, and an effect-size floor (canary/stable mean
   ratio). A metric "fails" when it is significantly *higher* with an effect beyond the floor.
   Score = share of passing metrics: 100 → promote, ≤ ``marginal`` → abort, else hold. Too few
   samples → hold (no data, no verdict).
3. :class:`SequentialErrorTest` — Wald's SPRT on the canary's error count against stable's rate
   (plug-in estimate, continuity-corrected): H0 "canary rate = stable's", H1 "= ``ratio`` ×
   stable's". LLR ≥ log((1-β)/α) → abort; ≤ log(β/(1-α)) → promote; else hold. Optionally reset
   at each step, and optionally a latency guard (canary/stable window p95 ≥ limit → abort), so it
   gets its fair best on latency regressions too.
4. :class:`AnytimeValid` — the state of the art in production canary analysis (Netflix's
   sequential tests, Lindon et al., KDD 2022): the anytime-valid confidence sequences of
   :mod:`decision_service.shield` on the errors and latency-bucket counts, used alone. It aborts
   when "no worse than stable" is rejected at ``alpha`` (the null Netflix tests; the evidence's
   abort null is the environment's shield setting, ``abort_margin`` 0 by default); it promotes
   a step after ``min_windows`` windows without a rejection, or (``promote_rule: proven``)
   once non-inferiority against the indifference zone is shown as far as the shield asks at
   that weight (partly below the last step, in full at it).
5. :class:`ShieldAlone` — the shield with no policy (not tuned): what learning adds to it is the
   difference between its row and the policy's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from scipy.special import ndtr
from scipy.stats import mannwhitneyu

from decision_service.actions import ABORT, HOLD, PROMOTE
from decision_service.pipeline import is_last_look
from decision_service.shield import ShieldConfig, ShieldVerdict, verdict_at
from decision_service.statistics import stable_reference
from training.env import CanaryRolloutEnv, Reads


class Agent(Protocol):
    """Anything that decides a rollout step by step."""

    name: ClassVar[str]
    #: What it reads (the environment computes nothing more for it, ``EnvConfig.reads``).
    reads: ClassVar[Reads]

    def reset(self) -> None: ...

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int: ...


class _StepTracker:
    """Notices when the rollout moved to a new step (the agent's own promote)."""

    def __init__(self) -> None:
        self.weight: float | None = None

    def new_step(self, env: CanaryRolloutEnv) -> bool:
        changed = env.weight != self.weight
        self.weight = env.weight
        return changed


@dataclass
class StaticThreshold:
    max_error_rate: float = 0.05
    max_p95_slo_factor: float = 1.5
    failure_limit: int = 0
    min_requests: int = 0
    consecutive_successes: int = 1

    name: ClassVar[str] = "static_threshold"
    reads: ClassVar[Reads] = "metrics"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "max_error_rate": [0.005, 0.01, 0.02, 0.05],
        "max_p95_slo_factor": [0.75, 1.0, 1.5, 2.0],
        "failure_limit": [0, 1, 2],
        "min_requests": [50, 100],
        "consecutive_successes": [1, 2, 3],
    }

    def __post_init__(self) -> None:
        self._tracker = _StepTracker()
        self._failures = 0
        self._successes = 0

    def reset(self) -> None:
        self.__post_init__()

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        if self._tracker.new_step(env):
            self._failures = self._successes = 0
        snapshot = env.snapshot
        assert snapshot is not None
        canary = snapshot.canary
        if canary.requests < max(self.min_requests, 1) or canary.latency_p95_ms is None:
            return HOLD
        rate = canary.errors / canary.requests
        limit_ms = self.max_p95_slo_factor * env.config.slo_latency_ms
        if rate > self.max_error_rate or canary.latency_p95_ms > limit_ms:
            self._failures += 1
            self._successes = 0
            return ABORT if self._failures > self.failure_limit else HOLD
        self._successes += 1
        return PROMOTE if self._successes >= self.consecutive_successes else HOLD


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sided Mann–Whitney U test's p-value, as ``scipy.stats.mannwhitneyu(x, y,
    alternative="two-sided")`` gives it for 1-D samples without NaN: the same numbers, the
    same floating-point operations in the same order (tests compare them bit for bit).

    Its normal approximation (with the tie and continuity corrections) is computed here
    directly: scipy's array-API and NaN handling cost about 0.4 ms a call, a tenth of an
    evaluated episode. Where scipy would use the exact distribution (either sample of 8 or
    fewer, and no ties) it is asked."""
    n1, n2 = len(x), len(y)
    pooled = np.concatenate((x, y))
    order = np.argsort(pooled, kind="stable")
    ordered = pooled[order]
    first = np.empty(len(ordered), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=len(ordered))
    if (n1 <= 8 or n2 <= 8) and counts.max() == 1:
        return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    ranks = np.empty(len(ordered))
    # average rank of each run of ties: its first ordinal rank + (length − 1)/2
    ranks[order] = np.repeat((starts + 1).astype(np.float64) + (counts - 1.0) / 2, counts)
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    ties = counts.astype(np.float64)
    tie_term = (ties**3 - ties).sum()
    sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = u - n1 * n2 / 2
    numerator -= 0.5  # continuity correction
    with np.errstate(divide="ignore", invalid="ignore"):  # all tied: sd 0, as scipy allows
        p = 2 * ndtr(-(numerator / sd))
    return float(min(max(p, 0.0), 1.0))


@dataclass
class MannWhitneyJudge:
    effect_floor: float = 1.2
    min_scrapes: int = 6
    marginal: int = 0
    scope: str = "step"  # "step": samples since the step began; "rollout": since the canary began
    confidence: float = 0.98

    name: ClassVar[str] = "mann_whitney"
    reads: ClassVar[Reads] = "metrics"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "effect_floor": [1.05, 1.1, 1.25],
        "min_scrapes": [6, 12, 24],
        "marginal": [0, 50],
        "scope": ["step", "rollout"],
    }

    def __post_init__(self) -> None:
        self._tracker = _StepTracker()
        self._step: dict[str, list[np.ndarray]] = {}
        self._rollout: dict[str, list[np.ndarray]] = {k: [] for k in self._KEYS}
        self._clear()

    _KEYS: ClassVar[tuple[str, ...]] = ("c_err", "s_err", "c_lat", "s_lat")

    def _clear(self) -> None:
        self._step = {k: [] for k in self._KEYS}

    def reset(self) -> None:
        self.__post_init__()

    def _samples(self, key: str) -> np.ndarray:
        """This scope's samples; for stable, the whole rollout's when the scope has too few
        (the canary at 100 % leaves stable without traffic: compare with what it served)."""
        source = self._rollout if self.scope == "rollout" else self._step
        values = np.concatenate(source[key]) if source[key] else np.empty(0)
        values = values[~np.isnan(values)]
        if key.startswith("s_") and len(values) < self.min_scrapes and self._rollout[key]:
            values = np.concatenate(self._rollout[key])
            values = values[~np.isnan(values)]
        return values

    def _metric_fails(self, canary: np.ndarray, stable: np.ndarray) -> bool:
        if np.all(canary == canary[0]) and np.all(stable == canary[0]):
            return False  # identical constant samples (e.g. no errors anywhere): no difference
        # The three conditions, cheapest first: the same verdict, without the Mann–Whitney
        # test (scipy: about 1 ms a call) for a canary whose mean is under the effect floor.
        stable_mean = float(np.mean(stable))
        ratio = float(np.mean(canary)) / stable_mean if stable_mean > 0 else math.inf
        if not ratio >= self.effect_floor:
            return False
        p_value = mann_whitney_p(canary, stable)
        if not p_value < 1.0 - self.confidence:
            return False
        shift = float(np.median(np.subtract.outer(canary, stable)))  # Hodges–Lehmann
        return shift > 0

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        if self._tracker.new_step(env):
            self._clear()
        for interval in env.recent_intervals:
            for store in (self._step, self._rollout):
                store["c_err"].append(interval.canary.scrape_error_rates)
                store["s_err"].append(interval.stable.scrape_error_rates)
                store["c_lat"].append(interval.canary.scrape_mean_latency_ms)
                store["s_lat"].append(interval.stable.scrape_mean_latency_ms)
        samples = {key: self._samples(key) for key in self._KEYS}
        if any(len(v) < self.min_scrapes for v in samples.values()):
            return HOLD  # not enough samples for a verdict: no data is never a pass
        failed = int(self._metric_fails(samples["c_err"], samples["s_err"])) + int(
            self._metric_fails(samples["c_lat"], samples["s_lat"])
        )
        score = 100 * (2 - failed) / 2
        if score >= 100:
            return PROMOTE
        return ABORT if score <= self.marginal else HOLD


@dataclass
class SequentialErrorTest:
    ratio: float = 2.0
    alpha: float = 0.05
    beta: float = 0.1
    reset_per_step: bool = True
    latency_guard: float | None = None  # canary/stable window p95 ratio that aborts; None = off
    min_guard_requests: int = 20

    name: ClassVar[str] = "sequential"
    reads: ClassVar[Reads] = "metrics"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "ratio": [1.5, 2.0, 3.0],
        "alpha": [0.01, 0.05, 0.1],
        "beta": [0.02, 0.05, 0.2],
        "reset_per_step": [True, False],
        "latency_guard": [None, 1.15, 1.25, 1.5],
    }

    def __post_init__(self) -> None:
        self._tracker = _StepTracker()
        self._llr = 0.0
        self._upper = math.log((1.0 - self.beta) / self.alpha)
        self._lower = math.log(self.beta / (1.0 - self.alpha))

    def reset(self) -> None:
        self.__post_init__()

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        if self._tracker.new_step(env) and self.reset_per_step:
            self._llr = 0.0
        snapshot = env.snapshot
        assert snapshot is not None
        stable_total = snapshot.stable_cumulative
        p0 = (stable_total.errors + 0.5) / (stable_total.requests + 1.0)
        p1 = min(self.ratio * p0, 0.999)
        for interval in env.recent_intervals:
            n, e = interval.canary.requests, interval.canary.errors
            self._llr += e * math.log(p1 / p0) + (n - e) * math.log((1 - p1) / (1 - p0))
        if self.latency_guard is not None:
            canary, stable = snapshot.canary, stable_reference(snapshot)
            if (
                canary.requests >= self.min_guard_requests
                and canary.latency_p95_ms is not None
                and stable.latency_p95_ms is not None
                and canary.latency_p95_ms >= self.latency_guard * stable.latency_p95_ms
            ):
                return ABORT
        if self._llr >= self._upper:
            return ABORT
        if self._llr <= self._lower:
            return PROMOTE
        return HOLD


def _verdict(env: CanaryRolloutEnv, config: ShieldConfig) -> ShieldVerdict | None:
    """The shield's verdict on the evidence behind the current observation, with ``config``'s
    levels: the one the environment already computed when the settings are the same."""
    snapshot = env.snapshot
    if snapshot is None or snapshot.evidence is None:
        return None
    observed = env.observed_verdict
    if observed is not None and observed[0] == config:
        return observed[1]
    last_look = is_last_look(env.measurements_at_step, env.config.patience)
    return verdict_at(snapshot.evidence, config, env.weight, last_look=last_look)


@dataclass
class AnytimeValid:
    alpha: float = 0.01
    promote_rule: str = "not_rejected"
    min_windows: int = 1

    name: ClassVar[str] = "anytime_valid"
    reads: ClassVar[Reads] = "evidence"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "alpha": [0.01, 0.05, 0.1],
        "promote_rule": ["not_rejected", "proven"],
        "min_windows": [1, 2, 3],
    }

    def __post_init__(self) -> None:
        self._tracker = _StepTracker()
        self._at_step = 0
        # anytime-valid only: no last look (its fixed-sample test is the shield's, not the
        # sequential judge's)
        self._config = ShieldConfig(
            alpha_promote=self.alpha, alpha_abort=self.alpha, last_look_share=0.0
        )

    def reset(self) -> None:
        self.__post_init__()

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        if self._tracker.new_step(env):
            self._at_step = 0
        self._at_step += 1
        verdict = _verdict(env, self._config)
        if verdict is None:
            return HOLD
        if verdict.abort_allowed:
            return ABORT
        if self._at_step < self.min_windows:
            return HOLD
        if self.promote_rule == "proven":
            return PROMOTE if verdict.promote_allowed else HOLD
        return PROMOTE


@dataclass
class ShieldAlone:
    """The shield with no policy: promote when it allows a promote, abort when it allows an
    abort, else hold (the evaluation's row that isolates what learning adds)."""

    name: ClassVar[str] = "shield"
    reads: ClassVar[Reads] = "evidence"
    GRID: ClassVar[dict[str, list[Any]]] = {}

    def __post_init__(self) -> None:
        self._config = ShieldConfig()

    def reset(self) -> None:
        return None

    def act(self, env: CanaryRolloutEnv, observation: np.ndarray) -> int:
        verdict = _verdict(env, self._config)
        if verdict is None:
            return HOLD
        if verdict.abort_allowed:
            return ABORT
        return PROMOTE if verdict.promote_allowed else HOLD


BASELINES: dict[
    str,
    type[StaticThreshold]
    | type[MannWhitneyJudge]
    | type[SequentialErrorTest]
    | type[AnytimeValid]
    | type[ShieldAlone],
]
BASELINES = {
    cls.name: cls
    for cls in (StaticThreshold, MannWhitneyJudge, SequentialErrorTest, AnytimeValid, ShieldAlone)
}


def make_baseline(name: str, params: dict[str, Any] | None = None) -> Agent:
    """A baseline by its report name, with (tuned) parameters."""
    agent: Agent = BASELINES[name](**(params or {}))
    return agent


def baseline_params(agent: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(agent).items()}
