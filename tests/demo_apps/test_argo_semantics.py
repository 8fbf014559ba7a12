"""Argo's analysis semantics as the driver implements them: args, conditions, assessment."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fake_decision import FakeDecisionService, Reply, serve

from demo_apps.argo import (
    ArgContext,
    Condition,
    ManifestError,
    Measurement,
    MetricResult,
    Phase,
    UnsupportedExpression,
    WebMetric,
    assess,
    evaluate_conditions,
    json_path,
    measure,
    parse_duration,
    resolve_args,
    substitute,
)

CONTEXT = ArgContext(
    rollout_name="demo-app",
    namespace="ns",
    stable_hash="s1",
    canary_hash="c1",
    canary_weight=20,
    secrets={("tok", "token"): "T"},
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("1.5s", 1.5), ("500ms", 0.5), ("2h", 7200), ("0", 0)],
)
def test_durations_are_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "30 s", "s", "1m x", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="not a duration"):
        parse_duration(text)


def test_args_merge_step_over_template_and_resolve_value_from() -> None:
    template = [
        {"name": "a"},
        {"name": "interval", "value": "30s"},
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
    ]
    step = [
        {"name": "a", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "interval", "value": "1s"},
    ]
    assert resolve_args(template, step, CONTEXT) == {"a": "c1", "interval": "1s", "token": "T"}
    weight = [
        {
            "name": "a",
            "valueFrom": {"fieldRef": {"fieldPath": "status.canary.weights.canary.weight"}},
        }
    ]
    assert resolve_args(template[:1], weight, CONTEXT) == {"a": "20"}
    with pytest.raises(ManifestError, match="args without a value: a"):
        resolve_args(template, [], CONTEXT)
    with pytest.raises(ManifestError, match="both value and valueFrom"):
        resolve_args(
            [{"name": "a", "value": "1", "valueFrom": {"podTemplateHashValue": "Stable"}}],
            [],
            CONTEXT,
        )


def test_substitution_reaches_every_string_and_refuses_unknown_args() -> None:
    metric = {"count": "{{args.n}}", "body": {"w": "{{args.w}}", "l": ["x{{args.w}}"]}, "k": 3}
    assert substitute(metric, {"n": "4", "w": "5"}) == {
        "count": "4",
        "body": {"w": "5", "l": ["x5"]},
        "k": 3,
    }
    with pytest.raises(ManifestError, match=r"args\.nope"):
        substitute("{{args.nope}}", {})


@pytest.mark.parametrize(
    ("expression", "result", "expected"),
    [
        ('result.decision == "promote"', {"decision": "promote"}, True),
        ('result.decision == "promote"', {"decision": "hold"}, False),
        ('result.decision == "promote"', {}, False),
        ('result.decision != "abort"', {"decision": "hold"}, True),
        ("result.score >= 0.5", {"score": 0.7}, True),
        ("result.score < 1", {"score": 1}, False),
        ("result[0] > 3", [4], True),
        ("result == true", True, True),
        ("result == 1", True, False),
        ('result.a == "x" && result.b == 2', {"a": "x", "b": 2}, True),
        ('result.a == "x" && result.b == 2', {"a": "x", "b": 3}, False),
        ('result.a == "y" || result.b == 2 && result.c == 3', {"a": "y"}, True),
        ("result.dry_run == false", {"dry_run": False}, True),
    ],
)
def test_supported_conditions(expression: str, result: Any, expected: bool) -> None:
    assert Condition.parse(expression).evaluate(result) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "len(result) > 0",
        'result.decision in ["promote"]',
        '"promote" == result.decision',
        "(result.a == 1)",
        "result.a == 1 &&",
        "result.a",
        "asInt(result) > 1",
        "result.a ==",
    ],
)
def test_unsupported_conditions_are_refused(expression: str) -> None:
    with pytest.raises(UnsupportedExpression):
        Condition.parse(expression)


def test_ordering_a_missing_value_is_an_evaluation_error() -> None:
    from demo_apps.argo import ConditionError

    with pytest.raises(ConditionError):
        Condition.parse("result.score > 1").evaluate({})


@pytest.mark.parametrize(
    ("success", "failure", "expected"),
    [
        (True, True, "Failed"),  # failure wins
        (True, False, "Successful"),
        (False, False, "Inconclusive"),
        (False, True, "Failed"),
    ],
)
def test_both_conditions(success: bool, failure: bool, expected: Phase) -> None:
    result = {"s": success, "f": failure}
    assert (
        evaluate_conditions(
            Condition.parse("result.s == true"), Condition.parse("result.f == true"), result
        )
        == expected
    )


def test_one_condition_alone() -> None:
    yes = Condition.parse("result == 1")
    assert evaluate_conditions(yes, None, 2) == "Failed"
    assert evaluate_conditions(None, yes, 2) == "Successful"
    assert evaluate_conditions(None, None, 2) == "Successful"


def test_json_path_forms() -> None:
    assert json_path("{$}") == ()
    assert json_path("{$.data.decision}") == ("data", "decision")
    with pytest.raises(UnsupportedExpression):
        json_path("{$.items[0]}")


def _metric(**fields: Any) -> WebMetric:
    raw = {
        "name": "m",
        "interval": "1s",
        "count": 5,
        "consecutiveSuccessLimit": 1,
        "failureLimit": 0,
        "inconclusiveLimit": 5,
        "successCondition": 'result.decision == "promote"',
        "failureCondition": 'result.decision == "abort"',
        "provider": {"web": {"url": "http://x/v1/decide", "method": "POST"}},
    }
    raw.update(fields)
    return WebMetric.parse({k: v for k, v in raw.items() if v is not None})


def _result(*phases: Phase) -> MetricResult:
    result = MetricResult()
    for phase in phases:
        result.record(Measurement(phase, None, "", 0.0, 0.0))
    return result


H, P, A, E = "Inconclusive", "Successful", "Failed", "Error"


@pytest.mark.parametrize(
    ("phases", "fields", "expected"),
    [
        ([H], {}, None),
        ([H, H, P], {}, "Successful"),
        ([H, A], {}, "Failed"),
        ([A], {"failureLimit": 1}, None),
        ([A, A], {"failureLimit": 1}, "Failed"),
        ([H] * 5, {}, "Inconclusive"),  # count reached, success limit not met
        ([H] * 3, {"inconclusiveLimit": 2}, "Inconclusive"),
        ([E] * 4, {}, None),
        ([E] * 5, {}, "Error"),
        ([E] * 4 + [H] + [E] * 4, {}, None),  # an answer resets the consecutive errors
        ([E] * 2, {"consecutiveErrorLimit": 1}, "Error"),
        ([P, H, P], {"consecutiveSuccessLimit": 2}, None),
        ([P, P], {"consecutiveSuccessLimit": 2}, "Successful"),
        ([E] * 9, {"count": 2}, "Error"),  # errors do not count toward count
        ([H] * 5, {"consecutiveSuccessLimit": None}, "Successful"),  # classic: count reached
        ([H] * 5, {"consecutiveSuccessLimit": 1, "failureLimit": -1}, "Failed"),
    ],
)
def test_metric_assessment(
    phases: list[Phase], fields: dict[str, Any], expected: Phase | None
) -> None:
    phase, _ = assess(_metric(**fields), _result(*phases))
    assert phase == expected


def test_count_and_limits_accept_templated_strings() -> None:
    metric = _metric(count="7", inconclusiveLimit="7", interval="250ms")
    assert (metric.count, metric.inconclusive_limit, metric.interval_seconds) == (7, 7, 0.25)
    with pytest.raises(ManifestError, match="count"):
        _metric(count="{{args.count}}")


def test_a_timeout_is_an_error_measurement() -> None:
    fake = FakeDecisionService([Reply(200, {"decision": "promote"}, delay=0.5)])
    metric = _metric(
        provider={
            "web": {"url": "http://placeholder/v1/decide", "method": "POST", "timeoutSeconds": 0.1}
        }
    )
    with serve(fake), httpx.Client() as client:
        measurement = measure(
            metric, client, clock=lambda: 0.0, host_overrides={"placeholder": fake.url}
        )
    assert measurement.phase == "Error"
    assert "timed out" in measurement.message


def test_an_unreachable_service_is_an_error_measurement() -> None:
    metric = _metric(provider={"web": {"url": "http://127.0.0.1:9/v1/decide", "timeoutSeconds": 1}})
    with httpx.Client() as client:
        assert measure(metric, client, clock=lambda: 0.0).phase == "Error"
