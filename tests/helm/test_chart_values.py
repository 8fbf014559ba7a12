"""The chart's values: values.schema.json rejects bad values (Helm refuses to render them), the
schema and values.yaml describe the same keys, and every key is documented with a `# --` comment
(the argo-helm / helm-docs convention).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from tests.conftest import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()
TOKEN = {"auth": {"generateToken": True}}


def with_token(values: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(values)
    merged.setdefault("auth", {}).setdefault("generateToken", True)
    return merged


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_chart_ships_its_schema() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        assert chart.schema is not None
        schema = chart.schema
        assert (json.loads(schema) if isinstance(schema, str | bytes) else schema) == SCHEMA


@pytest.mark.parametrize(
    "values_file", sorted((CHART_DIR / "ci").glob("*-values.yaml")), ids=lambda p: p.name
)
def test_ci_values_satisfy_the_schema(values_file: Path) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(helm_python.values_from_yaml(values_file.read_text()))


BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level key (a typo)", {"replicaCnt": 3}, "replicaCnt"),
    ("negative replicas", {"replicaCount": -1}, "replicaCount"),
    ("replicas as text", {"replicaCount": "two"}, "replicaCount"),
    ("unknown query preset", {"config": {"queryPreset": "linkerd"}}, "queryPreset"),
    ("dry-run may never answer abort", {"config": {"dryRun": {"answer": "abort"}}}, "answer"),
    ("dry-run switch as text", {"config": {"dryRun": {"enabled": "yes"}}}, "enabled"),
    ("Prometheus URL without scheme", {"config": {"prometheus": {"url": "prom:9090"}}}, "url"),
    ("zero latency SLO", {"config": {"sloLatencyMs": 0}}, "sloLatencyMs"),
    ("window not a duration", {"config": {"analysisWindow": "30 seconds"}}, "analysisWindow"),
    ("error rate above 1", {"config": {"guardrails": {"hardErrorRate": 1.5}}}, "hardErrorRate"),
    ("unknown guardrail", {"config": {"guardrails": {"maxErrors": 3}}}, "maxErrors"),
    ("service port out of range", {"service": {"port": 70000}}, "port"),
    ("unknown pull policy", {"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ("secret name not a DNS name", {"auth": {"existingSecret": "My_Secret"}}, "existingSecret"),
    ("relative model path", {"model": {"path": "models/x.onnx"}}, "path"),
    ("analysis count zero", {"analysisTemplate": {"count": 0}}, "count"),
    ("analysis interval not a duration", {"analysisTemplate": {"interval": "often"}}, "interval"),
    ("PDB as a fraction", {"pdb": {"maxUnavailable": 0.5}}, "maxUnavailable"),
    ("log level unknown", {"config": {"logLevel": "verbose"}}, "logLevel"),
    ("digest without algorithm", {"image": {"digest": "0123abcd"}}, "digest"),
    ("extra volume without name", {"extraVolumes": [{"emptyDir": {}}]}, "name"),
    ("relative extra mount", {"extraVolumeMounts": [{"name": "a", "mountPath": "a"}]}, "mountPath"),
    ("envFrom entry empty", {"envFrom": [{}]}, "envFrom"),
    ("dashboard label not a string", {"grafanaDashboard": {"labels": {"a": 1}}}, "labels"),
    (
        "error ratio above 1",
        {"prometheusRule": {"alerts": {"prometheusErrors": {"ratio": 2}}}},
        "ratio",
    ),
    (
        "alert window not a duration",
        {"prometheusRule": {"alerts": {"abortSpike": {"window": "half an hour"}}}},
        "window",
    ),
    (
        "disagreement on an unknown decision",
        {"prometheusRule": {"alerts": {"dryRunDisagreement": {"decisions": ["rollback"]}}}},
        "decisions",
    ),
    ("selector with braces", {"prometheusRule": {"selector": '{job="x"}'}}, "selector"),
    ("relabelings not a list", {"serviceMonitor": {"relabelings": {"a": "b"}}}, "relabelings"),
]


@pytest.mark.parametrize(
    ("values", "offending_key"),
    [(values, key) for _, values, key in BAD_VALUES],
    ids=[case for case, _, _ in BAD_VALUES],
)
def test_schema_rejects_bad_values(values: dict[str, Any], offending_key: str) -> None:
    """Helm itself refuses: validate_schema, and the render an install would do."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm_python.HelmValuesError, match=re.escape(offending_key)):
            chart.validate_schema(with_token(values))
        with pytest.raises(helm_python.HelmValuesError):
            chart.render(with_token(values), name="rollout-agent", namespace="platform")


def test_lint_reports_bad_values() -> None:
    report = helm_python.lint(CHART_DIR, with_token({"config": {"queryPreset": "linkerd"}}))
    assert any(m["severity"] == 3 and "queryPreset" in m["error"] for m in report["messages"])


def test_the_same_values_pass_when_fixed() -> None:
    """The rejections above come from the bad value, not from the rest of the document."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(with_token({"config": {"queryPreset": "istio"}, "replicaCount": 3}))
        chart.validate_schema(TOKEN)


def leaf_paths(values: Any, prefix: str = "") -> set[str]:
    if isinstance(values, dict) and values:
        paths: set[str] = set()
        for key, value in values.items():
            paths |= leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return paths
    return {prefix}


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    props = schema.get("properties")
    if not props or schema.get("additionalProperties") is not False:
        return {prefix}
    paths: set[str] = set()
    for key, sub in props.items():
        paths |= schema_paths(sub, f"{prefix}.{key}" if prefix else key)
    return paths


def test_schema_and_values_describe_the_same_keys() -> None:
    """No stale schema entries and no value the schema forgets (strict objects only)."""
    values = yaml.safe_load(VALUES_TEXT)
    in_values = leaf_paths(values)
    in_schema = schema_paths(SCHEMA) - {"global"}

    # A strict object in the schema must list exactly the keys of its values.yaml counterpart;
    # free-form objects (resources, probes ...) stop the walk at their own path.
    def covered(path: str, others: set[str]) -> bool:
        return any(
            path == o or path.startswith(o + ".") or o.startswith(path + ".") for o in others
        )

    assert {p for p in in_values if not covered(p, in_schema)} == set()
    assert {p for p in in_schema if not covered(p, in_values)} == set()


KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?:\s|$)")


def undocumented_keys(text: str) -> list[str]:
    """Keys of values.yaml with no `# --` comment on themselves or on an enclosing key.

    A key that only groups documented children needs no comment of its own; a key whose value
    is a list does. Lines inside a list (a default such as `ingressFrom: [...]`) are data.
    """
    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment_block: list[str] = []
    list_indent: int | None = None
    grouping_key: str | None = None  # an undocumented `key:` whose value is still to come
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        if not stripped:
            comment_block = []
            continue
        indent = len(line) - len(line.lstrip(" "))
        if list_indent is not None and indent > list_indent:
            continue
        list_indent = None
        if stripped.startswith("- "):
            if grouping_key is not None:
                missing.append(grouping_key)
            grouping_key = None
            list_indent = indent - 1
            continue
        grouping_key = None
        match = KEY_LINE.match(line)
        if not match:
            comment_block = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = any(c.startswith("# --") for c in comment_block)
        inherited = any(doc for _, _, doc in stack)
        path = ".".join([k for _, k, _ in stack] + [match["key"]])
        has_value = bool(line[match.end() :].strip())
        if not (documented or inherited):
            if has_value:
                missing.append(path)
            else:
                grouping_key = path
        stack.append((indent, match["key"], documented))
        comment_block = []
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented_keys(VALUES_TEXT) == []


def test_documentation_check_finds_an_undocumented_key() -> None:
    text = (
        "# -- documented\na: 1\nb: 2\ngroup:\n  # -- fine\n  c: 3\n  d: 4\n"
        "# -- a list, documented\ne:\n  - x: 1\nf:\n  - y: 2\n"
    )
    assert undocumented_keys(text) == ["b", "group.d", "f"]
