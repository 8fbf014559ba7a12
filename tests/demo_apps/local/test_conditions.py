"""Argo's success/failure conditions and jsonPath as the driver implements them: the expr
subset web-metric conditions are written in, with expr's runtime rules (v1.15.5, Argo v1.9.1)."""

from __future__ import annotations

import math
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
        ('result.decision == "promote"', {}, False),  # a missing key is nil
        ('result.decision != "abort"', {"decision": "hold"}, True),
        ("result.score >= 0.5", {"score": 0.7}, True),
        ("result.score < 1", {"score": 1}, False),
        ("result[0] > 3", [4], True),
        ("result[-1] == 2", [1, 2], True),
        ('result["a-b"] == 1', {"a-b": 1}, True),
        ("result == true", True, True),
        ("result == 1", True, False),  # no bool/number mixing
        ("result.n == 3", {"n": 3.0}, True),  # numbers compare across int/float
        ('result.a == "x" && result.b == 2', {"a": "x", "b": 2}, True),
        ('result.a == "x" and result.b == 2', {"a": "x", "b": 3}, False),
        ('result.a == "y" || result.b == 2 && result.c == 3', {"a": "y"}, True),
        ('result.a == "y" or result.b == 2', {"a": "n", "b": 2}, True),
        ("result.dry_run == false", {"dry_run": False}, True),
        ("(result.a == 1)", {"a": 1}, True),
        ("!(result.a == 1)", {"a": 2}, True),
        ("not result.flag", {"flag": False}, True),
        ("result.flag", {"flag": True}, True),
        ('result.decision in ["promote", "hold"]', {"decision": "hold"}, True),
        ('result.decision not in ["promote"]', {"decision": "hold"}, True),
        ('"decision" in result', {"decision": "x"}, True),
        ("1 in nil", None, False),
        ("result.missing == nil", {}, True),
        ("len(result) > 0", [1], True),
        ("len(result.items) == 2", {"items": {"a": 1, "b": 2}}, True),
        ('len("é") == 2', None, True),  # bytes, as Go's len
        ("asInt(result.n) >= 3", {"n": "3"}, True),
        ("asInt(result) == 2", 2.9, True),  # truncated toward zero
        ("asFloat(result) < 0.5", "0.25", True),
        ("isNaN(result.x)", {"x": math.nan}, True),
        ("isInf(result.x)", {"x": 1.5}, False),
        ("isNil(result)", None, True),
        ("isNil(result.whatever) == false", {}, True),  # Argo's isNil tests the result
        ("default(result, 5) == 5", None, True),
        ("default(result.x, 0) == result", {"x": 1}, True),  # ... and default returns it
        ("result.errors / result.total < 0.01", {"errors": 0, "total": 100}, True),
        ("result.errors / result.total > 1", {"errors": 1, "total": 0}, True),  # +Inf
        ("-result.a < 0 && 1 + 2 * 3 == 7", {"a": 1}, True),
        ('result.v + "s" == "xs"', {"v": "x"}, True),
        ("!true == false", None, True),
    ],
)
def test_supported_conditions(expression: str, result: Any, expected: bool) -> None:
    assert Condition.parse(expression).evaluate(result) is expected


@pytest.mark.parametrize(
    ("expression", "result", "message"),
    [
        # expr panics on a field of nil, a string or a list: Error measurements upstream.
        ('result.decision == "promote"', None, "cannot fetch decision from <nil>"),
        ('result.decision == "promote"', "promote", "cannot fetch decision from string"),
        ('result.decision == "promote"', ["promote"], r"cannot fetch decision from \[\]"),
        ("result.score > 1", {}, "mismatched types <nil> and int"),
        ('result.score > "1"', {"score": 2}, "mismatched types int and string"),
        ("result.a", {"a": "s"}, "expected bool, but got string"),
        ("result.a && true", {"a": 1}, "not a bool"),
        ("result[5] == 1", [1], "index out of range"),
        ("asInt(result) > 1", "1.5", "invalid syntax"),
        ("asFloat(result) > 1", True, "not supported on bool"),
        ("len(result) > 0", 3, "invalid argument for len"),
        ("1 in result", "abc", 'operator "in" not defined on string'),
        ("isNaN(result)", 1, "wants a float64"),
    ],
)
def test_what_expr_cannot_evaluate_is_a_condition_error(
    expression: str, result: Any, message: str
) -> None:
    with pytest.raises(ConditionError, match=message):
        Condition.parse(expression).evaluate(result)


@pytest.mark.parametrize(
    "expression",
    [
        "result.a == 1 &&",
        "result.a ==",
        "",
        'result.a matches "x"',
        "result.a ? 1 : 2",
        "result?.a",
        "result.a ?? 1",
        "filter(result, .x > 1)",
        "result.decision == other",
        "result.a % 2 == 0",
        "result.a ** 2 > 1",
        "len(result, 1) > 0",
        "1..3",
    ],
)
def test_unsupported_conditions_are_refused_with_the_list_of_what_is(expression: str) -> None:
    with pytest.raises(UnsupportedExpression, match="the local driver evaluates `result`"):
        Condition.parse(expression)


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


def test_a_condition_that_cannot_be_evaluated_is_not_a_phase() -> None:
    """The project's conditions on a body that is not an object: Error, never Inconclusive."""
    success = Condition.parse('result.decision == "promote"')
    failure = Condition.parse('result.decision == "abort"')
    for body in (None, "hold", ["promote"]):
        with pytest.raises(ConditionError):
            evaluate_conditions(success, failure, body)


def test_json_path_forms() -> None:
    assert json_path("{$}") == ()
    assert json_path("{$.data.decision}") == ("data", "decision")
    with pytest.raises(UnsupportedExpression):
        json_path("{$.items[0]}")
