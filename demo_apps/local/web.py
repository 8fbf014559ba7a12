"""Argo's ``web`` metric provider: one AnalysisTemplate metric, and one measurement of it.

Part of the local Argo semantics (the overview is in :mod:`demo_apps.local.manifests`).

* **The metric**: ``method`` (GET default; POST/PUT), ``url``, ``headers``, ``jsonBody`` or
  ``body``, ``timeoutSeconds`` (default 10), ``jsonPath`` (default ``{$}``), the conditions
  (:mod:`demo_apps.local.conditions`), ``interval``/``initialDelay`` (Go durations),
  ``count`` (no ``interval`` and no ``count``: one measurement, as in Argo) and the limits
  :mod:`demo_apps.local.analysis` assesses (``consecutiveErrorLimit`` defaults to 4). Other
  providers and web fields are refused when the metric is parsed.
* **A measurement**: a non-2xx status, a timeout, an unreadable body, a missing path or a
  condition that cannot be evaluated is an **Error** measurement; otherwise the conditions
  give its phase. Secrets (the resolved ``secretKeyRef`` args) are redacted from messages.
"""

from __future__ import annotations

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
