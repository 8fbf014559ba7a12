"""Argo Rollouts' analysis semantics, for the forms the project's manifests use (DESIGN §3).

This is what the local driver (:mod:`demo_apps.driver`) needs to run ``rollouts/`` without a
cluster, read from the argo-rollouts controller's behaviour:

* **Manifests**: every YAML document in a folder, indexed by kind and name.
* **Args**: a template's args (``value`` defaults, ``valueFrom.secretKeyRef``) merged with the
  Rollout step's args (``value``, ``valueFrom.podTemplateHashValue: Stable|Latest``,
  ``valueFrom.fieldRef`` for ``metadata.name``, ``metadata.namespace`` and
  ``status.canary.weights.canary.weight``); the step's values win. An arg left without a value
  is an error, as in Argo.
* **Substitution**: ``{{args.name}}`` is replaced in every string of the metric — url, headers,
  body, conditions and also ``interval``/``count``/limits (Argo templates the whole metric as
  JSON); a placeholder naming an unknown arg is an error.
* **The web provider**: ``method`` (GET default; POST/PUT), ``url``, ``headers``, ``jsonBody``
  or ``body``, ``timeoutSeconds`` (default 10), ``jsonPath`` (default ``{$}``). A non-2xx
  status, a timeout, an unreadable body or a missing path is an **Error** measurement.
* **Conditions**: with both, failure wins; neither matching is **Inconclusive**; only a
  success condition: not matching is Failed; only a failure condition: not matching is
  Successful. The expression forms supported are comparisons of a ``result`` path with a
  literal (``result.decision == "promote"``, ``result.score >= 0.5``, ``result == true``),
  joined by ``&&``/``||``. Anything else is refused with :class:`UnsupportedExpression` when
  the metric is parsed, never guessed at.
* **Assessment** of a metric after each measurement: failed > ``failureLimit`` → Failed;
  inconclusive > ``inconclusiveLimit`` → Inconclusive; consecutive errors >
  ``consecutiveErrorLimit`` (default 4) → Error (later checks win, as in the controller);
  consecutive successes ≥ ``consecutiveSuccessLimit`` → Successful; ``count`` reached →
  Inconclusive when both a failure limit and a success limit apply and the success limit was
  not met, Failed when only the success limit applies, else Successful. Error measurements do
  not count toward ``count``; after one, the next measurement comes after the error retry
  interval (Argo: 10 s) instead of ``interval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]
Obj = dict[str, Any]

#: Argo's ``DefaultErrorRetryInterval``.
DEFAULT_ERROR_RETRY_SECONDS = 10.0
#: Argo's ``DefaultConsecutiveErrorLimit``.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
#: The web provider's default ``timeoutSeconds``.
DEFAULT_WEB_TIMEOUT_SECONDS = 10.0


class ManifestError(ValueError):
    """A manifest the driver cannot run: missing object, missing arg, bad field."""


class UnsupportedExpression(ManifestError):
    """A condition or jsonPath form this driver does not implement (refused, never guessed)."""


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Manifests:
    """The Kubernetes objects of a manifest folder, by (kind, name)."""

    objects: Mapping[tuple[str, str], Obj]
    source: str

    @classmethod
    def load(cls, folder: str | Path, *, recursive: bool = True) -> Manifests:
        root = Path(folder)
        if not root.is_dir():
            raise ManifestError(f"{root}: not a folder of manifests")
        files = sorted(root.rglob("*.yaml") if recursive else root.glob("*.yaml"))
        objects: dict[tuple[str, str], Obj] = {}
        for file in files:
            for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
                if not isinstance(doc, dict) or "kind" not in doc or doc["kind"] == "Kustomization":
                    continue
                key = (doc["kind"], doc.get("metadata", {}).get("name", ""))
                # Variants (patches) repeat a base object; the first (sorted) file is the base.
                objects.setdefault(key, doc)
        return cls(objects, str(root))

    def get(self, kind: str, name: str) -> Obj:
        try:
            return self.objects[(kind, name)]
        except KeyError:
            raise ManifestError(f"{self.source}: no {kind} named '{name}'") from None

    def only(self, kind: str) -> Obj:
        found = [o for (k, _), o in self.objects.items() if k == kind]
        if len(found) != 1:
            raise ManifestError(f"{self.source}: expected one {kind}, found {len(found)}")
        return found[0]


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration string (``30s``, ``1m30s``, ``1.5s``, ``500ms``)."""
    value = str(text).strip()
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ManifestError(f"'{text}' is not a duration (Go syntax: 30s, 1m30s, 500ms)")
    return total


def format_duration(seconds: float) -> str:
    """A Go duration string for ``seconds`` (for passing scaled intervals as args)."""
    return f"{round(seconds * 1000)}ms" if seconds < 10 else f"{seconds:g}s"


# --------------------------------------------------------------------------- args


@dataclass(frozen=True)
class ArgContext:
    """What Argo knows when it creates an AnalysisRun for a Rollout step."""

    rollout_name: str
    namespace: str
    stable_hash: str
    canary_hash: str
    canary_weight: int = 0
    #: (secret name, key) -> value, in the Rollout's namespace.
    secrets: Mapping[tuple[str, str], str] = field(default_factory=dict)


def _field_ref(path: str, context: ArgContext) -> str:
    values = {
        "metadata.name": context.rollout_name,
        "metadata.namespace": context.namespace,
        "status.canary.weights.canary.weight": str(context.canary_weight),
    }
    if path not in values:
        raise ManifestError(f"fieldRef '{path}' is not supported by the local driver")
    return values[path]


def _arg_value(arg: Obj, context: ArgContext, where: str) -> str | None:
    name = arg.get("name")
    if "value" in arg and "valueFrom" in arg:
        raise ManifestError(f"{where}: arg '{name}' has both value and valueFrom")
    if "value" in arg:
        return str(arg["value"])
    source = arg.get("valueFrom")
    if source is None:
        return None
    if "podTemplateHashValue" in source:
        which = source["podTemplateHashValue"]
        if which not in ("Stable", "Latest"):
            raise ManifestError(f"{where}: podTemplateHashValue must be Stable or Latest")
        return context.stable_hash if which == "Stable" else context.canary_hash
    if "fieldRef" in source:
        return _field_ref(source["fieldRef"]["fieldPath"], context)
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        key = (ref["name"], ref["key"])
        if key not in context.secrets:
            raise ManifestError(
                f"{where}: arg '{name}': no Secret '{ref['name']}' with key '{ref['key']}' "
                f"in namespace {context.namespace}"
            )
        return context.secrets[key]
    raise ManifestError(f"{where}: arg '{name}': unsupported valueFrom {sorted(source)}")


def resolve_args(
    template_args: Iterable[Obj],
    step_args: Iterable[Obj],
    context: ArgContext,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Argo's merge: the template's args, each replaced by a step arg of the same name.

    ``overrides`` are extra step args (as if the Rollout passed them), e.g. a demo's shortened
    ``interval``; like step args, they may only name args the template declares.
    """
    declared: dict[str, str | None] = {}
    for arg in template_args:
        declared[arg["name"]] = _arg_value(arg, context, "template")
    for arg in step_args:
        if arg["name"] not in declared:
            raise ManifestError(f"rollout step passes arg '{arg['name']}' the template lacks")
        declared[arg["name"]] = _arg_value(arg, context, "rollout step")
    for name, value in (overrides or {}).items():
        if name not in declared:
            raise ManifestError(f"override names arg '{name}' the template does not declare")
        declared[name] = value
    missing = sorted(name for name, value in declared.items() if value is None)
    if missing:
        raise ManifestError(f"args without a value: {', '.join(missing)}")
    return {name: value for name, value in declared.items() if value is not None}


_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def substitute(obj: Any, args: Mapping[str, str]) -> Any:
    """``{{args.x}}`` replaced in every string of ``obj`` (a copy)."""
    if isinstance(obj, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                raise ManifestError(f"'{match.group(0)}' names an arg that does not exist")
            return args[name]

        return _PLACEHOLDER.sub(replace, obj)
    if isinstance(obj, dict):
        return {key: substitute(value, args) for key, value in obj.items()}
    if isinstance(obj, list):
        return [substitute(value, args) for value in obj]
    return obj


# --------------------------------------------------------------------------- conditions

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


# --------------------------------------------------------------------------- the web metric


def _int_or_string(value: Any, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise ManifestError(f"metric field {name}: '{value}' is not an integer") from None


@dataclass(frozen=True)
class WebMetric:
    """One AnalysisTemplate metric with the ``web`` provider, args already substituted."""

    name: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    json_body: Any
    body: str | None
    json_path: tuple[str, ...]
    timeout_seconds: float
    success: Condition | None
    failure: Condition | None
    interval_seconds: float | None
    initial_delay_seconds: float
    count: int | None
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    consecutive_success_limit: int

    @classmethod
    def parse(cls, metric: Obj) -> WebMetric:
        name = metric.get("name", "?")
        provider = metric.get("provider", {})
        if set(provider) != {"web"}:
            raise ManifestError(
                f"metric '{name}': provider {sorted(provider)} is not supported; "
                "the local driver runs the web provider only"
            )
        web = provider["web"]
        unsupported = set(web) - {
            "url",
            "method",
            "headers",
            "jsonBody",
            "body",
            "jsonPath",
            "timeoutSeconds",
        }
        if unsupported:
            raise ManifestError(f"metric '{name}': web fields {sorted(unsupported)} unsupported")
        method = str(web.get("method", "GET")).upper()
        if method not in ("GET", "POST", "PUT"):
            raise ManifestError(f"metric '{name}': method {method} (Argo allows GET/POST/PUT)")
        if "jsonBody" in web and "body" in web:
            raise ManifestError(f"metric '{name}': web has both body and jsonBody")
        interval = metric.get("interval")
        count = _int_or_string(metric.get("count"), "count", None)
        if count is None and interval is None:
            count = 1  # Argo: no interval means one measurement
        return cls(
            name=name,
            url=web["url"],
            method=method,
            headers=tuple((h["key"], str(h["value"])) for h in web.get("headers", [])),
            json_body=web.get("jsonBody"),
            body=web.get("body"),
            json_path=json_path(web.get("jsonPath", "{$}")),
            timeout_seconds=float(web.get("timeoutSeconds", DEFAULT_WEB_TIMEOUT_SECONDS)),
            success=Condition.parse(metric["successCondition"])
            if metric.get("successCondition")
            else None,
            failure=Condition.parse(metric["failureCondition"])
            if metric.get("failureCondition")
            else None,
            interval_seconds=parse_duration(interval) if interval is not None else None,
            initial_delay_seconds=parse_duration(metric.get("initialDelay", "0")),
            count=count,
            failure_limit=_int_or_string(metric.get("failureLimit"), "failureLimit", 0) or 0,
            inconclusive_limit=_int_or_string(
                metric.get("inconclusiveLimit"), "inconclusiveLimit", 0
            )
            or 0,
            consecutive_error_limit=_int_or_string(
                metric.get("consecutiveErrorLimit"),
                "consecutiveErrorLimit",
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            )
            or 0,
            consecutive_success_limit=_int_or_string(
                metric.get("consecutiveSuccessLimit"), "consecutiveSuccessLimit", 0
            )
            or 0,
        )


@dataclass(frozen=True)
class Measurement:
    """One measurement: its phase, the value read at ``jsonPath``, and a message."""

    phase: Phase
    value: Any
    message: str
    started_at: float
    finished_at: float


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "*****")
    return text


def measure(
    metric: WebMetric,
    client: httpx.Client,
    *,
    clock: Callable[[], float],
    secrets: Iterable[str] = (),
    host_overrides: Mapping[str, str] | None = None,
) -> Measurement:
    """Run one web measurement as Argo's web provider does."""
    started = clock()
    url = metric.url
    if host_overrides:
        parts = urlsplit(url)
        if parts.netloc in host_overrides:
            url = urlunsplit(parts._replace(netloc=host_overrides[parts.netloc]))

    def error(message: str) -> Measurement:
        return Measurement("Error", None, _redact(message, secrets), started, clock())

    try:
        response = client.request(
            metric.method,
            url,
            headers=dict(metric.headers),
            json=metric.json_body if metric.json_body is not None else None,
            content=metric.body.encode() if metric.body is not None else None,
            timeout=metric.timeout_seconds,
        )
    except httpx.TimeoutException:
        return error(f"timed out after {metric.timeout_seconds:g} s: {metric.url}")
    except httpx.HTTPError as exc:
        return error(f"request to {metric.url} failed: {exc}")
    if not 200 <= response.status_code < 300:
        return error(f"received non 2xx response code: {response.status_code} {response.text}")
    try:
        value: Any = response.json()
    except ValueError:
        return error(f"response is not JSON: {response.text[:200]}")
    for key in metric.json_path:
        if not isinstance(value, dict) or key not in value:
            return error(f"jsonPath {{$.{'.'.join(metric.json_path)}}}: '{key}' not found")
        value = value[key]
    try:
        phase = evaluate_conditions(metric.success, metric.failure, value)
    except ConditionError as exc:
        return error(str(exc))
    return Measurement(phase, value, "", started, clock())


# --------------------------------------------------------------------------- assessment


@dataclass
class MetricResult:
    """The counters Argo keeps per metric in an AnalysisRun's status."""

    measurements: list[Measurement] = field(default_factory=list)
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0

    def record(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        if measurement.phase == "Error":
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if measurement.phase == "Successful":
            self.successful += 1
            self.consecutive_success += 1
            return
        self.consecutive_success = 0
        if measurement.phase == "Failed":
            self.failed += 1
        else:
            self.inconclusive += 1


def assess(metric: WebMetric, result: MetricResult) -> tuple[Phase | None, str]:
    """The metric's phase after the last measurement, ``None`` while it still runs."""
    phase: Phase | None = None
    message = ""
    if metric.failure_limit >= 0 and result.failed > metric.failure_limit:
        phase, message = (
            "Failed",
            f"failed ({result.failed}) > failureLimit ({metric.failure_limit})",
        )
    if result.inconclusive > metric.inconclusive_limit:
        phase = "Inconclusive"
        message = (
            f"inconclusive ({result.inconclusive}) > inconclusiveLimit "
            f"({metric.inconclusive_limit})"
        )
    if result.consecutive_error > metric.consecutive_error_limit:
        phase = "Error"
        message = (
            f"consecutiveErrors ({result.consecutive_error}) > consecutiveErrorLimit "
            f"({metric.consecutive_error_limit})"
        )
    if phase is not None:
        return phase, message
    success_limit = metric.consecutive_success_limit
    if success_limit > 0 and result.consecutive_success >= success_limit:
        return "Successful", (
            f"consecutiveSuccesses ({result.consecutive_success}) >= consecutiveSuccessLimit "
            f"({success_limit})"
        )
    if metric.count is not None and result.count >= metric.count:
        failure_applies = metric.failure_limit >= 0
        if success_limit > 0 and failure_applies:
            return "Inconclusive", (
                f"count ({metric.count}) reached: failures ({result.failed}) <= failureLimit "
                f"({metric.failure_limit}) and consecutiveSuccesses "
                f"({result.consecutive_success}) < consecutiveSuccessLimit ({success_limit})"
            )
        if success_limit > 0:
            return "Failed", f"count ({metric.count}) reached without {success_limit} successes"
        return "Successful", f"count ({metric.count}) reached"
    return None, ""


def next_measurement_delay(
    metric: WebMetric, last: Measurement, error_retry_seconds: float
) -> float:
    """Seconds from the end of ``last`` to the next measurement."""
    if last.phase == "Error":
        return error_retry_seconds
    if metric.interval_seconds is None:
        return 0.0
    return metric.interval_seconds
