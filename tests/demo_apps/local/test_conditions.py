"""Argo's success/failure conditions and jsonPath as the driver implements them."""

from __future__ import annotations

from typing import Any

import pytest

from demo_apps.local.conditions import (
    Condition,
    ConditionError,
    Phase,
    UnsupportedExpression,
    evaluate_conditions,
    json_path,
)


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
