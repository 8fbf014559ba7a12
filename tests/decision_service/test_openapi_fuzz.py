"""Generated inputs never make a 500: schemathesis over the OpenAPI schema, and hypothesis over
arbitrary JSON bodies (bounded: a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from decision_service.app import create_app
from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus
from tests.support.service import settings_for


@pytest.fixture(scope="module")
def running_app(models: dict[str, Path]) -> Iterator[tuple[FastAPI, TestClient]]:
    """The app with its lifespan run (model loaded, Prometheus client up), on a fake Prometheus."""
    fake = FakePrometheus(demo_prometheus(Traffic(300, 1), Traffic(1200, 4)))
    app = create_app(settings_for(models["promote"], fake.url, api_token=TOKEN))
    with TestClient(app) as client:
        yield app, client
    fake.close()


TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
schema = schemathesis.pytest.from_fixture("openapi_schema")


def _started(app: FastAPI) -> Any:
    """The already started app, as an ASGI app whose lifespan events are no-ops.

    schemathesis opens a test client (so a lifespan) per call; the app under test keeps the
    one lifespan ``running_app`` started.
    """

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await app(scope, receive, send)

    return asgi


@pytest.fixture(scope="module")
def openapi_schema(running_app: tuple[FastAPI, TestClient]) -> Any:
    app, _ = running_app
    return schemathesis.openapi.from_asgi("/openapi.json", _started(app))


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_api_conforms_to_its_schema_and_never_fails(case: Any) -> None:
    """Every check but "schema-valid data is accepted": a numeric string's range and the two
    hashes being different cannot be said in JSON Schema, so such bodies are rightly a 422."""
    case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = st.sampled_from(
    [
        "namespace",
        "rollout",
        "canary_hash",
        "stable_hash",
        "step_weight",
        "service",
        "slo_latency_ms",
        "hard_error_rate",
        "x",
    ]
)


@given(body=st.dictionaries(FIELDS, JSON_VALUES, max_size=9) | JSON_VALUES)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_arbitrary_json_bodies_are_answered_200_or_422(
    running_app: tuple[FastAPI, TestClient], body: Any
) -> None:
    _, client = running_app
    response = client.post("/v1/decide", json=body, headers=AUTH)
    assert response.status_code in {200, 422}, response.text
    assert "error" in response.json() or "decision" in response.json()


@schema.include(method="POST", path="/v1/decide").parametrize()
@settings(
    phases=[Phase.explicit],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_schemas_own_examples_are_accepted(case: Any) -> None:
    """The schema's examples are valid requests: schemathesis' "schema-valid data is
    accepted" check (ST202) on them (equal example hashes were a 422)."""
    case.call_and_validate(headers=AUTH, checks=[positive_data_acceptance])
