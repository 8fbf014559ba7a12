"""The Argo Rollouts manifests: valid against Argo's CRDs and Kubernetes' schemas, and wired.

Every Argo object (raw files and the rendered kustomize variants) is validated against the
``openAPIV3Schema`` of Argo's own CRDs with ``jsonschema``; every built-in kind with
``kubernetes-validate`` (strict: unknown fields fail). The AnalysisTemplate is checked against
the reference shape of docs/architecture.md ("The Argo mapping"), the Rollout against the
template's args and the simulator's weights, and the scrape config with ``promtool``.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT, argo_crds_dir
from tests.support.analysis_template import assert_forwards_every_override

ROLLOUTS = REPO_ROOT / "rollouts"
KUBERNETES_VERSION = "1.30"
ARGO_KINDS = {
    "Rollout": "rollout-crd.yaml",
    "AnalysisTemplate": "analysis-template-crd.yaml",
    "ClusterAnalysisTemplate": "cluster-analysis-template-crd.yaml",
}
#: Files applied by no kustomization, on purpose (their header says how to use them).
STANDALONE = {"prometheus-scrape-config.yaml", "cluster-analysis-template.yaml"}
KUSTOMIZATIONS = ["", "ingress-nginx", "prometheus-operator"]
Obj = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in ROLLOUTS.rglob("*.yaml"))


def load_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _deep_merge(base: Obj, patch: Obj) -> Obj:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(folder: Path) -> list[Obj]:
    """The subset of kustomize these kustomizations use: resources, merge patches, images."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        objects += render(target) if target.is_dir() else load_docs(target)
    for patch_ref in spec.get("patches", []):
        (patch,) = load_docs(folder / patch_ref["path"])
        matches = [
            i
            for i, o in enumerate(objects)
            if (o["kind"], o["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
        ]
        assert len(matches) == 1, f"patch {patch_ref['path']} matches {len(matches)} objects"
        objects[matches[0]] = _deep_merge(objects[matches[0]], patch)
    for image in spec.get("images", []):
        new = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for obj in objects:
            for container in _containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = new
    return objects


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def all_objects() -> list[tuple[str, Obj]]:
    raw = [(str(p.relative_to(ROLLOUTS)), d) for p in manifest_files() for d in load_docs(p)]
    rendered = [
        (f"kustomize {k or '.'}: {o['kind']}", o)
        for k in KUSTOMIZATIONS
        for o in render(ROLLOUTS / k)
    ]
    return [(name, o) for name, o in raw + rendered if o.get("kind") != "Kustomization"]


@functools.cache
def _crd(path: Path) -> Obj:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd: Obj = yaml.load(path.read_text(), Loader=loader)
    return crd


def crd_schema(kind: str) -> Obj:
    crd = _crd(argo_crds_dir() / ARGO_KINDS[kind])
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def _ids(items: list[tuple[str, Obj]]) -> list[str]:
    return [f"{name}:{obj['kind']}/{obj['metadata']['name']}" for name, obj in items]


ARGO_OBJECTS = [(n, o) for n, o in all_objects() if o["kind"] in ARGO_KINDS]
BUILTIN_OBJECTS = [
    (n, o)
    for n, o in all_objects()
    if o["kind"] not in ARGO_KINDS and not o["apiVersion"].startswith("monitoring.coreos.com")
]


def test_every_file_opens_with_a_comment_saying_what_it_is_for() -> None:
    for path in manifest_files():
        first = path.read_text().splitlines()[0]
        assert first.startswith("# "), f"{path} must open with a header comment"
        assert "Needs:" in path.read_text(), f"{path}: the header must say what it needs"


def test_every_manifest_is_applied_by_a_kustomization_or_documented_as_standalone() -> None:
    used: set[Path] = set()

    def walk(folder: Path) -> None:
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        used.add(folder / "kustomization.yaml")
        for ref in spec.get("resources", []):
            target = (folder / ref).resolve()
            assert target.exists(), f"{folder}/kustomization.yaml: {ref} does not exist"
            walk(target) if target.is_dir() else used.add(target)
        for ref in spec.get("patches", []):
            used.add((folder / ref["path"]).resolve())

    for k in KUSTOMIZATIONS:
        walk((ROLLOUTS / k).resolve())
    leftovers = {p.name for p in manifest_files() if p.resolve() not in used}
    assert leftovers == STANDALONE


@pytest.mark.parametrize(("name", "obj"), ARGO_OBJECTS, ids=_ids(ARGO_OBJECTS))
def test_argo_objects_validate_against_the_crd_schema(name: str, obj: Obj) -> None:
    assert obj["apiVersion"] == "argoproj.io/v1alpha1"
    jsonschema.validate(obj, crd_schema(obj["kind"]))


@pytest.mark.parametrize(("name", "obj"), BUILTIN_OBJECTS, ids=_ids(BUILTIN_OBJECTS))
def test_builtin_objects_validate_against_kubernetes_schemas(name: str, obj: Obj) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_would_catch_a_mistake() -> None:
    (template,) = load_docs(ROLLOUTS / "base/analysis-template.yaml")
    broken = copy.deepcopy(template)
    broken["spec"]["metrics"][0]["provider"]["web"]["timeoutSeconds"] = "five"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("AnalysisTemplate"))
    (service,) = load_docs(ROLLOUTS / "base/service-stable.yaml")
    service["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def _template() -> Obj:
    (template,) = load_docs(ROLLOUTS / "base/analysis-template.yaml")
    return template


def test_analysis_template_is_design_section_3() -> None:
    template = _template()
    (metric,) = template["spec"]["metrics"]
    assert metric["name"] == "rl-decision"
    assert metric["interval"] == "{{args.interval}}"
    # Argo measures at once; the first decision at a weight must see one interval at it.
    assert metric["initialDelay"] == "{{args.interval}}"
    assert metric["count"] == "{{args.count}}"
    assert metric["consecutiveSuccessLimit"] == 1
    assert metric["failureLimit"] == 0
    assert metric["inconclusiveLimit"] == "{{args.count}}"
    assert metric["consecutiveErrorLimit"] == 4
    assert metric["successCondition"] == 'result.decision == "promote"'
    assert metric["failureCondition"] == 'result.decision == "abort"'
    web = metric["provider"]["web"]
    assert web["method"] == "POST"
    assert web["url"].endswith(":8080/v1/decide")
    assert web["timeoutSeconds"] == 5
    assert web["headers"] == [{"key": "Authorization", "value": "Bearer {{args.api-token}}"}]
    # The five values of every request, and every per-Rollout override the API accepts.
    assert_forwards_every_override(template["spec"])
    assert web["jsonPath"] == "{$}"
    args = {a["name"]: a for a in template["spec"]["args"]}
    assert args["interval"]["value"] == "30s"  # the seed's STEP_INTERVAL
    assert args["count"]["value"] == "10"  # the seed's MAX_STEPS, per step
    assert args["api-token"]["valueFrom"] == {
        "secretKeyRef": {"name": "k8s-rollout-agent-token", "key": "token"}
    }


def test_cluster_template_is_the_same_analysis() -> None:
    (cluster,) = load_docs(ROLLOUTS / "cluster-analysis-template.yaml")
    assert cluster["kind"] == "ClusterAnalysisTemplate"
    assert "namespace" not in cluster["metadata"]
    assert cluster["metadata"]["name"] == _template()["metadata"]["name"]
    assert cluster["spec"] == _template()["spec"]


def _rollout() -> Obj:
    (rollout,) = load_docs(ROLLOUTS / "base/rollout.yaml")
    return rollout


def test_rollout_steps_follow_the_simulators_weights_with_an_analysis_after_each() -> None:
    steps = _rollout()["spec"]["strategy"]["canary"]["steps"]
    # No pause steps: the metric's initialDelay gives each weight one interval of traffic.
    assert [next(iter(s)) for s in steps] == ["setWeight", "analysis"] * 7
    weights = [s["setWeight"] for s in steps[0::2]]
    env = pytest.importorskip("training.env", reason="the train extra (gymnasium) is missing")
    assert tuple(float(w) for w in weights) == env.DEFAULT_WEIGHTS
    template = _template()
    needed = {
        a["name"] for a in template["spec"]["args"] if "value" not in a and "valueFrom" not in a
    }
    for set_weight, analysis in zip(steps[0::2], steps[1::2], strict=True):
        spec = analysis["analysis"]
        assert spec["templates"] == [{"templateName": template["metadata"]["name"]}]
        args = {a["name"]: a for a in spec["args"]}
        assert set(args) == needed
        assert args["step-weight"]["value"] == str(set_weight["setWeight"])
        assert args["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert args["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
        assert args["namespace"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert args["rollout"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_services_and_ingress_are_the_ones_the_rollout_names() -> None:
    rollout = _rollout()
    canary = rollout["spec"]["strategy"]["canary"]
    (stable,) = load_docs(ROLLOUTS / "base/service-stable.yaml")
    (canary_service,) = load_docs(ROLLOUTS / "base/service-canary.yaml")
    assert canary["stableService"] == stable["metadata"]["name"]
    assert canary["canaryService"] == canary_service["metadata"]["name"]
    pod_labels = rollout["spec"]["template"]["metadata"]["labels"]
    for service in (stable, canary_service):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    (routed,) = [o for o in render(ROLLOUTS / "ingress-nginx") if o["kind"] == "Rollout"]
    (ingress,) = load_docs(ROLLOUTS / "ingress-nginx/ingress.yaml")
    nginx = routed["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"]
    assert nginx["stableIngress"] == ingress["metadata"]["name"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == stable["metadata"]["name"]
    assert routed["spec"]["strategy"]["canary"]["steps"] == canary["steps"]


def test_servicemonitor_copies_the_pod_template_hash_label() -> None:
    (monitor,) = load_docs(ROLLOUTS / "prometheus-operator/servicemonitor.yaml")
    (service,) = load_docs(ROLLOUTS / "prometheus-operator/service-metrics.yaml")
    assert monitor["spec"]["podTargetLabels"] == ["rollouts-pod-template-hash"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def _relabel(meta: dict[str, str], rules: list[Obj]) -> dict[str, str] | None:
    """Prometheus' relabelling for the actions the scrape config uses (keep, replace)."""
    labels = dict(meta)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if match is None:
                return None
        elif action == "replace":
            if match is not None:
                labels[rule["target_label"]] = match.expand(rule.get("replacement", r"\1"))
        else:
            raise AssertionError(f"unexpected relabel action {action}")
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def test_scrape_config_relabels_the_pod_template_hash(tmp_path: Path) -> None:
    (config_map,) = load_docs(ROLLOUTS / "prometheus-scrape-config.yaml")
    scrape = yaml.safe_load(config_map["data"]["demo-app-scrape.yaml"])
    (job,) = scrape["scrape_configs"]
    pod = {
        "__meta_kubernetes_namespace": "rollout-demo",
        "__meta_kubernetes_pod_name": "demo-app-6f7c9d-abcde",
        "__meta_kubernetes_pod_label_app": "demo-app",
        "__meta_kubernetes_pod_label_rollouts_pod_template_hash": "6f7c9d",
        "__meta_kubernetes_pod_container_port_name": "http",
    }
    assert _relabel(pod, job["relabel_configs"]) == {
        "rollouts_pod_template_hash": "6f7c9d",
        "namespace": "rollout-demo",
        "pod": "demo-app-6f7c9d-abcde",
    }
    other_app = pod | {"__meta_kubernetes_pod_label_app": "other"}
    assert _relabel(other_app, job["relabel_configs"]) is None
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (ships with Prometheus) is not installed")
    # Debian's Prometheus is built without Kubernetes discovery: check the rest of the job
    # (relabel rules included) with a static target in its place.
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_kubectl_kustomize_renders_what_the_tests_validate(folder: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the built-in renderer was validated instead")
    result = subprocess.run(
        [kubectl, "kustomize", str(ROLLOUTS / folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]

    def key(o: Obj) -> tuple[str, str]:
        return (o["kind"], o["metadata"]["name"])

    assert sorted(rendered, key=key) == sorted(render(ROLLOUTS / folder), key=key)
