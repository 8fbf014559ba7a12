"""The service's own metrics: a registry per app, a Rollout's series created together at its
first decision and only with outcomes a decision can have (checked against the pipeline
itself), the answer each outcome gets, the cap on Rollouts, the build and model info, and what
a decision, a Prometheus error and the model do to them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from decision_service.actions import ACTION_NAMES, Action
from decision_service.app import create_app
from decision_service.features import FEATURE_NAMES, FEATURE_SPEC_VERSION
from decision_service.guardrails import GuardrailConfig
from decision_service.metrics import (
    GUARDRAIL_LABELS,
    OTHER,
    OUTCOMES,
    Outcome,
    ServiceMetrics,
)
from decision_service.pipeline import DecisionConfig, decide
from decision_service.prometheus_answers import ERROR_KINDS
from decision_service.shield import ShieldConfig, VersionWindow, evidence_from
from decision_service.snapshot import MetricsSnapshot, VersionMetrics
from decision_service.tolerance import DEFAULT_TOLERANCE
from tests.support.fake_prometheus import FakePrometheus, Reply, Traffic, demo_prometheus
from tests.support.service import BODY, settings_for

DECISIONS = "rollout_agent_decisions_total"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _decisions(samples: Samples) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (name, labels), value in samples.items() if name == DECISIONS}


def _observe(metrics: ServiceMetrics, rollout: str, outcome: Outcome, answer: str) -> None:
    decision, guardrail, proposed = outcome
    metrics.observe_decision(
        namespace="shop",
        rollout=rollout,
        decision=decision,
        guardrail=guardrail,
        proposed=proposed,
        answer=answer,
        dry_run=False,
        seconds=0.01,
    )


# --------------------------------------------------------------------------- the outcomes


class _CountPolicy:
    """Proposes ``action`` after at most ``up_to`` measurements at the step, else ``hold``:
    what a model that changes its mind with the count does (the step-count rule's case)."""

    def __init__(self, action: Action, up_to: int) -> None:
        self.action, self.up_to = ACTION_NAMES.index(action), up_to

    def q_values(self, observations: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        rows = np.asarray(observations).reshape(-1, len(FEATURE_NAMES))
        count = rows[:, FEATURE_NAMES.index("measurements_at_step")]
        q = np.zeros((rows.shape[0], len(ACTION_NAMES)), dtype=np.float32)
        chosen = np.where(count * 10 <= self.up_to + 1e-6, self.action, 0)
        q[np.arange(rows.shape[0]), chosen] = 1.0
        return q


def _version(requests: float, errors: float, p95: float | None = 60.0) -> VersionMetrics:
    return VersionMetrics(requests, errors, None if p95 is None else p95 / 2, p95)


def _window(requests: float, errors: float, latency_ms: float) -> VersionWindow:
    probe = VersionWindow(requests, errors, ())
    bounds = probe.bounds_ms
    buckets = [0.0] * (len(bounds) + 1)
    buckets[next((i for i, b in enumerate(bounds) if latency_ms <= b), len(bounds))] = requests
    return VersionWindow(requests, errors, tuple(buckets))


#: Canaries (window; the life span is the same) from no data to a hard breach.
CANARIES = {
    "no traffic": VersionMetrics(0, 0, None, None),
    "absent": VersionMetrics(math.nan, math.nan, None, None),
    "healthy": _version(500, 2),
    "few requests": _version(10, 0),
    "few, all failing": _version(10, 10),
    "regression": _version(500, 50),
    "hard error breach": _version(500, 200),
    "hard latency breach": _version(500, 2, 2000.0),
    "slower": _version(500, 2, 150.0),
}
STABLES = {"healthy": _version(5000, 20), "noisy": _version(5000, 400), "gone": _version(0, 0)}


def _evidences() -> dict[str, object]:
    """The shield's evidence: none, or ten windows of a good and of a bad canary."""
    stable = _window(1000, 4, 40)
    good = [(_window(200, 1, 40), stable)] * 10
    bad = [(_window(200, 30, 400), stable)] * 10
    return {
        "none": None,
        "good": evidence_from([stable] * 5, good, DEFAULT_TOLERANCE, ShieldConfig()).summary(),
        "bad": evidence_from([stable] * 5, bad, DEFAULT_TOLERANCE, ShieldConfig()).summary(),
    }


def test_the_outcomes_are_exactly_what_the_pipeline_can_decide() -> None:
    """Every decision over a grid of canaries, stables, evidence, policies (each action, also
    one that stops promoting at a larger count), counts, weights and shield on/off is one of
    OUTCOMES, and every one of OUTCOMES occurs: none is pre-created that cannot happen."""
    seen: set[Outcome] = set()
    guardrails = GuardrailConfig()
    evidences = _evidences()
    configs = [
        DecisionConfig(200.0, guardrails, shield=shield)
        for shield in (None, ShieldConfig(), ShieldConfig(alpha_promote=0.4, alpha_abort=0.4))
    ]
    policies = [_CountPolicy(action, up_to) for action in ACTION_NAMES for up_to in (0, 10)]
    for canary, stable, evidence, weight in itertools.product(
        CANARIES.values(), STABLES.values(), evidences.values(), (20.0, 100.0)
    ):
        snapshot = MetricsSnapshot(
            step_weight=weight,
            canary=canary,
            stable=stable,
            canary_cumulative=canary,
            stable_cumulative=stable,
            evidence=evidence,  # type: ignore[arg-type]
        )
        for policy, config, taken in itertools.product(policies, configs, (0, 3)):
            evaluation = decide(snapshot, taken, policy, config)
            guarded = evaluation.guarded
            outcome = Outcome(guarded.decision, guarded.guardrail, evaluation.proposed)
            assert outcome in OUTCOMES, (outcome, canary, stable, evidence, weight)
            seen.add(outcome)
    assert seen == set(OUTCOMES)


def test_promote_comes_only_from_the_policy_and_every_guardrail_is_counted() -> None:
    promotes = {o for o in OUTCOMES if o.decision == "promote"}
    assert promotes == {Outcome("promote", None, "promote")}
    assert {o.labels()[1] for o in OUTCOMES} == set(GUARDRAIL_LABELS)
    assert len(set(OUTCOMES)) == len(OUTCOMES)


# --------------------------------------------------------------------------- the series


def test_a_rollouts_series_appear_together_at_its_first_decision() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    assert _decisions(_samples(first.exposition().decode())) == {}
    breach = Outcome("abort", "hard_slo_breach", "promote")
    _observe(first, "checkout", breach, "abort")
    decisions = _decisions(_samples(first.exposition().decode()))
    assert len(decisions) == len(OUTCOMES)
    combos = {
        (d["decision"], d["guardrail"], d["proposed"], d["answer"], d["dry_run"])
        for d in map(dict, decisions)
    }
    assert combos == {(*o.labels(), o.decision, "false") for o in OUTCOMES}
    counted = {labels: v for labels, v in decisions.items() if v}
    assert counted == {
        (
            ("answer", "abort"),
            ("decision", "abort"),
            ("dry_run", "false"),
            ("guardrail", "hard_slo_breach"),
            ("namespace", "shop"),
            ("proposed", "promote"),
            ("rollout", "checkout"),
        ): 1.0
    }
    _observe(first, "cart", breach, "abort")
    assert len(_decisions(_samples(first.exposition().decode()))) == 2 * len(OUTCOMES)
    assert _decisions(_samples(second.exposition().decode())) == {}, "a registry per app"


@pytest.mark.parametrize("dry_run_answer", ["hold", "promote"])
def test_in_dry_run_each_outcome_has_the_answer_argo_sees(dry_run_answer: Action) -> None:
    metrics = ServiceMetrics(dry_run=True, dry_run_answer=dry_run_answer)
    for outcome in OUTCOMES:
        expected = "hold" if outcome.guardrail == "no_data" else dry_run_answer
        assert metrics.answer_for(outcome) == expected
    assert all(ServiceMetrics().answer_for(o) == o.decision for o in OUTCOMES)


def test_rollouts_past_the_cap_share_one_label_value() -> None:
    metrics = ServiceMetrics(max_rollouts=2)
    outcome = Outcome("hold", None, "hold")
    for rollout in ("a", "b", "c", "d", "a"):
        _observe(metrics, rollout, outcome, "hold")
    counted = {
        dict(labels)["rollout"]: value
        for labels, value in _decisions(_samples(metrics.exposition().decode())).items()
        if dict(labels)["decision"] == "hold" and dict(labels)["guardrail"] == "none"
    }
    assert counted == {"a": 2.0, "b": 1.0, OTHER: 2.0}


def test_build_info_and_prometheus_errors_exist_from_the_start() -> None:
    samples = _samples(ServiceMetrics().exposition().decode())
    (build,) = [labels for name, labels in samples if name == "rollout_agent_build_info"]
    assert dict(build)["feature_spec_version"] == FEATURE_SPEC_VERSION
    assert dict(build)["version"] and dict(build)["python_version"].count(".") == 2
    errors = {
        dict(k[1])["kind"] for k in samples if k[0] == "rollout_agent_prometheus_errors_total"
    }
    assert errors == set(ERROR_KINDS)
    assert all(name.startswith("rollout_agent_") for name, _ in samples)


def test_metrics_after_decisions_and_failures(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = demo_prometheus(Traffic(300, 1), Traffic(1200, 4))
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        assert client.post("/v1/decide", json=BODY).status_code == 200
        fake_prometheus.handler = lambda query: Reply(status=500)
        assert client.post("/v1/decide", json=BODY).status_code == 503
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    promote = (
        ("answer", "promote"),
        ("decision", "promote"),
        ("dry_run", "false"),
        ("guardrail", "none"),
        ("namespace", "shop"),
        ("proposed", "promote"),
        ("rollout", "checkout"),
    )
    assert samples[(DECISIONS, promote)] == 1.0
    assert sum(_decisions(samples).values()) == 1.0
    assert samples[("rollout_agent_prometheus_errors_total", (("kind", "http_error"),))] == 1.0
    assert samples[("rollout_agent_decision_duration_seconds_count", ())] == 1.0
    # start + the range query for the first decision; the second fails on its one query
    assert samples[("rollout_agent_prometheus_query_duration_seconds_count", ())] == 3.0
    # the first decision read its canary's life whole; the second failed before it read any
    assert samples[("rollout_agent_life_reads_total", (("read", "full"),))] == 1.0
    assert samples[("rollout_agent_life_reads_total", (("read", "kept"),))] == 0.0
    assert samples[("rollout_agent_canary_lives", ())] == 1.0
    assert samples[("rollout_agent_model_loaded", ())] == 1.0
    info = next(k for k in samples if k[0] == "rollout_agent_model_info")
    assert dict(info[1])["model"].startswith("always-promote@")


def test_a_dry_run_decision_is_counted_with_the_answer_argo_saw(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.handler = demo_prometheus(Traffic(300, 150), Traffic(1200, 4))
    settings = settings_for(
        models["promote"], fake_prometheus.url, dry_run=True, dry_run_answer="promote"
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/decide", json=BODY).json()
        samples = _samples(client.get("/metrics").text)
    assert (answer["decision"], answer["guardrail"]) == ("promote", "dry_run")
    counted = [dict(labels) for labels, value in _decisions(samples).items() if value]
    assert counted == [
        {
            "namespace": "shop",
            "rollout": "checkout",
            "decision": "abort",
            "guardrail": "hard_slo_breach",
            "proposed": "promote",
            "answer": "promote",
            "dry_run": "true",
        }
    ]


def test_a_second_decision_reads_only_the_new_windows(
    models: dict[str, Path], fake_prometheus: FakePrometheus
) -> None:
    """The first decision on a canary reads its life whole, the next one from the kept life."""
    fake_prometheus.handler = demo_prometheus(Traffic(300, 1), Traffic(1200, 4))
    with TestClient(create_app(settings_for(models["promote"], fake_prometheus.url))) as client:
        for _ in range(2):
            assert client.post("/v1/decide", json=BODY).status_code == 200
        samples = _samples(client.get("/metrics").text)
    assert samples[("rollout_agent_life_reads_total", (("read", "full"),))] == 1.0
    assert samples[("rollout_agent_life_reads_total", (("read", "kept"),))] == 1.0
    assert samples[("rollout_agent_canary_lives", ())] == 1.0
