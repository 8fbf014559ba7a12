"""Per-step memory: counts per step, bounded, and losing it only makes the service more cautious."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from decision_service.features import MEASUREMENTS_SCALE, build_observation
from decision_service.guardrails import GuardrailConfig
from decision_service.pipeline import DecisionConfig, decide
from decision_service.policy import OnnxPolicy
from decision_service.snapshot import MetricsSnapshot, VersionMetrics
from decision_service.step_memory import StepMemory
from tests.support.onnx_models import build_model, shipped_model


@pytest.fixture
def real_model() -> Path:
    return shipped_model()


def test_counts_per_step_and_starts_at_zero() -> None:
    memory = StepMemory()
    step = StepMemory.key("shop", "web", "abc", 20)
    other = StepMemory.key("shop", "web", "abc", 40)
    assert memory.taken(step) == 0
    memory.record(step)
    memory.record(step)
    assert memory.taken(step) == 2
    assert memory.taken(other) == 0
    assert StepMemory.key("shop", "web", "abc", 20.0) == step  # "20" and 20.0 are one step


def test_bounded_least_recently_used_out() -> None:
    memory = StepMemory(max_keys=2)
    keys = [StepMemory.key("shop", "web", "abc", w) for w in (10, 20, 30)]
    memory.record(keys[0])
    memory.record(keys[1])
    memory.record(keys[0])  # used again: keys[1] is now the oldest
    memory.record(keys[2])
    assert len(memory) == 2
    assert memory.taken(keys[1]) == 0  # forgotten: back to 0, never more
    assert memory.taken(keys[0]) == 2


def _snapshots(rng: np.random.Generator, n: int) -> list[MetricsSnapshot]:
    """Plausible snapshots over the simulator's range: healthy to broken, small to large."""
    out = []
    for _ in range(n):
        stable_rate = rng.uniform(0.0, 0.05)
        canary_rate = min(
            1.0, stable_rate * rng.choice([0.5, 1.0, 1.5, 3.0, 10.0]) + rng.uniform(0, 0.02)
        )
        stable_p50 = rng.uniform(20, 250)
        canary_p50 = stable_p50 * rng.choice([0.8, 1.0, 1.3, 2.0, 4.0])
        n_window = rng.choice([30, 100, 300, 1000])
        age = rng.choice([1, 3, 10, 30])

        def version(requests: float, rate: float, p50: float) -> VersionMetrics:
            return VersionMetrics(requests, round(requests * rate), p50, p50 * 2.2)

        out.append(
            MetricsSnapshot(
                step_weight=float(rng.choice([10, 20, 50, 80])),
                canary=version(n_window, canary_rate, canary_p50),
                stable=version(n_window * 4, stable_rate, stable_p50),
                canary_cumulative=version(n_window * age, canary_rate, canary_p50),
                stable_cumulative=version(n_window * age * 4, stable_rate, stable_p50),
            )
        )
    return out


def _decisions(policy: OnnxPolicy, snap: MetricsSnapshot) -> list[str]:
    """The service's decision for this snapshot at every count 0 .. scale + 2."""
    return [
        decide(snap, k, policy, DecisionConfig(200.0, GuardrailConfig())).guarded.decision
        for k in range(MEASUREMENTS_SCALE + 3)
    ]


def test_a_lost_count_never_turns_a_non_promote_into_a_promote(real_model: Path) -> None:
    """With the shipped model: whenever the true count k gives hold or abort, a shorter count
    (memory lost) does not give promote."""
    policy = OnnxPolicy(real_model)
    violations = []
    for snap in _snapshots(np.random.default_rng(7), 300):
        decisions = _decisions(policy, snap)
        for short, true in itertools.combinations(range(len(decisions)), 2):
            if decisions[short] == "promote" and decisions[true] != "promote":
                violations.append((short, true, snap))
    assert not violations, f"{len(violations)} cases: {violations[:2]}"


def test_the_step_count_guardrail_holds_a_promote_that_a_later_count_would_not_make(
    tmp_path: Path,
) -> None:
    """A model that promotes early in a step but aborts late: early promotes are held."""
    model = build_model(
        tmp_path / "impatient.onnx",
        q_values=(0.0, 1.0, 0.0),
        weights={("measurements_at_step", "promote"): -2.0, ("measurements_at_step", "abort"): 0.5},
    )
    policy = OnnxPolicy(model)
    snap = _snapshots(np.random.default_rng(1), 1)[0]
    healthy = replace(snap, canary=snap.stable, canary_cumulative=snap.stable_cumulative)
    raw = [policy.decide(build_observation(healthy, k, 200.0))[0] for k in range(11)]
    assert raw[0] == "promote" and raw[10] == "abort"
    evaluation = decide(healthy, 0, policy, DecisionConfig(200.0, GuardrailConfig()))
    assert evaluation.proposed == "promote"
    assert evaluation.guarded.decision == "hold"
    assert evaluation.guarded.guardrail == "step_count"
    assert "abort" in evaluation.guarded.reason


@pytest.mark.parametrize("k", [0, 5, 10, 50])
def test_the_count_feature_saturates(k: int) -> None:
    healthy = VersionMetrics(100, 0, 30, 60)
    obs = build_observation(MetricsSnapshot(10, healthy, healthy, healthy, healthy), k, 200.0)
    assert obs[1] == pytest.approx(min(k, MEASUREMENTS_SCALE) / MEASUREMENTS_SCALE)
