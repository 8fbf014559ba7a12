"""Argo's ``successCondition``/``failureCondition`` and the web provider's ``jsonPath``.

Part of the local Argo semantics (the overview is in :mod:`demo_apps.local.manifests`).

* **Conditions**: with both, failure wins; neither matching is **Inconclusive**; only a
  success condition: not matching is Failed; only a failure condition: not matching is
  Successful. The expression forms supported are comparisons of a ``result`` path with a
  literal (``result.decision == "promote"``, ``result.score >= 0.5``, ``result == true``),
  joined by ``&&``/``||``. Anything else is refused with :class:`UnsupportedExpression` when
  the metric is parsed, never guessed at. A comparison that cannot be evaluated on a result
  (ordering a missing or non-numeric value) raises :class:`ConditionError`, which the web
  provider turns into an **Error** measurement.
* **jsonPath**: ``{$}`` (the whole body) and ``{$.a.b}`` (nested keys); other forms are
  refused with :class:`UnsupportedExpression`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from demo_apps.local.manifests import ManifestError

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]


class UnsupportedExpression(ManifestError):
    """A condition or jsonPath form this driver does not implement (refused, never guessed)."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op>==|!=|<=|>=|<|>|&&|\|\|)
      | (?P<path>result(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)
      | (?P<bool>true|false)
      | (?P<other>\S+)
    )""",
    re.VERBOSE,
)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_MISSING = object()


class ConditionError(ValueError):
    """The condition could not be evaluated on this result (an Error measurement)."""


def _lookup(result: Any, path: str) -> Any:
    value = result
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path[len("result") :]):
        key, index = part
        if key and isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


@dataclass(frozen=True)
class _Comparison:
    path: str
    op: str
    literal: Any

    def evaluate(self, result: Any) -> bool:
        value = _lookup(result, self.path)
        if self.op in ("==", "!="):
            if value is _MISSING:
                equal = False  # expr: a missing map key is nil, equal to no literal
            elif isinstance(value, bool) or isinstance(self.literal, bool):
                equal = value is self.literal
            else:
                equal = bool(value == self.literal)
            return equal if self.op == "==" else not equal
        numeric = (int, float)
        if (
            value is _MISSING
            or isinstance(value, bool)
            or not isinstance(value, numeric)
            or not isinstance(self.literal, numeric)
        ):
            raise ConditionError(
                f"cannot compare {self.path} ({value!r}) {self.op} {self.literal!r}"
            )
        return bool(_COMPARISONS[self.op](value, self.literal))


@dataclass(frozen=True)
class Condition:
    """A parsed ``successCondition``/``failureCondition`` (see the module docstring)."""

    text: str
    #: Disjunction of conjunctions of comparisons (``&&`` binds tighter than ``||``).
    clauses: tuple[tuple[_Comparison, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Condition:
        tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            assert kind is not None
            if kind == "other":
                raise UnsupportedExpression(
                    f"condition '{text}': '{match.group(kind)}' is not supported; the local "
                    "driver evaluates `result<.path> <op> <literal>` joined by && / ||"
                )
            tokens.append((kind, match.group(kind)))
        clauses: list[tuple[_Comparison, ...]] = []
        current: list[_Comparison] = []
        i = 0
        while i < len(tokens):
            window = tokens[i : i + 3]
            if (
                len(window) < 3
                or window[0][0] != "path"
                or window[1][0] != "op"
                or window[1][1] in ("&&", "||")
                or window[2][0] not in ("string", "number", "bool")
            ):
                raise UnsupportedExpression(
                    f"condition '{text}': expected `result<.path> <op> <literal>` at token "
                    f"{i + 1}; the local driver supports no other form"
                )
            current.append(_Comparison(window[0][1], window[1][1], _literal(*window[2])))
            i += 3
            if i < len(tokens):
                joiner = tokens[i]
                if joiner not in (("op", "&&"), ("op", "||")):
                    raise UnsupportedExpression(f"condition '{text}': expected && or ||")
                if joiner[1] == "||":
                    clauses.append(tuple(current))
                    current = []
                i += 1
                if i == len(tokens):
                    raise UnsupportedExpression(f"condition '{text}' ends with {joiner[1]}")
        if not current:
            raise UnsupportedExpression(f"condition '{text}' is empty")
        clauses.append(tuple(current))
        return cls(text, tuple(clauses))

    def evaluate(self, result: Any) -> bool:
        return any(all(c.evaluate(result) for c in clause) for clause in self.clauses)


def _literal(kind: str, text: str) -> Any:
    if kind == "string":
        return json.loads('"' + text[1:-1].replace('"', '\\"') + '"')
    if kind == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    return text == "true"


def evaluate_conditions(success: Condition | None, failure: Condition | None, result: Any) -> Phase:
    """Argo's ``EvaluateResult``: the phase of one measurement from its result."""
    failed = failure.evaluate(result) if failure else False
    succeeded = success.evaluate(result) if success else False
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
