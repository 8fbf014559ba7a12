"""The tolerance: what "the canary is not worse than stable" means, set by the user.

A canary is **within tolerance** when each of its error rate, p95 and p50 latency stays under a
limit computed from stable's:

* error rate: ``canary ≤ error_factor × stable + error_floor``
* p95 / p50:  ``canary ≤ latency_factor × stable + latency_floor_ms``

The factor is the relative excess a team accepts (1.2: 20 % more errors or latency than
stable); the floor keeps tiny absolute differences from counting (0.01 % → 0.02 % errors is not
a regression, nor is 3 ms → 6 ms). This is the one definition. It is used for:

* the truth of every simulated episode (:mod:`scenarios.truth`: the canary's *expected*
  behaviour against stable's), hence the simulator's reward, the evaluation and the tuning of
  the classical baselines;
* the service's configuration (``TOLERANCE_*`` settings, Helm values, per-request overrides) and
  the explanation in every answer (:meth:`Tolerance.describe`).

Why these defaults (:data:`DEFAULT_TOLERANCE`): +20 % is the smallest relative change a canary
analysis can be asked to notice within a rollout at typical traffic (20–200 requests/s) and
what teams commonly accept as noise between two versions on different pods; a canary that fails
1.5× or 3× as often as stable, or is 30 % slower, is a regression every team would roll back.
The floors (0.1 percentage point of errors, 5 ms of latency) are below what a user notices and
below what an analysis window can resolve at those rates, so a service at 0.01 % errors is not
held hostage to a canary at 0.03 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

Metric = Literal["error_rate", "latency_p95_ms", "latency_p50_ms"]
METRICS: Final[tuple[Metric, ...]] = ("error_rate", "latency_p95_ms", "latency_p50_ms")


class Tolerance(BaseModel):
    """How much worse than stable a canary may be (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_factor: float = Field(
        1.2,
        ge=1.0,
        le=100.0,
        description="Canary error rate may be up to this many times stable's (plus the floor).",
    )
    error_floor: float = Field(
        0.001,
        ge=0.0,
        le=0.5,
        description="Absolute error-rate excess that never counts (0.001 = 0.1 percentage point).",
    )
    latency_factor: float = Field(
        1.2,
        ge=1.0,
        le=100.0,
        description="Canary p95 and p50 may be up to this many times stable's (plus the floor).",
    )
    latency_floor_ms: float = Field(
        5.0, ge=0.0, le=60_000.0, description="Absolute latency excess (ms) that never counts."
    )

    def limit(self, metric: Metric, stable: float) -> float:
        """The largest canary value within tolerance, for stable's value of ``metric``."""
        if metric == "error_rate":
            return self.error_factor * stable + self.error_floor
        return self.latency_factor * stable + self.latency_floor_ms

    def widened(self, times: float) -> Tolerance:
        """The tolerance with ``times`` its excess: the edge of the indifference zone.

        ``times=2`` of 1.2x + 0.1 pp is 1.4x + 0.2 pp: a canary there is clearly worse than one
        within tolerance, and a sequential test can tell the two apart on finite evidence.
        The bounds on the fields are for what a user sets; a zone derived from a tolerance at
        its limits may lie beyond them (``model_construct`` skips that check, not the maths)."""
        return Tolerance.model_construct(
            error_factor=1.0 + times * (self.error_factor - 1.0),
            error_floor=times * self.error_floor,
            latency_factor=1.0 + times * (self.latency_factor - 1.0),
            latency_floor_ms=times * self.latency_floor_ms,
        )

    def describe(self, metric: Metric) -> str:
        """The tolerance of one metric in words: ``1.2x + 0.1 pp``, ``1.2x + 5 ms``."""
        if metric == "error_rate":
            return f"{self.error_factor:g}x + {100 * self.error_floor:g} pp"
        return f"{self.latency_factor:g}x + {self.latency_floor_ms:g} ms"


DEFAULT_TOLERANCE: Final = Tolerance()

_LABELS: Final[dict[Metric, str]] = {
    "error_rate": "errors",
    "latency_p95_ms": "p95",
    "latency_p50_ms": "p50",
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of the canary against stable's, and against the tolerance."""

    metric: Metric
    canary: float
    stable: float
    limit: float

    @property
    def within(self) -> bool:
        # `not >`: a NaN is never "within" (missing data is never healthy)
        return not (self.canary > self.limit) and math.isfinite(self.canary)

    @property
    def ratio(self) -> float:
        """Canary / stable (inf when stable is 0 and the canary is not)."""
        if self.stable > 0:
            return self.canary / self.stable
        return 1.0 if self.canary == 0 else math.inf


@dataclass(frozen=True, slots=True)
class Judgement:
    """The canary against stable on every metric; ``within`` when all are."""

    comparisons: tuple[Comparison, ...]

    @property
    def within(self) -> bool:
        return all(c.within for c in self.comparisons)

    @property
    def violations(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if not c.within)


def judge(
    tolerance: Tolerance,
    canary: dict[Metric, float],
    stable: dict[Metric, float],
) -> Judgement:
    """Compare the canary's metrics with stable's under ``tolerance`` (metrics both have)."""
    return Judgement(
        tuple(
            Comparison(m, canary[m], stable[m], tolerance.limit(m, stable[m]))
            for m in METRICS
            if m in canary and m in stable
        )
    )


def explain(tolerance: Tolerance, judgement: Judgement) -> str:
    """One clause per metric: ``errors 1.9x stable's (tolerance 1.2x + 0.1 pp)``."""
    parts = []
    for c in judgement.comparisons:
        times = f"{c.ratio:.2g}x" if math.isfinite(c.ratio) else "above"
        parts.append(
            f"{_LABELS[c.metric]} {times} stable's (tolerance {tolerance.describe(c.metric)})"
        )
    return "; ".join(parts)
