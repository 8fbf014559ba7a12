"""Argo's ``web`` metric provider: one AnalysisTemplate metric, and one measurement of it.

Part of the local Argo semantics (the overview is in :mod:`demo_apps.local.manifests`), as Argo
Rollouts v1.9.1 does it (metricproviders/webmetric, utils/analysis ``ValidateMetric``).

* **The metric**: ``method`` (GET default; POST/PUT), ``url``, ``headers``, ``jsonBody`` or
  ``body``, ``timeoutSeconds`` (0 or unset: 10), ``jsonPath`` (default ``{$}``), the conditions
  (:mod:`demo_apps.local.conditions`), ``interval``/``initialDelay`` (Go durations), ``count``
  and the limits :mod:`demo_apps.local.analysis` assesses (``consecutiveErrorLimit`` defaults to
  4). Other providers and web fields are refused when the metric is parsed.
* **Validation**, Argo's ``ValidateMetric`` on the metric with its args substituted (upstream a
  violation makes the AnalysisRun an Error, "Analysis spec invalid", and the rollout aborts; a
  metric that runs indefinitely makes the Rollout's spec invalid): ``count`` 0 means unset; no
  ``count`` and no ``interval`` is one measurement, no ``count`` with an ``interval`` runs
  indefinitely (refused); ``count`` ≥ ``failureLimit`` + ``consecutiveSuccessLimit`` when both
  are ≥ 0 (≥ ``consecutiveSuccessLimit`` when ``failureLimit`` is -1); ``count`` ≥
  ``inconclusiveLimit``; an ``interval`` when ``count`` > 1; no negative limits (``failureLimit``
  may be -1, not both it and ``consecutiveSuccessLimit`` disabled). Refused here with
  :class:`InvalidMetric`, whose message is Argo's.
* **A measurement**: a non-2xx status, a timeout, an unreadable body, a missing path or a
  condition that cannot be evaluated is an **Error** measurement; otherwise the conditions give
  its phase. A 2xx body that is not JSON is **Successful** with the raw text as its value,
  *without evaluating the conditions*: v1.9.1's ``parseResponse`` returns it so (later Argo
  versions evaluate the conditions on the string, where ``result.decision`` is an Error). The
  timeout covers the whole exchange, as Go's ``http.Client.Timeout`` does (httpx's timeouts are
  per phase, so a slowly trickling answer would outlive them): the call runs under a total
  deadline. Secrets (the resolved ``secretKeyRef`` args) are redacted from messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from demo_apps.local.conditions import (
    Condition,
    ConditionError,
    Phase,
    evaluate_conditions,
    json_path,
)
from demo_apps.local.manifests import ManifestError, Obj, parse_duration

#: Argo's ``DefaultConsecutiveErrorLimit``.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
#: The web provider's default ``timeoutSeconds``.
DEFAULT_WEB_TIMEOUT_SECONDS = 10.0


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
        interval_seconds = parse_duration(interval) if interval not in (None, "") else None
        count = _int_or_string(metric.get("count"), "count", None) or None  # 0 means unset
        failure_limit = _int_or_string(metric.get("failureLimit"), "failureLimit", 0) or 0
        inconclusive_limit = (
            _int_or_string(metric.get("inconclusiveLimit"), "inconclusiveLimit", 0) or 0
        )
        error_limit = _int_or_string(
            metric.get("consecutiveErrorLimit"),
            "consecutiveErrorLimit",
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        )
        success_limit = (
            _int_or_string(metric.get("consecutiveSuccessLimit"), "consecutiveSuccessLimit", 0) or 0
        )
        _validate(
            name,
            count=count,
            interval=interval_seconds,
            failure_limit=failure_limit,
            inconclusive_limit=inconclusive_limit,
            error_limit=error_limit,
            success_limit=success_limit,
        )
        timeout = float(web.get("timeoutSeconds") or 0)
        return cls(
            name=name,
            url=web["url"],
            method=method,
            headers=tuple((h["key"], str(h["value"])) for h in web.get("headers", [])),
            json_body=web.get("jsonBody"),
            body=web.get("body"),
            json_path=json_path(web.get("jsonPath", "{$}")),
            # Argo: timeoutSeconds <= 0 is the default, 10 s (NewWebMetricHttpClient).
            timeout_seconds=timeout if timeout > 0 else DEFAULT_WEB_TIMEOUT_SECONDS,
            success=Condition.parse(metric["successCondition"])
            if metric.get("successCondition")
            else None,
            failure=Condition.parse(metric["failureCondition"])
            if metric.get("failureCondition")
            else None,
            interval_seconds=interval_seconds,
            initial_delay_seconds=parse_duration(metric.get("initialDelay") or "0"),
            count=count or 1,  # EffectiveCount: no count and no interval is one measurement
            failure_limit=failure_limit,
            inconclusive_limit=inconclusive_limit,
            consecutive_error_limit=error_limit or 0,
            consecutive_success_limit=success_limit,
        )


class InvalidMetric(ManifestError):
    """A metric Argo rejects (``ValidateMetric``; see the module docstring)."""


def _validate(
    name: str,
    *,
    count: int | None,
    interval: float | None,
    failure_limit: int,
    inconclusive_limit: int,
    error_limit: int | None,
    success_limit: int,
) -> None:
    """Argo's ``ValidateMetric`` and ``EffectiveCount`` checks, with Argo's messages."""

    def invalid(rule: str) -> InvalidMetric:
        return InvalidMetric(
            f"metric '{name}': Analysis spec invalid: {rule} (Argo Rollouts: the AnalysisRun is "
            "an Error and the rollout aborts)"
        )

    if success_limit < 0:
        raise invalid("consecutiveSuccessLimit must be >= 0")
    if failure_limit < -1:
        raise invalid("failureLimit must be >= 0, or -1 to be disabled")
    if success_limit == 0 and failure_limit == -1:
        raise invalid("failureLimit and consecutiveSuccessLimit cannot both be disabled")
    if inconclusive_limit < 0:
        raise invalid("inconclusiveLimit must be >= 0")
    if error_limit is not None and error_limit < 0:
        raise invalid("consecutiveErrorLimit must be >= 0")
    if count is not None:
        if failure_limit >= 0 and count < failure_limit + success_limit:
            raise invalid(
                f"count ({count}) must be >= failureLimit + consecutiveSuccessLimit "
                f"({failure_limit} + {success_limit}) if both >= 0"
            )
        if failure_limit < 0 and count < success_limit:
            raise invalid("count must be >= consecutiveSuccessLimit")
        if count < inconclusive_limit:
            raise invalid("count must be >= inconclusiveLimit")
    if count is not None and count > 1 and interval is None:
        raise invalid("interval must be specified when count > 1")
    if count is None and interval is not None:
        raise InvalidMetric(
            f"metric '{name}' runs indefinitely (an interval and no count, or count 0): Argo "
            "Rollouts marks the Rollout's spec invalid for a step analysis like this"
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

    if metric.method == "GET" and (metric.json_body is not None or metric.body):
        return error("Body/JSONBody can only be used with POST or PUT WebMetric Method types")
    try:
        response = _request_within(
            client,
            metric.timeout_seconds,
            metric.method,
            url,
            headers=dict(metric.headers),
            json=metric.json_body if metric.json_body is not None else None,
            content=metric.body.encode() if metric.body is not None else None,
        )
    except (httpx.TimeoutException, _DeadlineExceeded):
        return error(
            f"timed out after {metric.timeout_seconds:g} s (Client.Timeout exceeded): {metric.url}"
        )
    except httpx.HTTPError as exc:
        return error(f"request to {metric.url} failed: {exc}")
    if not 200 <= response.status_code < 300:
        return error(f"received non 2xx response code: {response.status_code} {response.text}")
    try:
        value: Any = response.json()
    except ValueError:
        # Argo v1.9.1 (parseResponse): a body that is not JSON is the value, Successful, and the
        # conditions are not evaluated.
        return Measurement(
            "Successful",
            response.text,
            "the body is not JSON: Successful without evaluating the conditions (Argo v1.9.1)",
            started,
            clock(),
        )
    for key in metric.json_path:
        if not isinstance(value, dict) or key not in value:
            return error(f"jsonPath {{$.{'.'.join(metric.json_path)}}}: '{key}' not found")
        value = value[key]
    try:
        phase = evaluate_conditions(metric.success, metric.failure, value)
    except ConditionError as exc:
        return error(str(exc))
    return Measurement(phase, value, "", started, clock())


class _DeadlineExceeded(Exception):
    """The whole request took longer than the metric's timeout."""


def _request_within(
    client: httpx.Client, seconds: float, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """``client.request`` (body read in full) under a total deadline, as Go's Client.Timeout.

    httpx applies its timeout to each phase (connect, each read, write, pool), so an answer that
    trickles in one byte per second never times out there. The request runs in a thread; past
    the deadline it is abandoned (its own per-phase timeouts end it) and this raises.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["response"] = client.request(method, url, timeout=seconds, **kwargs)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="web-metric", daemon=True).start()
    if not done.wait(seconds):
        raise _DeadlineExceeded(url)
    if "error" in outcome:
        raise outcome["error"]
    response: httpx.Response = outcome["response"]
    return response
