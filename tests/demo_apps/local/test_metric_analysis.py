"""A web metric's life as the driver implements Argo's: parsed, measured over HTTP, assessed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fake_decision import FakeDecisionService, Reply, serve

from demo_apps.local.analysis import MetricResult, assess
from demo_apps.local.conditions import Phase
from demo_apps.local.manifests import ManifestError
from demo_apps.local.web import Measurement, WebMetric, measure


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
