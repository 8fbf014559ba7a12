"""Per-step memory: how many measurements this process already answered at a step.

Keyed by (namespace, rollout, canary hash, step weight); the count feeds the observation's
``measurements_at_step``. It lives in process memory only (bounded, least recently used out).

Losing it (a restart, another replica answering, an eviction) can only make the count
*smaller*, never larger: a key starts at 0 and only this process increments it. What a smaller
count does to the policy's choice depends on what the model learned, so it is not left to the
model: ``decision.evaluate`` lets a ``promote`` stand only if the policy also promotes at every
larger count (the ``step_count`` guardrail). A short count can therefore never produce a
promote the true count would not. Nothing else is lost with the count: the evidence (the
canary's life-long counts) is read from Prometheus on every request, the guardrails do not read
the count, and Argo itself, not this count, enforces the step's patience (``count``).
``tests/decision_service/test_step_memory.py`` checks the property with the shipped model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

StepKey = tuple[str, str, str, float]
DEFAULT_MAX_KEYS: Final = 10_000


class StepMemory:
    """Counts of answered measurements per step (not thread-safe: use from the event loop)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self._counts: OrderedDict[StepKey, int] = OrderedDict()
        self._max_keys = max_keys

    @staticmethod
    def key(namespace: str, rollout: str, canary_hash: str, step_weight: float) -> StepKey:
        return (namespace, rollout, canary_hash, float(step_weight))

    def taken(self, key: StepKey) -> int:
        """Measurements already answered at this step (0 for the first)."""
        return self._counts.get(key, 0)

    def record(self, key: StepKey) -> None:
        """One more measurement answered at this step."""
        self._counts[key] = self._counts.get(key, 0) + 1
        self._counts.move_to_end(key)
        if len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)

    def __len__(self) -> int:
        return len(self._counts)
