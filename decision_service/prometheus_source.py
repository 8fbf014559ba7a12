"""Where the PromQL is: templates, presets, the queries, and the :class:`MetricsSnapshot`.

A decision needs, for the canary and the stable version, requests, errors and the p50/p95
latency over two spans: the last analysis window, and the canary's life (since its first series
appeared; stable over that same span). The templates (a preset from ``presets/`` or a user's
YAML file, see ``docs/queries.md``) describe two PromQL expressions per span, each answering for
*both* versions at once, grouped by ``version_label``:

* ``requests``: request counts by version and status code (``status_label``); errors are the
  codes matching ``error_status``, so a version that served requests but no error has zero
  errors, measured, not assumed;
* ``latency_buckets``: the latency histogram's bucket increases by version and ``le``; the
  quantiles are computed here with :func:`decision_service.histogram.histogram_quantile`, the
  simulator's implementation of Prometheus' ``histogram_quantile``.

All four expressions (2 spans × 2 templates) travel in **one** query, each tagged with
``label_replace`` and joined with ``or``. The canary's life needs its start time: the
``canary_start`` template answers it, queried once per canary and then cached (the start of a
canary never changes, so the cache only saves a round trip; any replica can recompute it).
Steady state: one PromQL query per decision.

Label values substituted into the templates were validated by the request schema (Kubernetes
name/label-value syntax: no quote, no backslash), so they cannot escape a PromQL string.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from string import Template
from typing import Any, Final, Literal, TypeVar

import requests
import yaml
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from decision_service.features import MetricsSnapshot, MissingMetricError, VersionMetrics
from decision_service.histogram import histogram_quantile

PRESETS_DIR: Final = Path(__file__).resolve().parent / "presets"
PRESET_NAMES: Final = ("demo", "ingress-nginx", "istio")

#: The label that tags each sub-expression's series in the combined query.
QUERY_TAG_LABEL: Final = "decision_query"
#: Placeholders a template may use (``${name}``).
PLACEHOLDERS: Final = frozenset(
    {
        "namespace",
        "rollout",
        "service",
        "canary_hash",
        "stable_hash",
        "canary",
        "stable",
        "versions",
        "range",
    }
)
_LABEL_NAME: Final = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_MAX_CACHED_STARTS: Final = 4096
_T = TypeVar("_T")

ErrorKind = Literal["unreachable", "timeout", "http_error", "malformed", "bad_template"]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = (
    "unreachable",
    "timeout",
    "http_error",
    "malformed",
    "bad_template",
)


class TemplateError(ValueError):
    """A templates file (or preset) that cannot be used; the message says why."""


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer usably: the decision is a 503, never a guess."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"Prometheus {kind.replace('_', ' ')}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail


# --------------------------------------------------------------------------- templates


def _placeholders(template: str) -> set[str]:
    return set(Template(template).get_identifiers())


class QueryTemplates(BaseModel):
    """The PromQL templates (a preset or a user's file); see ``docs/queries.md``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    version_label: str = Field(pattern=_LABEL_NAME, description="Label telling versions apart.")
    canary: str = Field(min_length=1, description="The canary's value of version_label.")
    stable: str = Field(min_length=1, description="The stable version's value.")
    status_label: str = Field(pattern=_LABEL_NAME, description="Label holding the status code.")
    error_status: str = Field("5..", min_length=1, description="Regex of error status codes.")
    latency_unit: Literal["seconds", "milliseconds"] = "seconds"
    requests: str = Field(description="Request counts by version_label and status_label.")
    latency_buckets: str = Field(description="Latency bucket counts by version_label and le.")
    canary_start: str = Field(description="Unix time (s) at which the canary's life starts.")

    @field_validator("error_status")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"error_status is not a regular expression: {exc}") from exc
        return value

    @field_validator("canary", "stable", "requests", "latency_buckets", "canary_start")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        if not Template(value).is_valid():
            raise ValueError("malformed ${...} placeholder (write $$ for a literal $)")
        unknown = _placeholders(value) - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}"
            )
        return value

    def model_post_init(self, __context: Any) -> None:
        for name in ("requests", "latency_buckets"):
            if "range" not in _placeholders(getattr(self, name)):
                raise ValueError(f"{name}: must use ${{range}} (the span being measured)")
        for name in ("canary", "stable", "canary_start"):
            used = _placeholders(getattr(self, name)) & {"range", "versions", "canary", "stable"}
            if name != "canary_start" and used:
                raise ValueError(f"{name}: may only use the request's values, not {sorted(used)}")
            if name == "canary_start" and used & {"range", "versions"}:
                raise ValueError("canary_start: cannot use ${range} or ${versions}")


def load_templates(preset: str, templates_file: Path | None = None) -> QueryTemplates:
    """The user's templates file if given, else the named preset."""
    path = templates_file if templates_file is not None else PRESETS_DIR / f"{preset}.yaml"
    if templates_file is None and preset not in PRESET_NAMES:
        raise TemplateError(f"unknown query preset {preset!r}; presets: {', '.join(PRESET_NAMES)}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TemplateError(f"{path}: a templates file must be a YAML mapping")
    try:
        return QueryTemplates.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise TemplateError(f"{path}: {problems}") from None


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class Target:
    """Which canary is measured (request values, already validated)."""

    namespace: str
    rollout: str
    canary_hash: str
    stable_hash: str
    service: str | None = None

    def values(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "rollout": self.rollout,
            "service": self.service or self.rollout,
            "canary_hash": self.canary_hash,
            "stable_hash": self.stable_hash,
        }


def _regex_literal(value: str) -> str:
    """``value`` as an RE2 literal inside a double-quoted PromQL string.

    Validated label values hold only letters, digits, ``-``, ``_`` and ``.``; of those only
    ``.`` means something in a regex. Its escape is doubled for the PromQL string literal.
    """
    return value.replace(".", "\\\\.")


@dataclass(frozen=True, slots=True)
class RenderedQueries:
    """The PromQL for one target: version values, the start query, the span query."""

    canary: str
    stable: str
    canary_start: str
    _values: Mapping[str, str]
    _templates: QueryTemplates

    def spans(self, ranges: Mapping[str, str]) -> str:
        """One query for every span in ``ranges`` (span name → PromQL range such as ``30s``)."""
        parts = []
        for span, promql_range in ranges.items():
            values = {**self._values, "range": promql_range}
            for name in ("requests", "latency_buckets"):
                expr = Template(getattr(self._templates, name)).substitute(values)
                parts.append(f'label_replace({expr}, "{QUERY_TAG_LABEL}", "{span}:{name}", "", "")')
        return " or ".join(parts)


def render(templates: QueryTemplates, target: Target) -> RenderedQueries:
    """Substitute the target's values into the templates (raises TemplateError)."""
    values = target.values()
    canary = Template(templates.canary).substitute(values)
    stable = Template(templates.stable).substitute(values)
    if canary == stable:
        raise TemplateError(
            f"the canary and the stable version both select {templates.version_label}={canary!r}"
        )
    values |= {
        "canary": canary,
        "stable": stable,
        "versions": f"{_regex_literal(canary)}|{_regex_literal(stable)}",
    }
    start = Template(templates.canary_start).substitute(values)
    return RenderedQueries(canary, stable, start, values, templates)


# --------------------------------------------------------------------------- parsing


def _malformed(series: Any) -> PrometheusUnavailable:
    return PrometheusUnavailable(
        "malformed", f"unexpected series in the answer: {str(series)[:200]}"
    )


def _sample_value(series: Any) -> tuple[dict[str, str], float]:
    """Labels and value of one instant-vector series; PrometheusUnavailable if malformed."""
    try:
        labels = series["metric"]
        raw = series["value"][1]
        if not isinstance(labels, dict) or not isinstance(raw, str):
            raise TypeError("unexpected types")
        return labels, float(raw)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _malformed(series) from exc


def _result_list(result: Any) -> list[Any]:
    if not isinstance(result, list):
        raise PrometheusUnavailable(
            "malformed", f"expected an instant vector, got {str(result)[:200]}"
        )
    return result


def parse_start(result: Any) -> float | None:
    """The canary's start (unix seconds) from the ``canary_start`` answer; None if absent."""
    values = [value for _, value in map(_sample_value, _result_list(result))]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


@dataclass(slots=True)
class _Accumulator:
    requests: float = 0.0
    errors: float = 0.0
    request_series: int = 0
    nan: bool = False
    buckets: dict[float, float] | None = None
    buckets_nan: bool = False


def _quantiles(buckets: dict[float, float], scale: float) -> tuple[float | None, float | None]:
    bounds = sorted(b for b in buckets if math.isfinite(b))
    if math.inf not in buckets or not bounds:
        return None, None
    # increase() extrapolates each bucket on its own, so counts can dip; Prometheus'
    # histogram_quantile makes them monotonic the same way.
    cumulative = list(accumulate([buckets[b] for b in bounds] + [buckets[math.inf]], max))
    p50 = histogram_quantile(0.50, bounds, cumulative)
    p95 = histogram_quantile(0.95, bounds, cumulative)
    return (
        p50 * scale if p50 is not None else None,
        p95 * scale if p95 is not None else None,
    )


def _template_error(templates: QueryTemplates, labels: dict[str, str]) -> PrometheusUnavailable:
    """Why a series does not fit the template contract (for the slow path of parse_spans)."""
    tag = labels.get(QUERY_TAG_LABEL, "")
    name = tag.partition(":")[2]
    if name not in {"requests", "latency_buckets"}:
        return PrometheusUnavailable("malformed", f"series with unknown tag {tag!r}")
    if templates.version_label not in labels:
        return PrometheusUnavailable(
            "bad_template",
            f"{name} returned a series without the '{templates.version_label}' label: "
            "keep it in 'sum by (...)'",
        )
    if name == "requests":
        return PrometheusUnavailable(
            "bad_template",
            f"requests returned a series without the '{templates.status_label}' label",
        )
    return PrometheusUnavailable(
        "bad_template", "latency_buckets returned a series without a numeric 'le'"
    )


def parse_spans(
    result: Any, templates: QueryTemplates, canary: str, stable: str, spans: Iterable[str]
) -> dict[str, dict[str, VersionMetrics]]:
    """``{span: {"canary": VersionMetrics, "stable": VersionMetrics}}`` from the span query.

    A count Prometheus did not return is NaN and a latency ``None``: the feature module then
    raises :class:`MissingMetricError` and the service holds. Nothing is filled in.
    """
    is_error = re.compile(templates.error_status).fullmatch
    version_label, status_label = templates.version_label, templates.status_label
    spans = list(spans)
    acc = {(span, track): _Accumulator() for span in spans for track in ("canary", "stable")}
    # (tag, version) -> (slot, is requests): one dict lookup per series on the hot path
    slots = {
        (f"{span}:{name}", version): (acc[span, track], name == "requests")
        for span in spans
        for name in ("requests", "latency_buckets")
        for version, track in ((canary, "canary"), (stable, "stable"))
    }
    for series in _result_list(result):
        labels, value = _sample_value(series)
        entry = slots.get((labels.get(QUERY_TAG_LABEL, ""), labels.get(version_label, "")))
        if entry is None:
            if version_label in labels and labels.get(QUERY_TAG_LABEL, "").partition(":")[2] in {
                "requests",
                "latency_buckets",
            }:
                continue  # another version matched by a user's wider selector
            raise _template_error(templates, labels)
        slot, is_requests = entry
        if is_requests:
            status = labels.get(status_label)
            if status is None:
                raise _template_error(templates, labels)
            slot.request_series += 1
            if value != value:  # NaN
                slot.nan = True
            slot.requests += value
            if is_error(status):
                slot.errors += value
        else:
            try:
                bound = float(labels["le"])
            except (KeyError, ValueError):
                raise _template_error(templates, labels) from None
            if bound != bound:
                raise _template_error(templates, labels)
            if slot.buckets is None:
                slot.buckets = {}
            if value != value:
                slot.buckets_nan = True
            slot.buckets[bound] = slot.buckets.get(bound, 0.0) + value
    scale = 1000.0 if templates.latency_unit == "seconds" else 1.0
    out: dict[str, dict[str, VersionMetrics]] = {}
    for (span, track), slot in acc.items():
        counted = slot.request_series > 0 and not slot.nan
        p50, p95 = (
            _quantiles(slot.buckets, scale)
            if slot.buckets is not None and not slot.buckets_nan
            else (None, None)
        )
        out.setdefault(span, {})[track] = VersionMetrics(
            requests=slot.requests if counted else math.nan,
            errors=slot.errors if counted else math.nan,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
        )
    return out


# --------------------------------------------------------------------------- the source


class _FormPostSession(requests.Session):
    """Sends a POST's query parameters as a form body, not in the URL.

    ``PrometheusConnect`` passes the query as URL parameters even with ``method="POST"``;
    Prometheus accepts the same parameters form-encoded in the body, which spares requests and
    urllib3 their per-character URL handling of a long query (and any URL length limit).
    """

    def request(  # type: ignore[override]
        self, method: str, url: str, params: Any = None, data: Any = None, **kwargs: Any
    ) -> requests.Response:
        if method == "POST" and params and data is None:
            params, data = None, params
        return super().request(method, url, params=params, data=data, **kwargs)


def prometheus_client(url: str, timeout_seconds: float, connections: int) -> PrometheusConnect:
    """One client and one HTTP session for the process: pooled keep-alive, no retries.

    Retries stay off so a slow or failing Prometheus costs at most one timeout (Argo retries
    the measurement); proxies and netrc from the environment are not consulted per request;
    answers come uncompressed (Prometheus is near, and gzip costs CPU on both sides).
    """
    session = _FormPostSession()
    session.trust_env = False
    session.headers["Accept-Encoding"] = "identity"
    client = PrometheusConnect(
        url=url,
        session=session,
        retry=Retry(total=0),
        timeout=math.ceil(timeout_seconds),
        method="POST",
    )
    adapter = HTTPAdapter(
        pool_connections=1, pool_maxsize=connections, max_retries=Retry(total=0), pool_block=False
    )
    session.mount(url, adapter)
    return client


class PrometheusSource:
    """Builds a :class:`MetricsSnapshot` for a target from Prometheus.

    The client is synchronous, so its calls run in a dedicated thread pool, never on the event
    loop: :meth:`run` hands a whole blocking job (the queries of one decision, and whatever the
    caller computes from them) to one worker thread, bounded by a deadline. Each query also
    has a timeout in the HTTP client and at Prometheus (``timeout=``). A small pool (see
    ``app.QUERY_THREADS``) keeps the threads from fighting over the GIL.
    """

    def __init__(
        self,
        client: PrometheusConnect,
        templates: QueryTemplates,
        *,
        window: str,
        window_seconds: float,
        timeout_seconds: float,
        threads: int = 8,
        on_query: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self.templates = templates
        self._window = window
        self._window_seconds = window_seconds
        self._timeout = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="promql")
        self._starts: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._starts_lock = threading.Lock()
        self._on_query = on_query

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # -- running blocking work

    async def run(self, job: Callable[[], _T], queries: int = 2) -> _T:
        """Run ``job`` in the pool; PrometheusUnavailable past ``queries`` timeouts (+0.5 s).

        The deadline is a backstop: each query already times out on its own.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, job)
        deadline = self._timeout * queries + 0.5
        try:
            return await asyncio.wait_for(future, timeout=deadline)
        except TimeoutError as exc:
            raise PrometheusUnavailable("timeout", f"no answer within {deadline:g}s") from exc

    # -- querying (blocking: call from the pool)

    def query_blocking(self, promql: str, at: float | None = None) -> Any:
        """One instant query's ``data.result`` (raises PrometheusUnavailable)."""
        at = time.time() if at is None else at
        params = {"time": f"{at:.3f}", "timeout": f"{self._timeout:g}s"}
        started = time.perf_counter()
        try:
            # requests takes float seconds; the client's annotation says int.
            return self._client.custom_query(promql, params=params, timeout=self._timeout)  # type: ignore[arg-type]
        except requests.Timeout as exc:
            raise PrometheusUnavailable("timeout", f"no answer within {self._timeout:g}s") from exc
        except requests.exceptions.InvalidJSONError as exc:
            raise PrometheusUnavailable("malformed", f"not JSON: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise PrometheusUnavailable("unreachable", _short(exc)) from exc
        except PrometheusApiClientException as exc:
            raise PrometheusUnavailable("http_error", _short(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:  # not JSON, or no data.result
            raise PrometheusUnavailable("malformed", f"unexpected answer: {_short(exc)}") from exc
        finally:
            if self._on_query is not None:
                self._on_query(time.perf_counter() - started)

    def canary_start_blocking(self, target: Target, queries: RenderedQueries, at: float) -> float:
        """When the canary's life began (cached per canary: it never changes)."""
        key = (target.namespace, target.rollout, target.service or "", target.canary_hash)
        with self._starts_lock:
            cached = self._starts.get(key)
            if cached is not None:
                self._starts.move_to_end(key)
                return cached
        start = parse_start(self.query_blocking(queries.canary_start, at))
        if start is None:
            raise MissingMetricError("canary_start", "the canary has no series in Prometheus yet")
        with self._starts_lock:
            self._starts[key] = start
            if len(self._starts) > _MAX_CACHED_STARTS:
                self._starts.popitem(last=False)
        return start

    def snapshot_blocking(
        self, target: Target, step_weight: float, measurements_at_step: int
    ) -> MetricsSnapshot:
        """The metrics of one decision (raises PrometheusUnavailable or MissingMetricError).

        One query in the steady state; two for a canary this process has not seen yet (its
        start time first).
        """
        try:
            queries = render(self.templates, target)
        except TemplateError as exc:
            raise PrometheusUnavailable("bad_template", str(exc)) from exc
        now = time.time()
        start = self.canary_start_blocking(target, queries, now)
        life_seconds = max(math.ceil(now - start), math.ceil(self._window_seconds))
        ranges = {"window": self._window, "life": f"{life_seconds}s"}
        result = self.query_blocking(queries.spans(ranges), now)
        spans = parse_spans(result, self.templates, queries.canary, queries.stable, ranges)
        return MetricsSnapshot(
            step_weight=step_weight,
            measurements_at_step=measurements_at_step,
            canary=spans["window"]["canary"],
            stable=spans["window"]["stable"],
            canary_cumulative=spans["life"]["canary"],
            stable_cumulative=spans["life"]["stable"],
        )

    # -- async conveniences

    async def snapshot(
        self, target: Target, step_weight: float, measurements_at_step: int
    ) -> MetricsSnapshot:
        return await self.run(
            lambda: self.snapshot_blocking(target, step_weight, measurements_at_step)
        )

    async def query(self, promql: str) -> Any:
        return await self.run(lambda: self.query_blocking(promql), queries=1)

    async def ready(self) -> None:
        """Raise PrometheusUnavailable unless Prometheus answers a trivial query."""
        await self.query("vector(1)")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
