"""The observation vector: one module owns its feature names, order and normalisation.

The simulator (``training.env``), the exporter (``export``) and the live service all build
observations here, from the same plain data object,
:class:`~decision_service.snapshot.MetricsSnapshot` (each version's last window and the canary's
life). The ONNX model carries :data:`FEATURE_NAMES` and :data:`FEATURE_SPEC_VERSION` in its
metadata, and the service refuses a model whose names differ.

Missing data is never replaced by a made-up number: :func:`build_observation` raises
:class:`MissingMetricError` naming what is missing, and the caller answers ``hold``. The one
substitution it makes is with *measured* data, and only at weight 100: when the stable version
served no request in the last window and the canary is at 100 %, stable's window is its
measurement over the canary's life. Below 100 % a stable window without requests is missing data
(``stable.requests``): stable should be serving, and its life-long figures would be stale.

Helper transforms (all bounded, so one feature can never dominate the network's input):

* ``rate(r)  = min((log10(r + 1e-4) + 4) / 4, 1)`` maps an error rate 0 … 1 to 0 … 1 (log scale, so
  0.1 %, 1 % and 10 % are evenly spaced);
* ``slo(x)   = clip(x / SLO, 0, 5)``         a latency relative to the latency SLO;
* ``lg2(a/b) = clip(log2(a / b), -3, 3)``    a ratio of two latencies;
* ``z``: the pooled two-proportion z-score of canary vs stable errors (0 when neither version had
  an error: the rates are then equal), divided by 5 and clipped to -2 … 2;
* ``llr``: the sequential log-likelihood ratio of "the canary's error rate is twice stable's"
  against "equal", conditional on the errors seen (each error is the canary's with probability
  n_c/(n_c+n_s) under equality), divided by 10 and clipped to -2 … 2.

=====  =============================  ==========================================================
index  name                           value
=====  =============================  ==========================================================
0      step_weight                    canary traffic weight of the current step, percent / 100
1      measurements_at_step           measurements already taken at this step, min(m, 10) / 10
2      canary_window_requests         log10(1 + canary requests in the window) / 4, ≤ 1.5
3      canary_error_rate              rate(canary window error rate)
4      stable_error_rate              rate(stable window error rate)
5      canary_p50_latency             slo(canary window p50)
6      canary_p95_latency             slo(canary window p95)
7      stable_p50_latency             slo(stable window p50)
8      stable_p95_latency             slo(stable window p95)
9      canary_error_trend             rate(canary window) - rate(canary over its life)
10     canary_p95_trend               (canary window p95 - canary life p95) / SLO, -5 … 5
11     canary_total_requests          log10(1 + canary requests over its life) / 5, ≤ 1.5
12     error_ratio_total              log2 of canary/stable error rate over the canary's life,
                                      the canary's rate shrunk towards stable's (a prior worth
                                      2 errors at stable's rate), / 5, ±1: few requests give
                                      a ratio near 1, not a noisy extreme
13     error_z_total                  z(canary life vs stable same span)
14     error_llr_total                llr(canary life vs stable same span)
15     p95_ratio_total                lg2(canary life p95 / stable same-span p95)
16     p50_ratio_total                lg2(canary life p50 / stable same-span p50)
17     error_z_window                 z(canary window vs stable window)
18     stable_error_vs_history        rate(stable window) - rate(stable over the span): a shared
                                      incident (noisy neighbour) shows here, not in the ratios
19     stable_p95_vs_history          lg2(stable window p95 / stable span p95)
20     shield_promote_allowed         1 when the shield would let a promote stand now, else 0
21     shield_abort_allowed           1 when the shield would let an abort stand now, else 0
22     shield_error_proof             how far the error proof is (−upper bound of the excess over
                                      the indifference zone, / 0.1 pp), / 5, ±1: > 0 is proven
23     shield_error_rejection         the abort bound of the error excess over the tolerance,
                                      the larger of the life's and the step's (/ 0.1 pp), / 5,
                                      ±1: > 0 rejects the tolerance
24     shield_p95_proof               as 22 for p95 (share of requests beyond the limit, / 1 pp)
25     shield_p95_rejection           as 23 for p95 (/ 1 pp)
26     shield_p50_proof               as 22 for p50 (/ 5 pp)
27     shield_p50_rejection           as 23 for p50 (/ 5 pp)
=====  =============================  ==========================================================

Features 20–27 are the shield's state (:mod:`decision_service.shield`): how close each action is
to being allowed. Without the shield's evidence they read "not allowed, not proven, not
rejected" (0, 0, −1, 0): missing evidence is never a proof.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from decision_service.shield import ShieldVerdict
from decision_service.snapshot import MetricsSnapshot, MissingMetricError, VersionMetrics
from decision_service.statistics import error_llr, stable_reference, two_proportion_z
from decision_service.tolerance import Metric

FEATURE_SPEC_VERSION: Final = "4"

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "step_weight",
    "measurements_at_step",
    "canary_window_requests",
    "canary_error_rate",
    "stable_error_rate",
    "canary_p50_latency",
    "canary_p95_latency",
    "stable_p50_latency",
    "stable_p95_latency",
    "canary_error_trend",
    "canary_p95_trend",
    "canary_total_requests",
    "error_ratio_total",
    "error_z_total",
    "error_llr_total",
    "p95_ratio_total",
    "p50_ratio_total",
    "error_z_window",
    "stable_error_vs_history",
    "stable_p95_vs_history",
    "shield_promote_allowed",
    "shield_abort_allowed",
    "shield_error_proof",
    "shield_error_rejection",
    "shield_p95_proof",
    "shield_p95_rejection",
    "shield_p50_proof",
    "shield_p50_rejection",
)
N_FEATURES: Final = len(FEATURE_NAMES)

#: Bounds of every feature, in order; the gymnasium observation space uses them.
FEATURE_LOW: Final = np.array(
    [
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        -1,
        -5,
        0,
        -1,
        -2,
        -2,
        -3,
        -3,
        -2,
        -1,
        -3,
        0,
        0,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
    ],
    dtype=np.float32,
)
FEATURE_HIGH: Final = np.array(
    [1, 1, 1.5, 1, 1, 5, 5, 5, 5, 1, 5, 1.5, 1, 2, 2, 3, 3, 2, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1],
    dtype=np.float32,
)

#: Measurements per step that the features distinguish (the template's ``count``).
MEASUREMENTS_SCALE: Final = 10
#: Errors' worth of prior (at stable's rate) the canary/stable ratio starts from.
RATIO_PRIOR_ERRORS: Final = 2.0
_RATE_FLOOR: Final = 1e-4


def _finite(value: float | None, metric: str, field: str = "") -> float:
    """``value`` as a float; MissingMetricError naming ``metric.field`` (written only then)
    when it is None, NaN or infinite."""
    if value is None or not math.isfinite(value):
        name = f"{metric}.{field}" if field else metric
        raise MissingMetricError(name, "no value (no requests in the span, or NaN)")
    return float(value)


def _counted(version: VersionMetrics, metric: str) -> tuple[float, float, float, float]:
    """Requests, errors, p50, p95 of a span that must hold at least one request."""
    requests = _finite(version.requests, metric, "requests")
    errors = _finite(version.errors, metric, "errors")
    if requests <= 0:
        raise MissingMetricError(f"{metric}.requests", "no requests in the span")
    if errors < 0 or errors > requests:
        raise MissingMetricError(f"{metric}.errors", f"{errors} errors for {requests} requests")
    p50 = _finite(version.latency_p50_ms, metric, "latency_p50_ms")
    p95 = _finite(version.latency_p95_ms, metric, "latency_p95_ms")
    if p50 <= 0 or p95 <= 0:
        raise MissingMetricError(f"{metric}.latency", "latency quantiles must be positive")
    return requests, errors, p50, p95


def _rate(r: float) -> float:
    return min((math.log10(r + _RATE_FLOOR) + 4.0) / 4.0, 1.0)


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


#: Scale of each metric's shield bound in the features (see the table).
_SHIELD_SCALES: Final[dict[Metric, float]] = {
    "error_rate": 0.001,
    "latency_p95_ms": 0.01,
    "latency_p50_ms": 0.05,
}
#: The shield features without evidence: not allowed, not proven, not rejected.
_NO_SHIELD: Final = (0.0, 0.0, -1.0, 0.0, -1.0, 0.0, -1.0, 0.0)


def shield_features(verdict: ShieldVerdict | None) -> tuple[float, ...]:
    """Features 20–27 from the shield's verdict (see the table)."""
    if verdict is None:
        return _NO_SHIELD
    bounds = {m.metric: m for m in verdict.metrics}
    values = [float(verdict.promote_allowed), float(verdict.abort_allowed)]
    for metric, scale in _SHIELD_SCALES.items():
        m = bounds.get(metric)
        if m is None:
            values += [-1.0, 0.0]
            continue
        values.append(_clip(-m.upper_promote / scale / 5.0, -1.0, 1.0))
        values.append(_clip(m.lower_abort / scale / 5.0, -1.0, 1.0))
    return tuple(values)


def build_observation(
    snapshot: MetricsSnapshot,
    measurements_at_step: int,
    slo_latency_ms: float,
    shield: ShieldVerdict | None = None,
) -> npt.NDArray[np.float32]:
    """The normalised observation vector (order :data:`FEATURE_NAMES`).

    ``measurements_at_step`` is the count of measurements already taken at this step (the
    caller's: the service's step memory, the simulator's episode); ``shield`` the shield's
    verdict on the snapshot's evidence (:func:`decision_service.pipeline.observe` computes it).

    Raises :class:`MissingMetricError` if a metric it needs is missing.
    """
    if not math.isfinite(slo_latency_ms) or slo_latency_ms <= 0:
        raise ValueError(f"slo_latency_ms must be positive, got {slo_latency_ms}")
    weight = _finite(snapshot.step_weight, "step_weight")
    if not 0.0 <= weight <= 100.0:
        raise ValueError(f"step_weight must be within 0..100, got {weight}")
    n_c, e_c, c50, c95 = _counted(snapshot.canary, "canary")
    stable = stable_reference(snapshot)
    if stable is snapshot.stable and not stable.requests > 0:  # `not >`: NaN too
        raise MissingMetricError(
            "stable.requests",
            f"the stable version served no request in the window at weight {weight:g} "
            "(no series, NaN or zero); only at 100 is its window replaced by its "
            "measurement over the canary's life",
        )
    n_s, e_s, s50, s95 = _counted(stable, "stable")
    nc_t, ec_t, ct50, ct95 = _counted(snapshot.canary_cumulative, "canary_cumulative")
    ns_t, es_t, st50, st95 = _counted(snapshot.stable_cumulative, "stable_cumulative")
    measurements = max(0, int(measurements_at_step))

    canary_rate, stable_rate = e_c / n_c, e_s / n_s
    canary_total_rate, stable_total_rate = ec_t / nc_t, es_t / ns_t
    stable_prior_rate = (es_t + 0.5) / (ns_t + 1.0)
    prior_requests = RATIO_PRIOR_ERRORS / stable_prior_rate
    canary_shrunk_rate = (ec_t + RATIO_PRIOR_ERRORS) / (nc_t + prior_requests)
    ratio_total = canary_shrunk_rate / stable_prior_rate

    values = (
        weight / 100.0,
        min(measurements, MEASUREMENTS_SCALE) / MEASUREMENTS_SCALE,
        min(math.log10(1.0 + n_c) / 4.0, 1.5),
        _rate(canary_rate),
        _rate(stable_rate),
        _clip(c50 / slo_latency_ms, 0.0, 5.0),
        _clip(c95 / slo_latency_ms, 0.0, 5.0),
        _clip(s50 / slo_latency_ms, 0.0, 5.0),
        _clip(s95 / slo_latency_ms, 0.0, 5.0),
        _rate(canary_rate) - _rate(canary_total_rate),
        _clip((c95 - ct95) / slo_latency_ms, -5.0, 5.0),
        min(math.log10(1.0 + nc_t) / 5.0, 1.5),
        _clip(math.log2(ratio_total) / 5.0, -1.0, 1.0),
        _clip(two_proportion_z(ec_t, nc_t, es_t, ns_t) / 5.0, -2.0, 2.0),
        _clip(error_llr(ec_t, nc_t, es_t, ns_t) / 10.0, -2.0, 2.0),
        _clip(math.log2(ct95 / st95), -3.0, 3.0),
        _clip(math.log2(ct50 / st50), -3.0, 3.0),
        _clip(two_proportion_z(e_c, n_c, e_s, n_s) / 5.0, -2.0, 2.0),
        _rate(stable_rate) - _rate(stable_total_rate),
        _clip(math.log2(s95 / st95), -3.0, 3.0),
        *shield_features(shield),
    )
    return np.asarray(values, dtype=np.float32)


def named(observation: npt.NDArray[np.float32]) -> dict[str, float]:
    """The observation as ``{feature name: value}`` (for explainable answers and logs)."""
    values = np.asarray(observation).reshape(-1).tolist()  # Python floats, as float(v) gives
    return {name: round(v, 6) for name, v in zip(FEATURE_NAMES, values, strict=True)}
