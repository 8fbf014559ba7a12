"""Argo's manifest semantics as the driver implements them: durations, args, substitution."""

from __future__ import annotations

import dataclasses

import pytest

from demo_apps.local.manifests import (
    SECRET_PLACEHOLDER,
    ArgContext,
    ArgResolutionError,
    ManifestError,
    parse_duration,
    resolve_args,
    resolve_secret_args,
    secret_args,
    substitute,
)

CONTEXT = ArgContext(
    rollout_name="demo-app",
    namespace="ns",
    stable_hash="s1",
    canary_hash="c1",
    canary_weight=20,
    secrets={("tok", "token"): "T"},
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("1.5s", 1.5), ("500ms", 0.5), ("2h", 7200), ("0", 0)],
)
def test_durations_are_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "30 s", "s", "1m x", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="not a duration"):
        parse_duration(text)


def test_args_merge_step_over_template_and_resolve_value_from() -> None:
    template = [
        {"name": "a"},
        {"name": "interval", "value": "30s"},
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
    ]
    step = [
        {"name": "a", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "interval", "value": "1s"},
        {"name": "extra", "value": "x"},  # MergeArgs ignores a step arg the template lacks
    ]
    # Secrets are read when the analysis runs; until then they hold Argo's placeholder.
    assert resolve_args(template, step, CONTEXT) == {
        "a": "c1",
        "interval": "1s",
        "token": SECRET_PLACEHOLDER,
    }
    assert resolve_secret_args(secret_args(template), CONTEXT) == {"token": "T"}
    with pytest.raises(ManifestError, match="args without a value: a"):
        resolve_args(template, [], CONTEXT)
    with pytest.raises(ManifestError, match="both value and valueFrom"):
        resolve_args(
            [{"name": "a", "value": "1", "valueFrom": {"podTemplateHashValue": "Stable"}}],
            [],
            CONTEXT,
        )
    with pytest.raises(ManifestError, match="'intervall'"):
        resolve_args(template, step, CONTEXT, {"intervall": "1s"})  # the driver's own typo


def test_a_step_arg_cannot_read_a_secret() -> None:
    secret = {"secretKeyRef": {"name": "tok", "key": "token"}}
    with pytest.raises(ManifestError, match="only on a template's args"):
        resolve_args([{"name": "t"}], [{"name": "t", "valueFrom": secret}], CONTEXT)


def test_missing_secrets_are_argos_errors() -> None:
    refs = {"token": ("nope", "token")}
    with pytest.raises(ArgResolutionError, match='secrets "nope" not found'):
        resolve_secret_args(refs, CONTEXT)
    with pytest.raises(ArgResolutionError, match="key 'other' does not exist in secret 'tok'"):
        resolve_secret_args({"token": ("tok", "other")}, CONTEXT)


def test_the_weight_field_ref_resolves_only_with_traffic_routing() -> None:
    weight = [
        {
            "name": "a",
            "valueFrom": {"fieldRef": {"fieldPath": "status.canary.weights.canary.weight"}},
        }
    ]
    with pytest.raises(ManifestError, match="no trafficRouting"):
        resolve_args([{"name": "a"}], weight, CONTEXT)
    routed = dataclasses.replace(CONTEXT, traffic_routing=True)
    assert resolve_args([{"name": "a"}], weight, routed) == {"a": "20"}


def test_substitution_reaches_every_string_and_refuses_unknown_args() -> None:
    metric = {"count": "{{args.n}}", "body": {"w": "{{args.w}}", "l": ["x{{args.w}}"]}, "k": 3}
    assert substitute(metric, {"n": "4", "w": "5"}) == {
        "count": "4",
        "body": {"w": "5", "l": ["x5"]},
        "k": 3,
    }
    with pytest.raises(ManifestError, match=r"args\.nope"):
        substitute("{{args.nope}}", {})
