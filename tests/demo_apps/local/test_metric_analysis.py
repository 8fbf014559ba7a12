"""A web metric's life as the driver implements Argo's: parsed, measured over HTTP, assessed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fake_decision import FakeDecisionService, Reply, decision, serve

from demo_apps.local.analysis import MetricResult, assess
from demo_apps.local.conditions import Phase
from demo_apps.local.manifests import ManifestError
from demo_apps.local.web import InvalidMetric, Measurement, WebMetric, measure


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
        ([E] * 9, {"count": 2, "inconclusiveLimit": 2}, "Error"),  # errors are not counted
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


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"count": 1, "consecutiveSuccessLimit": 2, "inconclusiveLimit": 1},
            r"count \(1\) must be >= failureLimit \+ consecutiveSuccessLimit \(0 \+ 2\)",
        ),
        ({"count": 2, "failureLimit": 2, "inconclusiveLimit": 2}, r"count \(2\) must be"),
        ({"count": 3}, "count must be >= inconclusiveLimit"),
        ({"count": 3, "inconclusiveLimit": 3, "interval": None}, "interval must be specified"),
        ({"count": 0, "inconclusiveLimit": 0}, "runs indefinitely"),  # 0 means unset
        ({"count": None, "inconclusiveLimit": 0}, "runs indefinitely"),
        ({"consecutiveSuccessLimit": -1}, "consecutiveSuccessLimit must be >= 0"),
        ({"failureLimit": -2}, "failureLimit must be >= 0, or -1"),
        ({"failureLimit": -1, "consecutiveSuccessLimit": 0}, "cannot both be disabled"),
        ({"inconclusiveLimit": -1}, "inconclusiveLimit must be >= 0"),
        ({"consecutiveErrorLimit": -1}, "consecutiveErrorLimit must be >= 0"),
        (
            {"count": 2, "failureLimit": -1, "consecutiveSuccessLimit": 3, "inconclusiveLimit": 2},
            "count must be >= consecutiveSuccessLimit",
        ),
    ],
)
def test_metrics_argo_rejects_are_refused(fields: dict[str, Any], message: str) -> None:
    """ValidateMetric (utils/analysis/factory.go) and the step analysis' EffectiveCount."""
    with pytest.raises(InvalidMetric, match=message):
        _metric(**fields)


def test_count_zero_without_interval_is_one_measurement() -> None:
    metric = _metric(count=0, interval=None, inconclusiveLimit=0)
    assert metric.count == 1


def test_timeout_seconds_zero_is_the_default_ten() -> None:
    web = {"url": "http://x/v1/decide", "method": "POST", "timeoutSeconds": 0}
    assert _metric(provider={"web": web}).timeout_seconds == 10.0
    assert _metric().timeout_seconds == 10.0


def test_only_the_last_ten_measurements_are_kept() -> None:
    result = _result(*([E] * 3 + [H] * 12))
    assert len(result.measurements) == 10
    assert (result.count, result.error, result.inconclusive) == (12, 3, 12)
    kept = MetricResult(history_limit=2)
    for phase in (H, H, P):
        kept.record(Measurement(phase, None, "", 0.0, 0.0))
    assert [m.phase for m in kept.measurements] == [H, P]


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


def _measure_once(reply: Reply, **web: Any) -> Measurement:
    fake = FakeDecisionService([reply])
    spec = {"url": "http://placeholder/v1/decide", "method": "POST", **web}
    metric = _metric(provider={"web": spec})
    with serve(fake), httpx.Client() as client:
        return measure(
            metric, client, clock=time.monotonic, host_overrides={"placeholder": fake.url}
        )


def test_the_timeout_covers_the_whole_answer_not_each_read() -> None:
    """Go's Client.Timeout bounds the whole exchange; httpx's timeouts are per read, and an
    answer trickling one byte every 0.2 s would never trip a 1 s read timeout."""
    started = time.monotonic()
    trickle = Reply(200, {"decision": "promote", "padding": "x" * 20}, trickle=0.2)
    measurement = _measure_once(trickle, timeoutSeconds=1)
    assert measurement.phase == "Error"
    assert "timed out after 1 s" in measurement.message
    assert time.monotonic() - started < 3


def test_a_non_json_body_is_successful_without_evaluating_the_conditions() -> None:
    measurement = _measure_once(Reply(200, b"<html>maintenance</html>"))
    assert measurement.phase == "Successful"
    assert measurement.value == "<html>maintenance</html>"
    assert "not JSON" in measurement.message


def test_a_body_with_get_is_an_error() -> None:
    measurement = _measure_once(decision("promote"), method="GET", jsonBody={"a": "b"})
    assert measurement.phase == "Error"
    assert "only be used with POST or PUT" in measurement.message
