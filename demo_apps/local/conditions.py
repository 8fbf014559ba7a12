"""Argo's ``successCondition``/``failureCondition`` and the web provider's ``jsonPath``.

Part of the local Argo semantics (the overview is in :mod:`demo_apps.local.manifests`).

* **Conditions** (``EvaluateResult`` in Argo's utils/evaluate): with both, failure wins; neither
  matching is **Inconclusive**; only a success condition: not matching is Failed; only a failure
  condition: not matching is Successful.
* **The expression language** is expr (github.com/antonmedv/expr v1.15.5 in Argo Rollouts
  v1.9.1), with ``result`` and Argo's functions in its environment. This module evaluates the
  subset web-metric conditions are written in (:data:`SUPPORTED`); any other form is refused
  with :class:`UnsupportedExpression` when the metric is parsed, never guessed at. (Upstream an
  expression expr cannot compile is an Error at every measurement, so the rollout aborts after
  the error limit; the driver refuses before the first step instead.)

  Why hand-written: no maintained Python implementation of expr exists. On PyPI, ``expr-lang``
  0.1.0 is an empty placeholder (no evaluator), and ``enchanter-golem`` 0.1.0 (one release, a
  cffi binding of expr v1.17.8, not Argo's v1.15.5) takes no Python functions, so Argo's
  ``asInt``/``asFloat``/``isNil``/``default`` cannot be given to it, types its variables from a
  schema (``result`` is any JSON value here) and raises on NaN results. The subset below is
  small, and its runtime rules are expr's (``vm/runtime`` of v1.15.5):

  - a field of a map that is missing is ``nil``; a field of ``nil``, of a string or of a list
    (``result.x`` on JSON ``null``, ``"text"`` or ``[...]``) panics in expr: a
    :class:`ConditionError`, which the web provider turns into an **Error** measurement;
  - ``==`` compares numbers across int/float, otherwise type and value (``1 == true`` is
    false); ``<`` etc. compare two numbers or two strings, anything else panics;
  - ``&&``, ``||``, ``!`` need booleans (they short-circuit); ``in`` searches a list (with
    ``==``) or the keys of a map, ``x in nil`` is false;
  - Argo's functions: ``asInt``/``asFloat`` (numbers, or strings that parse), ``isNaN``,
    ``isInf``, and Argo's quirks kept as they are: ``isNil(x)`` and ``default(x, d)`` ignore
    their first argument and test the whole **result** (``default`` returns the result itself,
    or ``d`` when the result is nil); ``len`` of a string (bytes), list or map;
  - the condition must give a boolean ("expected bool, but got ...").
* **jsonPath**: ``{$}`` (the whole body) and ``{$.a.b}`` (nested keys); other forms are
  refused with :class:`UnsupportedExpression`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from demo_apps.local.manifests import ManifestError

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]

#: What the evaluator supports, as the refusal message lists it.
SUPPORTED = (
    '`result` with .field, [index] and ["key"]; number, string, true/false, nil and [list] '
    "literals; ( ); ! not - +; * /; + -; == != < <= > >= in, not in; && and; || or; "
    "asInt(x) asFloat(x) isNaN(x) isInf(x) isNil(x) default(x, d) len(x)"
)


class UnsupportedExpression(ManifestError):
    """A condition or jsonPath form this driver does not implement (refused, never guessed)."""


class ConditionError(ValueError):
    """The condition could not be evaluated on this result (an Error measurement)."""


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/()\[\],.])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in"}
_FUNCTIONS = {"asInt", "asFloat", "isNaN", "isInf", "isNil", "default", "len"}
_LITERALS: dict[str, Any] = {"true": True, "false": False, "nil": None}
#: Binary operators and their precedence (expr's parser: or 10, and 15, comparisons and in 20,
#: + - 30, * / 60; unary ! 50, unary - + 90).
_BINARY = {
    "||": 10,
    "&&": 15,
    "==": 20,
    "!=": 20,
    "<": 20,
    "<=": 20,
    ">": 20,
    ">=": 20,
    "in": 20,
    "not in": 20,
    "+": 30,
    "-": 30,
    "*": 60,
    "/": 60,
}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "other":
            raise UnsupportedExpression(
                f"condition '{text}': '{value}' is not supported; the local driver evaluates "
                f"{SUPPORTED}"
            )
        if kind == "name" and value in _WORD_OPS:
            kind, value = "op", _WORD_OPS[value]
        tokens.append((kind, value))
    # `not in` is one operator.
    merged: list[tuple[str, str]] = []
    for token in tokens:
        if token == ("op", "in") and merged and merged[-1] == ("op", "!"):
            merged[-1] = ("op", "not in")
        else:
            merged.append(token)
    return merged


# --------------------------------------------------------------------------- runtime

Node = Callable[[Any], Any]


def _go_type(value: Any) -> str:
    """The Go type expr would name for a JSON value (for messages)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _fetch(value: Any, key: Any) -> Any:
    """expr's ``runtime.Fetch``: maps by key (missing: nil), lists and strings by int index."""
    if isinstance(value, dict):
        if not isinstance(key, str):
            raise ConditionError(f"cannot fetch {key} from {_go_type(value)} (keys are strings)")
        return value.get(key)
    if isinstance(value, list | str) and isinstance(key, int) and not isinstance(key, bool):
        index = key + len(value) if key < 0 else key
        if 0 <= index < len(value):
            return value[index] if isinstance(value, list) else value.encode()[index]
        raise ConditionError(f"index out of range: {key} (len {len(value)})")
    raise ConditionError(f"cannot fetch {key} from {_go_type(value)}")


def _boolean(value: Any, operator: str) -> bool:
    if not isinstance(value, bool):
        raise ConditionError(f"invalid operation: {operator} on {_go_type(value)} (not a bool)")
    return value


def _compare(op: str, a: Any, b: Any) -> bool:
    if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    raise ConditionError(
        f"invalid operation: {op} (mismatched types {_go_type(a)} and {_go_type(b)})"
    )


def _contains(needle: Any, haystack: Any, op: str) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, list):
        return any(_equal(item, needle) for item in haystack)
    if isinstance(haystack, dict):
        if not isinstance(needle, str):
            raise ConditionError(f"cannot use {_go_type(needle)} as a key of {op} on a map")
        return needle in haystack
    raise ConditionError(f'operator "in" not defined on {_go_type(haystack)}')


def _arithmetic(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_is_number(a) and _is_number(b)):
        raise ConditionError(
            f"invalid operation: {op} (mismatched types {_go_type(a)} and {_go_type(b)})"
        )
    if op == "/":  # expr divides as floats; Go gives ±Inf or NaN where Python raises
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
        return float(a) / float(b)
    return a + b if op == "+" else a - b if op == "-" else a * b


def _as_int(value: Any) -> int:
    if _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConditionError(f"asInt() of {value}")
        return int(value)  # Go's int64(x) truncates toward zero
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if isinstance(value, str):
        raise ConditionError(f'strconv.ParseInt: parsing "{value}": invalid syntax')
    raise ConditionError(f"asInt() not supported on {_go_type(value)} {value}")


_GO_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.I)


def _as_float(value: Any) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and _GO_FLOAT.fullmatch(value):
        return float(value)
    if isinstance(value, str):
        raise ConditionError(f'strconv.ParseFloat: parsing "{value}": invalid syntax')
    raise ConditionError(f"asFloat() not supported on {_go_type(value)} {value}")


def _float_argument(name: str, value: Any) -> float:
    if isinstance(value, float):
        return value
    raise ConditionError(f"{name}() wants a float64, got {_go_type(value)}")


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list | dict):
        return len(value)
    raise ConditionError(f"invalid argument for len (type {_go_type(value)})")


# --------------------------------------------------------------------------- parser


class _Parser:
    """A Pratt parser for :data:`SUPPORTED`, building closures over the result."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0

    def refuse(self, why: str) -> UnsupportedExpression:
        return UnsupportedExpression(
            f"condition '{self.text}': {why}; the local driver evaluates {SUPPORTED} (upstream "
            "an expression expr cannot compile is an Error at every measurement)"
        )

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.refuse("it ends too early")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token != ("op", value):
            raise self.refuse(f"expected '{value}', found '{token[1]}'")

    def parse(self) -> Node:
        if not self.tokens:
            raise self.refuse("it is empty")
        node = self.expression(0)
        if self.peek() is not None:
            raise self.refuse(f"'{self.take()[1]}' is not supported here")
        return node

    def expression(self, precedence: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token[0] != "op" or token[1] not in _BINARY:
                return left
            op = token[1]
            if _BINARY[op] <= precedence:
                return left
            self.take()
            right = self.expression(_BINARY[op])
            left = self.binary(op, left, right)

    @staticmethod
    def binary(op: str, left: Node, right: Node) -> Node:
        if op == "||":
            return lambda r: _boolean(left(r), op) or _boolean(right(r), op)
        if op == "&&":
            return lambda r: _boolean(left(r), op) and _boolean(right(r), op)
        if op == "==":
            return lambda r: _equal(left(r), right(r))
        if op == "!=":
            return lambda r: not _equal(left(r), right(r))
        if op in ("<", "<=", ">", ">="):
            return lambda r: _compare(op, left(r), right(r))
        if op == "in":
            return lambda r: _contains(left(r), right(r), op)
        if op == "not in":
            return lambda r: not _contains(left(r), right(r), op)
        return lambda r: _arithmetic(op, left(r), right(r))

    def unary(self) -> Node:
        token = self.peek()
        if token == ("op", "!"):
            self.take()
            operand = self.expression(50)
            return lambda r: not _boolean(operand(r), "!")
        if token in (("op", "-"), ("op", "+")):
            self.take()
            operand = self.expression(90)
            sign = -1 if token[1] == "-" else 1

            def signed(r: Any) -> Any:
                value = operand(r)
                if not _is_number(value):
                    raise ConditionError(f"invalid operation: {token[1]}{_go_type(value)}")
                return sign * value

            return signed
        return self.postfix(self.primary())

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            number: float | int = float(value) if re.search(r"[.eE]", value) else int(value)
            return lambda r: number
        if kind == "string":
            literal = _string(value)
            return lambda r: literal
        if kind == "name" and value in _LITERALS:
            constant = _LITERALS[value]
            return lambda r: constant
        if kind == "name" and value == "result":
            return lambda r: r
        if kind == "name" and value in _FUNCTIONS:
            return self.call(value)
        if (kind, value) == ("op", "("):
            inner = self.expression(0)
            self.expect(")")
            return inner
        if (kind, value) == ("op", "["):
            items: list[Node] = []
            while self.peek() != ("op", "]"):
                items.append(self.expression(0))
                if self.peek() != ("op", "]"):
                    self.expect(",")
            self.take()
            return lambda r: [item(r) for item in items]
        if kind == "name":
            raise self.refuse(f"'{value}' is not supported (neither `result` nor a function above)")
        raise self.refuse(f"'{value}' is not supported here")

    def call(self, name: str) -> Node:
        self.expect("(")
        args: list[Node] = []
        while self.peek() != ("op", ")"):
            args.append(self.expression(0))
            if self.peek() != ("op", ")"):
                self.expect(",")
        self.take()
        wanted = 2 if name == "default" else 1
        if len(args) != wanted:
            raise self.refuse(f"{name}() takes {wanted} argument(s), got {len(args)}")
        (first, *rest) = args
        if name == "asInt":
            return lambda r: _as_int(first(r))
        if name == "asFloat":
            return lambda r: _as_float(first(r))
        if name == "isNaN":
            return lambda r: math.isnan(_float_argument(name, first(r)))
        if name == "isInf":
            return lambda r: math.isinf(_float_argument(name, first(r)))
        if name == "len":
            return lambda r: _length(first(r))
        if name == "isNil":
            # Argo's isNil ignores its argument: it tells whether the *result* is nil.
            return lambda r: (first(r), r is None)[1]
        fallback = rest[0]
        # Argo's default(x, d) ignores x as well: the result itself, or d when the result is nil.
        return lambda r: (first(r), fallback(r) if r is None else r)[1]

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token == ("op", "."):
                self.take()
                kind, name = self.take()
                if kind != "name":
                    raise self.refuse(f"expected a field name after '.', found '{name}'")
                node = self.member(node, _constant(name))
            elif token == ("op", "["):
                self.take()
                key = self.expression(0)
                self.expect("]")
                node = self.member(node, key)
            else:
                return node

    @staticmethod
    def member(node: Node, key: Node) -> Node:
        return lambda r: _fetch(node(r), key(r))


def _constant(value: Any) -> Node:
    return lambda r: value


def _string(token: str) -> str:
    body = token[1:-1]
    if token[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        decoded: str = json.loads(f'"{body}"')
    except json.JSONDecodeError as exc:
        raise UnsupportedExpression(f"string literal {token}: {exc}") from None
    return decoded


@dataclass(frozen=True)
class Condition:
    """A parsed ``successCondition``/``failureCondition`` (see the module docstring)."""

    text: str
    node: Node

    @classmethod
    def parse(cls, text: str) -> Condition:
        return cls(text, _Parser(text).parse())

    def evaluate(self, result: Any) -> bool:
        """The condition's value on ``result``; :class:`ConditionError` where expr fails."""
        try:
            value = self.node(result)
        except ConditionError as exc:
            raise ConditionError(f"could not evaluate '{self.text}': {exc}") from None
        if not isinstance(value, bool):
            raise ConditionError(
                f"could not evaluate '{self.text}': expected bool, but got {_go_type(value)}"
            )
        return value


def evaluate_conditions(success: Condition | None, failure: Condition | None, result: Any) -> Phase:
    """Argo's ``EvaluateResult``: the phase of one measurement from its result."""
    succeeded = success.evaluate(result) if success else False
    failed = failure.evaluate(result) if failure else False
    if success and failure:
        return "Failed" if failed else "Successful" if succeeded else "Inconclusive"
    if success:
        return "Successful" if succeeded else "Failed"
    if failure:
        return "Failed" if failed else "Successful"
    return "Successful"


# --------------------------------------------------------------------------- json path


def json_path(text: str) -> tuple[str, ...]:
    """The keys of a ``{$}`` / ``{$.a.b}`` JSONPath; other forms are refused."""
    match = re.fullmatch(r"\{\$((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\}", text.strip())
    if match is None:
        raise UnsupportedExpression(
            f"jsonPath '{text}' is not supported; the local driver reads {{$}} or {{$.a.b}}"
        )
    return tuple(part for part in match.group(1).split(".") if part)
