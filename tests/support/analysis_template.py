"""What an analysis template (rollouts/*.yaml, the chart's ClusterAnalysisTemplate) must send
the decision service: the five values a Rollout always passes, and every per-request override
the API accepts (``DecideRequestV1``'s optional fields, read from the model itself) as an arg
with an empty default, which the service takes as "not given".
"""

from __future__ import annotations

import re
from typing import Any

from decision_service.schemas import EXAMPLE_REQUEST, DecideRequestV1

#: The jsonBody entries every request carries.
REQUIRED_BODY = {
    "namespace": "{{args.namespace}}",
    "rollout": "{{args.rollout}}",
    "canary_hash": "{{args.canary-hash}}",
    "stable_hash": "{{args.stable-hash}}",
    "step_weight": "{{args.step-weight}}",
    # the template's own count (its measurements per step), for the shield's last look
    "count": "{{args.count}}",
}
_PLACEHOLDER = re.compile(r"\{\{args\.([\w-]+)\}\}")


def override_fields() -> list[str]:
    """The request's optional fields: the overrides a Rollout may set."""
    return [
        name
        for name, f in DecideRequestV1.model_fields.items()
        if not f.is_required() and name not in REQUIRED_BODY
    ]


def arg_name(field: str) -> str:
    """The template arg that carries a body field (``slo_latency_ms`` -> ``slo-latency-ms``)."""
    return field.replace("_", "-")


def _body(spec: dict[str, Any]) -> dict[str, str]:
    (metric,) = spec["metrics"]
    body: dict[str, str] = metric["provider"]["web"]["jsonBody"]
    return body


def _substitute(body: dict[str, str], args: dict[str, str]) -> dict[str, str]:
    """The body Argo sends once it has put the args' values in its placeholders."""
    return {k: _PLACEHOLDER.sub(lambda m: args[m.group(1)], v) for k, v in body.items()}


def assert_forwards_every_override(spec: dict[str, Any]) -> None:
    """The template's jsonBody is the required entries plus one per override, each from its
    own arg with an empty default; and what Argo sends from it is a valid request, with the
    defaults (no override given) and with each override set by a Rollout (each arrives)."""
    overrides = override_fields()
    assert len(overrides) == 9, overrides
    body = _body(spec)
    assert body == REQUIRED_BODY | {f: f"{{{{args.{arg_name(f)}}}}}" for f in overrides}
    args = {a["name"]: a for a in spec["args"]}
    for field in overrides:
        assert args[arg_name(field)] == {"name": arg_name(field), "value": ""}, field

    rollout_args = {arg_name(k): str(v) for k, v in EXAMPLE_REQUEST.items()}
    values = {name: a["value"] for name, a in args.items() if "value" in a}
    values |= {arg_name(k): rollout_args[arg_name(k)] for k in REQUIRED_BODY}
    defaults = DecideRequestV1.model_validate(_substitute(body, values))
    assert all(getattr(defaults, field) is None for field in overrides)

    values |= {arg_name(f): rollout_args[arg_name(f)] for f in overrides}
    given = DecideRequestV1.model_validate(_substitute(body, values))
    for field in overrides:
        value = getattr(given, field)
        expected = EXAMPLE_REQUEST[field]
        assert value == (expected if field == "service" else float(str(expected))), field
