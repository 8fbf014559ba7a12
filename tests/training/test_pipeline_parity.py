"""The service's route and the environment decide the same snapshot the same way.

Both call :func:`decision_service.pipeline.decide`; this checks that nothing around it (the
route's overrides and step memory, the environment's count and configuration) makes them
differ. Episodes of the library are played in the environment with the shipped policy; at every
decision the same snapshot and step count go through the real HTTP route (its Prometheus
source replaced by one that returns that snapshot), and the decision, guardrail and reason
must be identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from decision_service.app import create_app
from decision_service.guardrails import GuardrailConfig
from decision_service.policy import OnnxPolicy
from decision_service.shield import ShieldConfig, Windows, evidence_from
from decision_service.snapshot import MetricsSnapshot
from decision_service.step_memory import StepMemory
from decision_service.tolerance import Tolerance
from scenarios import load_scenarios
from tests.conftest import SCENARIOS_DIR
from tests.support.onnx_models import shipped_model
from tests.support.service import BODY, settings_for
from training.env import CanaryRolloutEnv, EnvConfig

_T = TypeVar("_T")


class SnapshotSource:
    """Stands in for the Prometheus source: answers the snapshot and windows the test sets."""

    def __init__(self) -> None:
        self.snapshot: MetricsSnapshot | None = None
        self.windows: Windows | None = None

    async def run(self, job: Callable[[], _T], queries: int = 2) -> _T:
        return job()

    def measure_blocking(
        self,
        target: Any,
        step_weight: float,
        tolerance: Tolerance,
        shield: ShieldConfig,
        at: float | None = None,
    ) -> tuple[MetricsSnapshot, int]:
        assert self.snapshot is not None and self.snapshot.step_weight == step_weight
        assert self.windows is not None
        # The evidence is built from the windows with the route's tolerance and shield, as the
        # source does. The route's step count is the smaller of its memory and the windows at
        # the current share (tested on its own in test_step_memory); here the memory is set
        # to the env's count, and the windows at the share never cut it.
        evidence = evidence_from(self.windows.baseline, self.windows.life, tolerance, shield)
        return replace(self.snapshot, evidence=evidence.summary()), 10**6

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def model() -> Path:
    return shipped_model()


@pytest.fixture(scope="module")
def service(model: Path) -> Iterator[tuple[TestClient, SnapshotSource]]:
    # the simulator's window (30 s): the shield's reasons give the evidence's time in minutes
    app = create_app(settings_for(model, "http://127.0.0.1:9", analysis_window="30s"))
    with TestClient(app) as client:
        real_source = app.state.service.source
        stub = SnapshotSource()
        app.state.service.source = stub
        yield client, stub
        app.state.service.source = real_source


def _route_decision(
    client: TestClient,
    stub: SnapshotSource,
    snapshot: MetricsSnapshot,
    count: int,
    windows: Windows,
    patience: int,
) -> tuple[str, str | None, str]:
    state = client.app.state.service  # type: ignore[attr-defined]
    state.memory = StepMemory()
    key = StepMemory.key(
        BODY["namespace"], BODY["rollout"], BODY["canary_hash"], snapshot.step_weight
    )
    for _ in range(count):
        state.memory.record(key)
    stub.snapshot = snapshot
    stub.windows = windows
    # the template sends its count (the env's patience), so the route takes the same last look
    request = BODY | {"step_weight": str(snapshot.step_weight), "count": str(patience)}
    response = client.post("/v1/decide", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["decision"], body["guardrail"], body["reason"]


def test_route_and_environment_agree_decision_for_decision(
    service: tuple[TestClient, SnapshotSource], model: Path
) -> None:
    client, stub = service
    policy = OnnxPolicy(model)
    seen: Counter[tuple[str, str | None]] = Counter()
    for scenario in load_scenarios(SCENARIOS_DIR):
        env = CanaryRolloutEnv(
            [scenario], EnvConfig(guardrails=GuardrailConfig(), shield=ShieldConfig())
        )
        for seed in range(4):
            _, info = env.reset(seed=seed, options={"allow_terminal": True})
            while "outcome" not in info:
                snapshot, count = env.snapshot, env.measurements_at_step
                assert snapshot is not None
                routed = _route_decision(
                    client, stub, snapshot, count, env.windows, env.config.patience
                )
                _, _, _, _, info = env.step_policy(policy)
                evaluation = env.last_evaluation
                assert evaluation is not None
                guarded = evaluation.guarded
                assert routed == (guarded.decision, guarded.guardrail, guarded.reason), (
                    scenario.name,
                    seed,
                    count,
                )
                seen[guarded.decision, guarded.guardrail] += 1
    # The comparison covered the policy's own choices and the overrides that occur in practice.
    assert seen["promote", None] and seen["hold", None] and seen["abort", None]
    assert seen["hold", "step_count"] + seen["hold", "regression_veto"] > 0, seen
    assert seen["hold", "shield"] > 0, seen
