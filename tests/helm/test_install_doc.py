"""docs/install.md stays true to the chart: every value it tells users to set exists, and its
Rollout example is a valid Argo Rollouts canary strategy that passes exactly the arguments the
chart's ClusterAnalysisTemplate needs.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from tests.conftest import REPO_ROOT, argo_crds_dir

DOC = REPO_ROOT / "docs" / "install.md"
CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"


def doc_text() -> str:
    if not DOC.is_file():
        pytest.fail("docs/install.md is missing")
    return DOC.read_text()


def has_path(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_every_value_the_doc_sets_exists() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    text = doc_text()
    set_flags = re.findall(r"--set(?:-file)?[ =]([A-Za-z][\w.]*)=", text)
    features = text.split("## Optional features", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+)\|", features, flags=re.MULTILINE)
    table_keys = {
        key.removesuffix(".*").split("=")[0]
        for cell in first_cells[1:]  # past the header
        for key in re.findall(r"`([^`]+)`", cell)
    }
    assert "autoscaling.enabled" in table_keys
    inline_keys = re.findall(
        r"`((?:config|auth|model|analysisTemplate|networkPolicy)\.[\w.]+)`", text
    )
    mentioned = set(set_flags) | set(table_keys) | set(inline_keys)
    assert len(set_flags) >= 5
    missing = sorted(key for key in mentioned if not has_path(values, key.rstrip(".")))
    assert missing == []


def rollout_example() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", doc_text(), flags=re.DOTALL)
    rollouts = [yaml.safe_load(b) for b in blocks if "kind: Rollout" in b]
    assert len(rollouts) == 1
    example: dict[str, Any] = rollouts[0]
    return example


def test_the_rollout_example_is_a_valid_canary_strategy() -> None:
    crd = yaml.safe_load((argo_crds_dir() / "rollout-crd.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    strategy_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "strategy"
    ]
    jsonschema.validate(rollout_example()["spec"]["strategy"], strategy_schema)


def test_the_rollout_example_passes_what_the_template_needs() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            {"auth": {"generateToken": True}}, name="k8s-rollout-agent", namespace="rollout-agent"
        )
    template = yaml.safe_load(rendered["k8s-rollout-agent/templates/clusteranalysistemplate.yaml"])
    required = {
        arg["name"]
        for arg in template["spec"]["args"]
        if "value" not in arg and "valueFrom" not in arg
    }
    steps = rollout_example()["spec"]["strategy"]["canary"]["steps"]
    analyses = [step["analysis"] for step in steps if "analysis" in step]
    assert analyses
    for analysis in analyses:
        assert analysis["templates"] == [
            {"templateName": template["metadata"]["name"], "clusterScope": True}
        ]
        assert {arg["name"] for arg in analysis["args"]} == required
    weights = [step["setWeight"] for step in steps if "setWeight" in step]
    passed = [
        next(a["value"] for a in analysis["args"] if a["name"] == "step-weight")
        for analysis in analyses
    ]
    assert passed == [str(weight) for weight in weights[: len(passed)]]


def test_the_security_sections_network_policy_renders_and_admits_argo_and_prometheus() -> None:
    """The NetworkPolicy stays off by default (the doc says why); the values the doc gives for
    production render a valid policy admitting the Argo controller's and Prometheus'
    namespaces, with egress to DNS and Prometheus."""
    from tests.helm.test_chart_render import objects, only, render, validate_object

    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["networkPolicy"]["enabled"] is False
    section = doc_text().split("## Security", 1)[1].split("\n## ", 1)[0]
    assert "off by default" in section
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    snippet = yaml.safe_load(re.sub(r"^  ", "", blocks[0], flags=re.MULTILINE))
    docs = objects(render({"auth": {"generateToken": True}, **snippet}))
    policy = only(docs, "NetworkPolicy")
    validate_object(policy)
    admitted = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in policy["spec"]["ingress"][0]["from"]
    }
    assert admitted == {"argo-rollouts", "monitoring"}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_the_overrides_section_lists_what_the_template_forwards() -> None:
    """The "Per-Rollout overrides" table names every override arg of the chart's template with
    its request field, and its example sets only args the template has, with values the
    service accepts."""
    from decision_service.schemas import DecideRequestV1
    from tests.support.analysis_template import REQUIRED_BODY, arg_name, override_fields

    section = doc_text().split("### Per-Rollout overrides", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| `(\w+)` \|", section, flags=re.MULTILINE)
    assert rows == [(arg_name(f), f) for f in override_fields()]
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render({"auth": {"generateToken": True}}, name="a", namespace="b")
    template = yaml.safe_load(rendered["k8s-rollout-agent/templates/clusteranalysistemplate.yaml"])
    template_args = {arg["name"] for arg in template["spec"]["args"]}
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    (analysis,) = [s["analysis"] for s in yaml.safe_load(block)["steps"] if "analysis" in s]
    given = {arg["name"]: arg.get("value") for arg in analysis["args"]}
    assert set(given) <= template_args
    overrides = {name: v for name, v in given.items() if name in map(arg_name, override_fields())}
    assert overrides, "the example sets no override"
    body = {field: "x" for field in REQUIRED_BODY} | {
        "count": "10",
        "canary_hash": "a1",
        "stable_hash": "b2",
        "step_weight": given["step-weight"],
    }
    body |= {name.replace("-", "_"): value for name, value in overrides.items()}
    request = DecideRequestV1.model_validate(body)
    assert request.slo_latency_ms == 350.0
