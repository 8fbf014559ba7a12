"""Against a real Prometheus (``tests/support/live_stack.py``): the snapshot's window and life
spans, the stable version over the canary's span, missing data, every preset's PromQL, and
decisions end to end with constant models and with the shipped model."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from decision_service import prometheus_source
from decision_service.app import create_app
from decision_service.features import FEATURE_NAMES
from decision_service.prometheus_source import PrometheusSource, prometheus_client
from decision_service.queries import PRESET_NAMES, Target, load_templates, render
from decision_service.shield import ShieldConfig, evidence_from, windows_at_current_share
from decision_service.snapshot import MissingMetricError
from decision_service.tolerance import Tolerance
from tests.conftest import prometheus_binary
from tests.support.live_stack import (
    CANARY_SPAN_BURST,
    STABLE_SPAN_HISTORY,
    WINDOW,
    LiveStack,
    live_stack,
)
from tests.support.onnx_models import shipped_model
from tests.support.service import settings_for


@pytest.fixture
def real_model() -> Path:
    return shipped_model()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    with live_stack(prometheus_binary()) as stack:
        yield stack


pytestmark = pytest.mark.prometheus


@pytest.fixture
def source(live: LiveStack) -> Iterator[PrometheusSource]:
    client = prometheus_client(live.url, 2.0, 4)
    templates = load_templates("demo")
    source = PrometheusSource(
        client, templates, window=WINDOW, window_seconds=3, timeout_seconds=2.0
    )
    yield source
    source.close()


def _target(canary: str, stable: str = "s-main") -> Target:
    return Target("shop", "checkout", canary, stable)


def test_window_and_life_of_a_healthy_canary(source: PrometheusSource) -> None:
    snapshot = source.snapshot_blocking(_target("c-healthy"), 20)
    window, life = snapshot.canary, snapshot.canary_cumulative
    # 50 requests/s for 3 s (increase() extrapolates a little): about 150
    assert 100 <= window.requests <= 200
    assert window.errors == 0.0  # its "500" series exists at 0: zero errors, measured
    assert life.requests >= window.requests
    assert window.latency_p50_ms is not None and 30 < window.latency_p50_ms <= 40
    assert snapshot.stable.latency_p50_ms == pytest.approx(window.latency_p50_ms)
    assert 400 <= snapshot.stable.requests <= 800  # 200/s
    assert snapshot.stable.errors > 0


def test_the_window_forgets_an_early_burst_that_the_life_span_keeps(
    source: PrometheusSource, live: LiveStack
) -> None:
    time.sleep(max(0.0, live.burst_at + 3.5 - time.time()))  # the burst leaves the 3 s window
    snapshot = source.snapshot_blocking(_target("c-span", "s-span"), 20)
    burst_requests, burst_errors = CANARY_SPAN_BURST
    assert snapshot.canary.errors == 0.0
    assert burst_errors * 0.8 <= snapshot.canary_cumulative.errors <= burst_errors * 1.3
    assert snapshot.canary_cumulative.requests > burst_requests
    p95 = snapshot.canary_cumulative.latency_p95_ms
    assert p95 is not None and p95 > 300  # the burst's 500 ms requests
    assert snapshot.canary.latency_p95_ms is not None and snapshot.canary.latency_p95_ms <= 40


def test_stable_is_measured_over_the_canarys_span_only(
    source: PrometheusSource, live: LiveStack
) -> None:
    """s-span served 1000 requests (100 errors) before c-span appeared: not in its span."""
    snapshot = source.snapshot_blocking(_target("c-span", "s-span"), 20)
    stable = snapshot.stable_cumulative
    history_requests, history_errors = STABLE_SPAN_HISTORY
    canary_age = time.time() - live.burst_at
    # 200/s over the canary's life, plus at most the 5 s by which its start is dated early
    assert stable.requests <= 200 * (canary_age + 7)
    assert stable.errors < history_errors / 2
    assert stable.requests >= 200 * canary_age * 0.7
    lifelong = source.snapshot_blocking(_target("c-healthy", "s-span"), 20).stable_cumulative
    assert lifelong.requests == pytest.approx(stable.requests, rel=0.2)
    assert history_requests > 0


def test_a_kept_life_reads_what_a_full_read_reads(
    source: PrometheusSource, live: LiveStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decisions a window apart on a real Prometheus (moments already past, so every sample is
    in): the canary's kept life, read window by window, gives each the full read's snapshot,
    evidence and step count (``tests/decision_service/test_canary_life.py`` for the rest). A
    window is kept once it ended a window before the moment read, so that the life here (a
    few seconds) is mostly kept windows."""
    monkeypatch.setattr(prometheus_source, "SETTLE_SECONDS", 3.0)
    target, tolerance, shield = _target("c-span", "s-span"), Tolerance(), ShieldConfig()
    first = live.burst_at + 1.0
    time.sleep(max(0.0, first + 15.0 - time.time()))
    for k in range(5):
        at = first + 3 * k
        kept = source.measure_blocking(target, 20, tolerance, shield, at)
        snapshot, windows = source.readings_blocking(target, 20, at)
        evidence = evidence_from(windows.baseline, windows.life, tolerance, shield)
        full = (
            replace(snapshot, evidence=evidence.summary()),
            windows_at_current_share(windows.life),
        )
        assert repr(kept) == repr(full), k
        assert kept[0].canary_cumulative.requests > 0
    (life,) = source._lives._lives.values()
    assert len(life.shares) >= 3  # most of the life came from the kept windows


def test_an_idle_canary_has_no_requests_and_an_absent_one_no_start(
    source: PrometheusSource,
) -> None:
    idle = source.snapshot_blocking(_target("c-idle"), 20)
    assert idle.canary.requests == 0.0
    assert idle.canary.latency_p50_ms is None  # histogram_quantile of nothing: NaN → missing
    with pytest.raises(MissingMetricError, match="canary_start"):
        source.snapshot_blocking(_target("c-absent"), 20)


def test_a_stable_without_series_is_missing_not_zero(source: PrometheusSource) -> None:
    snapshot = source.snapshot_blocking(_target("c-healthy", "s-gone"), 20)
    assert math.isnan(snapshot.stable.requests)
    assert snapshot.stable.latency_p95_ms is None


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_presets_promql_is_accepted_by_prometheus(live: LiveStack, preset: str) -> None:
    queries = render(
        load_templates(preset), Target("shop", "checkout", "c-healthy", "s-main", "web")
    )
    for promql in (queries.canary_start, queries.spans({"window": "30s", "life": "600s"})):
        response = requests.post(f"{live.url}/api/v1/query", data={"query": promql}, timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def client(
    live: LiveStack, models: dict[str, Path], request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    model = models[getattr(request, "param", "promote")]
    # these tests are about the guardrails and the data path: the shield's partial proof,
    # which a few windows of synthetic traffic cannot give, is off (the full proof stays)
    settings = settings_for(
        model,
        live.url,
        analysis_window=WINDOW,
        prometheus_timeout_seconds=2.0,
        shield_partial_proof_weight=100.0,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _decide(client: TestClient, canary: str, stable: str = "s-main") -> dict[str, Any]:
    body = {
        "namespace": "shop",
        "rollout": "checkout",
        "canary_hash": canary,
        "stable_hash": stable,
        "step_weight": "20",
    }
    response = client.post("/v1/decide", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_an_always_promote_policy_promotes_only_what_the_guardrails_allow(
    client: TestClient,
) -> None:
    assert client.get("/readyz").status_code == 200
    assert _decide(client, "c-healthy")["decision"] == "promote"
    broken = _decide(client, "c-broken")
    assert (broken["decision"], broken["guardrail"]) == ("abort", "hard_slo_breach")
    for missing in ("c-idle", "c-absent"):
        answer = _decide(client, missing)
        assert (answer["decision"], answer["guardrail"]) == ("hold", "no_data")


def test_the_shipped_model_end_to_end(live: LiveStack, real_model: Path) -> None:
    settings = settings_for(
        real_model, live.url, analysis_window=WINDOW, prometheus_timeout_seconds=2.0
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        healthy = _decide(client, "c-healthy")
        assert healthy["decision"] in {"promote", "hold"}
        assert list(healthy["observation"]) == list(FEATURE_NAMES)
        assert healthy["policy"]["model"].startswith("canary-dqn@")
        assert _decide(client, "c-broken")["decision"] == "abort"
        assert _decide(client, "c-idle")["decision"] == "hold"
