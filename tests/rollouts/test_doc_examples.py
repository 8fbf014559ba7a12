"""Every Argo example in the docs is one `kubectl apply` accepts: each ```yaml block of README.md,
docs/*.md and the chart's README, and the Rollout example the chart's NOTES.txt prints, validated
against the ``openAPIV3Schema`` of Argo Rollouts' CRDs.

The validation is strict as `kubectl apply` is (server-side field validation, the default since
kubectl 1.27): an unknown field is an error, not something the API server silently prunes. So a
Rollout step arg with ``valueFrom.secretKeyRef`` (which exists only on a template's args,
``ArgumentValueFrom`` in pkg/apis/rollouts/v1alpha1/types.go) fails here as it fails there.

A fragment (a lone ``strategy:``, ``canary:`` or ``steps:`` block) is validated inside a minimal
Rollout, i.e. against the right sub-schema of the Rollout CRD. A block that is not Kubernetes at
all (the query-template format of docs/queries.md) must parse and must not look like Argo.
"""

from __future__ import annotations

import copy
import functools
import re
import textwrap
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT, argo_crds_dir

DOCS = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    REPO_ROOT / "helm" / "k8s-rollout-agent" / "README.md",
]
CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"
CRD_FILES = {
    "Rollout": "rollout-crd.yaml",
    "AnalysisTemplate": "analysis-template-crd.yaml",
    "ClusterAnalysisTemplate": "cluster-analysis-template-crd.yaml",
}
#: Keys that say "this is (part of) an Argo Rollouts object" (`canary` alone does not: the query
#: templates of docs/queries.md have `canary`/`stable` label values).
ARGO_KEYS = {"strategy", "steps", "setWeight", "analysis", "metrics", "templates"}
Obj = dict[str, Any]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields forbidden wherever the CRD lists an object's fields."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(kind: str) -> Obj:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((argo_crds_dir() / CRD_FILES[kind]).read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    strict: Obj = _strict(version["schema"]["openAPIV3Schema"])
    return strict


def in_a_rollout(strategy: Obj) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "example"},
        "spec": {
            "selector": {"matchLabels": {"app": "example"}},
            "template": {
                "metadata": {"labels": {"app": "example"}},
                "spec": {"containers": [{"name": "app", "image": "example:1"}]},
            },
            "strategy": strategy,
        },
    }


def as_argo_object(doc: Any) -> Obj | None:
    """The Argo object a YAML document is or is part of; ``None`` when it is not Argo."""
    if isinstance(doc, dict) and doc.get("kind") in CRD_FILES:
        return doc
    if isinstance(doc, dict) and set(doc) == {"strategy"}:
        return in_a_rollout(doc["strategy"])
    if isinstance(doc, dict) and set(doc) == {"canary"} and isinstance(doc["canary"], dict):
        return in_a_rollout(doc)
    if isinstance(doc, dict) and set(doc) == {"steps"}:
        return in_a_rollout({"canary": doc})
    steps = isinstance(doc, list) and doc and all(isinstance(s, dict) for s in doc)
    if steps and set().union(*doc) & {"setWeight", "analysis", "pause"}:
        return in_a_rollout({"canary": {"steps": doc}})
    return None


def yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for number, match in enumerate(re.finditer(r"```ya?ml\n(.*?)```", text, re.DOTALL)):
            blocks.append((f"{path.relative_to(REPO_ROOT)}#{number + 1}", match.group(1)))
    return blocks


BLOCKS = yaml_blocks()


def _looks_argo(doc: Any) -> bool:
    if isinstance(doc, dict):
        return bool(set(doc) & ARGO_KEYS) or any(_looks_argo(v) for v in doc.values())
    if isinstance(doc, list):
        return any(_looks_argo(v) for v in doc)
    return False


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_every_yaml_block_is_valid(where: str, block: str) -> None:
    docs = [d for d in yaml.safe_load_all(block) if d is not None]
    assert docs, f"{where}: an empty yaml block"
    for doc in docs:
        obj = as_argo_object(doc)
        if obj is None:
            assert not _looks_argo(doc), f"{where}: an Argo fragment this test cannot place"
            continue
        jsonschema.validate(obj, crd_schema(obj["kind"]))


def test_the_docs_have_argo_examples_to_check() -> None:
    argo = [
        where
        for where, block in BLOCKS
        if any(as_argo_object(d) for d in yaml.safe_load_all(block) if d is not None)
    ]
    assert any(w.startswith("README.md") for w in argo)
    assert any(w.startswith("docs/install.md") for w in argo)


def notes_example() -> Obj:
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            {"auth": {"generateToken": True}}, name="k8s-rollout-agent", namespace="rollout-agent"
        )
    notes = rendered["k8s-rollout-agent/templates/NOTES.txt"]
    match = re.search(r"\n( +)strategy:\n(?:\1 .*\n)+", notes)
    assert match, "NOTES.txt no longer prints a `strategy:` example"
    example: Obj = yaml.safe_load(textwrap.dedent(match.group(0)))
    return example


def test_the_chart_notes_example_is_valid() -> None:
    obj = as_argo_object(notes_example())
    assert obj is not None
    jsonschema.validate(obj, crd_schema("Rollout"))


def test_strict_validation_rejects_a_step_arg_from_a_secret() -> None:
    """What `kubectl apply` said to the README's old snippet: step args have no secretKeyRef."""
    step_arg = {"name": "api-token", "valueFrom": {"secretKeyRef": {"name": "t", "key": "token"}}}
    strategy = {
        "canary": {
            "steps": [
                {"setWeight": 5},
                {"analysis": {"templates": [{"templateName": "t"}], "args": [step_arg]}},
            ]
        }
    }
    with pytest.raises(jsonschema.ValidationError, match="secretKeyRef"):
        jsonschema.validate(in_a_rollout(strategy), crd_schema("Rollout"))
    # ... while a template's args may read a Secret.
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "args": [copy.deepcopy(step_arg)],
            "metrics": [{"name": "m", "provider": {"web": {"url": "http://x"}}}],
        },
    }
    jsonschema.validate(template, crd_schema("AnalysisTemplate"))


def test_every_manifest_is_valid_under_the_strict_schema_too() -> None:
    for path in sorted((REPO_ROOT / "rollouts").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in CRD_FILES:
                jsonschema.validate(doc, crd_schema(doc["kind"]))


def test_docs_list_is_what_exists() -> None:
    assert all(isinstance(p, Path) and p.is_file() for p in DOCS)


def test_docs_count_consecutive_errors_as_argo_does() -> None:
    """Argo errs a metric when its consecutive errors are *more than* consecutiveErrorLimit
    (assessMetricFailureInconclusiveOrError): with the limit 4 it is the 5th error that aborts."""
    texts = {
        str(path.relative_to(REPO_ROOT)): path.read_text()
        for path in [
            *DOCS,
            *sorted((REPO_ROOT / "rollouts").rglob("*.yaml")),
            CHART_DIR / "values.yaml",
            *sorted((CHART_DIR / "templates").iterdir()),
        ]
    }
    wrong = re.compile(r"(?i)\b(?:four|4)(?: errors)? in a row|\(4\) errors in a row")
    assert [name for name, text in texts.items() if wrong.search(text)] == []
    for name in ("README.md", "docs/install.md"):
        assert re.search(r"(?i)\b(?:fifth|5th)\b", texts[name]), name


def test_docs_do_not_call_a_dry_run_promote_safe() -> None:
    """In dry-run with answer=promote every step passes: nothing stops a bad canary."""
    for path in DOCS:
        text = " ".join(path.read_text().split())
        assert not re.search(r"(?i)the (?:configured )?safe (?:answer|decision)", text), path
