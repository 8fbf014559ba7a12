"""The Helm chart: `helm lint` and a render of every ci/*-values.yaml through Helm's own Go SDK
(helm-python-sdk), every rendered object validated — built-in kinds against Kubernetes' OpenAPI
schemas (kubernetes-validate), the ClusterAnalysisTemplate against Argo Rollouts' CRD, the
ServiceMonitor structurally — and the contracts the rest of the project relies on (the template
shape of docs/architecture.md, "The Argo mapping"; the service's env var names; the hardening of
the pod).
"""

from __future__ import annotations

import base64
import re
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests.conftest import REPO_ROOT, argo_crds_dir
from tests.support.analysis_template import (
    arg_name,
    assert_forwards_every_override,
    override_fields,
)

CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
RELEASE = "rollout-agent"
NAMESPACE = "platform"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.25", "1.33")
BUILT_IN_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}
# The decision service's public configuration interface (decision_service Settings).
SERVICE_ENV_VARS = {
    "MODEL_PATH",
    "SLO_LATENCY",
    "PROMETHEUS_URL",
    "PROMETHEUS_TIMEOUT_SECONDS",
    "API_TOKEN",
    "API_TOKEN_FILE",
    "DRY_RUN",
    "DRY_RUN_ANSWER",
    "QUERY_PRESET",
    "QUERY_TEMPLATES_FILE",
    "ANALYSIS_WINDOW",
    "GUARDRAIL_MIN_CANARY_REQUESTS",
    "GUARDRAIL_MIN_BREACH_REQUESTS",
    "GUARDRAIL_HARD_ERROR_RATE",
    "GUARDRAIL_HARD_LATENCY_SLO_FACTOR",
    "GUARDRAIL_RELATIVE_FACTOR",
    "GUARDRAIL_PROMOTE_VETO_Z",
    "TOLERANCE_ERROR_FACTOR",
    "TOLERANCE_ERROR_FLOOR",
    "TOLERANCE_LATENCY_FACTOR",
    "TOLERANCE_LATENCY_FLOOR_MS",
    "SHIELD_ENABLED",
    "SHIELD_ALPHA_PROMOTE",
    "SHIELD_ALPHA_ABORT",
    "SHIELD_INDIFFERENCE",
    "SHIELD_PROOF_WINDOWS",
    "SHIELD_ABORT_MARGIN",
    "SHIELD_PARTIAL_PROOF_WEIGHT",
    "SHIELD_PARTIAL_PROOF_ALPHA",
    "SHIELD_FULL_PROOF_WEIGHT",
    "SHIELD_DRIFT_HORIZON_WINDOWS",
    "SHIELD_LAST_LOOK_SHARE",
    "SHIELD_ENFORCE_ABORT",
    "SHIELD_DECLINE_SHARE",
    "SHIELD_DECLINE_SHARE_BEYOND",
    "SHIELD_WARMUP_WINDOWS",
    "LOG_LEVEL",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def load_values(path: Path) -> dict[str, Any]:
    return helm_python.values_from_yaml(path.read_text())


def render(
    values: dict[str, Any], name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce it."""
    return chart().render(values, name=name, namespace=namespace)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def ci_docs(filename: str) -> list[dict[str, Any]]:
    """The objects rendered from one ci/*-values.yaml."""
    return objects(render(load_values(CHART_DIR / "ci" / filename)))


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    first: dict[str, Any] = pod["containers"][0]
    return first


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every env var the chart gives the container: its env list plus the settings ConfigMap
    (envFrom; the user's own `envFrom` sources are not the chart's to know)."""
    ctr = container(docs)
    env = {item["name"]: item.get("value", "") for item in ctr.get("env", [])}
    for source in ctr.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
        for found in cm:
            env.update(found["data"])
    return env


@cache
def crd_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((argo_crds_dir() / filename).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# The operator's RelabelConfig (its field names, camel-cased; the CRD is not vendored).
RELABEL_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
}
# Only the ServiceMonitor fields the chart writes (the Prometheus Operator CRD is not vendored).
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": RELABEL_CONFIG},
                            "metricRelabelings": {"type": "array", "items": RELABEL_CONFIG},
                        },
                    },
                },
            },
        },
    },
}
# Only the PrometheusRule fields the chart writes (the operator's CRD, as far as it goes).
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z]\\w*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {
                                            "type": "string",
                                            "pattern": "^(0|([0-9]+(y|w|d|h|m|s|ms))+)$",
                                        },
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def validate_object(doc: dict[str, Any]) -> None:
    kind = doc["kind"]
    if kind in BUILT_IN_KINDS:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    elif kind == "ClusterAnalysisTemplate":
        jsonschema.validate(doc, crd_schema("cluster-analysis-template-crd.yaml"))
    elif kind == "ServiceMonitor":
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
    elif kind == "PrometheusRule":
        jsonschema.validate(doc, PROMETHEUS_RULE_SCHEMA)
    else:
        pytest.fail(f"the chart rendered a {kind} that no test validates")


def test_ci_values_files_exist() -> None:
    names = {path.name for path in CI_VALUES}
    assert {"default-values.yaml", "all-features-values.yaml"} <= names
    assert len(names) >= 5


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_is_clean(values_file: Path) -> None:
    report = helm_python.lint(CHART_DIR, load_values(values_file), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_is_valid(values_file: Path) -> None:
    values = load_values(values_file)
    docs = objects(render(values))
    assert docs
    dashboard_namespace = values.get("grafanaDashboard", {}).get("namespace") or NAMESPACE
    for doc in docs:
        validate_object(doc)
        assert DNS_LABEL.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert len(doc["metadata"]["name"]) <= 63
        if doc["kind"] == "ClusterAnalysisTemplate":
            continue
        dashboard = doc["metadata"]["name"].endswith("-dashboard")
        expected = dashboard_namespace if dashboard else NAMESPACE
        assert doc["metadata"]["namespace"] == expected, doc["kind"]


def test_ci_values_render_every_template() -> None:
    """Together the ci files switch on every template, so no template escapes validation."""
    rendered_somewhere: set[str] = set()
    for values_file in CI_VALUES:
        for path, text in render(load_values(values_file)).items():
            if text.strip():
                rendered_somewhere.add(Path(path).name)
    templates = {p.name for p in (CHART_DIR / "templates").iterdir() if not p.name.startswith("_")}
    assert templates - rendered_somewhere == set()


def test_validation_catches_a_broken_object() -> None:
    """The validators used above do reject bad objects (a test that cannot fail proves nothing)."""
    docs = ci_docs("all-features-values.yaml")
    service = only(docs, "Service")
    service["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(service)
    template = only(docs, "ClusterAnalysisTemplate")
    template["spec"]["metrics"][0]["provider"]["web"]["timeoutSeconds"] = "five"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(template)


def test_no_token_source_fails_with_instructions() -> None:
    """The chart ships no default token: without a choice the render stops and says what to set."""
    with pytest.raises(helm_python.HelmRenderError, match=r"auth\.existingSecret"):
        render({})
    assert chart().values["auth"]["token"] == ""


def test_analysis_template_has_the_design_shape() -> None:
    docs = ci_docs("default-values.yaml")
    template = only(docs, "ClusterAnalysisTemplate")
    assert template["apiVersion"] == "argoproj.io/v1alpha1"
    assert template["metadata"]["name"] == "rl-canary-analysis"
    args = {arg["name"]: arg for arg in template["spec"]["args"]}
    fullname = f"{RELEASE}-k8s-rollout-agent"
    assert args == {
        "namespace": {"name": "namespace"},
        "rollout": {"name": "rollout"},
        "canary-hash": {"name": "canary-hash"},
        "stable-hash": {"name": "stable-hash"},
        "step-weight": {"name": "step-weight"},
        "interval": {"name": "interval", "value": "30s"},
        "count": {"name": "count", "value": "10"},
        **{arg_name(f): {"name": arg_name(f), "value": ""} for f in override_fields()},
        "api-token": {
            "name": "api-token",
            "valueFrom": {"secretKeyRef": {"name": f"{fullname}-token", "key": "token"}},
        },
    }
    (metric,) = template["spec"]["metrics"]
    assert {k: v for k, v in metric.items() if k != "provider"} == {
        "name": "rl-decision",
        "interval": "{{args.interval}}",
        "initialDelay": "{{args.interval}}",
        "count": "{{args.count}}",
        "consecutiveSuccessLimit": 1,
        "failureLimit": 0,
        "inconclusiveLimit": "{{args.count}}",
        "consecutiveErrorLimit": 4,
        "successCondition": 'result.decision == "promote"',
        "failureCondition": 'result.decision == "abort"',
    }
    assert metric["provider"] == {
        "web": {
            "method": "POST",
            "url": f"http://{fullname}.{NAMESPACE}.svc:8080/v1/decide",
            "timeoutSeconds": 5,
            "headers": [{"key": "Authorization", "value": "Bearer {{args.api-token}}"}],
            "jsonBody": metric["provider"]["web"]["jsonBody"],
            "jsonPath": "{$}",
        }
    }
    assert_forwards_every_override(template["spec"])


def test_analysis_template_matches_the_rollouts_manifest() -> None:
    """Installed as the manifests expect (`helm install k8s-rollout-agent ... -n rollout-agent`),
    the chart's template is rollouts/cluster-analysis-template.yaml: one template, two ways."""
    manifest = REPO_ROOT / "rollouts" / "cluster-analysis-template.yaml"
    if not manifest.is_file():
        pytest.skip("rollouts/cluster-analysis-template.yaml is not there yet")
    expected = yaml.safe_load(manifest.read_text())
    docs = objects(
        render(
            {"auth": {"generateToken": True}}, name="k8s-rollout-agent", namespace="rollout-agent"
        )
    )
    template = only(docs, "ClusterAnalysisTemplate")
    assert template["metadata"]["name"] == expected["metadata"]["name"]
    assert template["spec"] == expected["spec"]


def test_analysis_template_follows_an_existing_secret() -> None:
    docs = ci_docs("existing-secret-values.yaml")
    template = only(docs, "ClusterAnalysisTemplate")
    token_arg = next(a for a in template["spec"]["args"] if a["name"] == "api-token")
    assert token_arg["valueFrom"]["secretKeyRef"] == {
        "name": "rollout-agent-token",
        "key": "api-token",
    }


def test_pod_is_hardened_and_probed() -> None:
    docs = ci_docs("default-values.yaml")
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    ctr = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(ctr["resources"]["requests"])
    assert "memory" in ctr["resources"]["limits"]
    assert ctr["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"] == only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_token_reaches_the_service_as_a_mounted_file(values_file: Path) -> None:
    values = load_values(values_file)
    docs = objects(render(values))
    env = env_of(docs)
    assert "API_TOKEN" not in env, "the token must never sit in an env var or ConfigMap"
    token_path = Path(env["API_TOKEN_FILE"])
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "api-token")
    assert mount["readOnly"] is True and str(token_path.parent) == mount["mountPath"]
    volume = next(
        v
        for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "api-token"
    )
    auth = values["auth"]
    key = auth.get("secretKey", "token")
    assert volume["secret"]["items"] == [{"key": key, "path": token_path.name}]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    if auth.get("existingSecret"):
        assert secrets == []
        assert volume["secret"]["secretName"] == auth["existingSecret"]
    else:
        (secret,) = secrets
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        token = base64.b64decode(secret["data"][key]).decode()
        if auth.get("token"):
            assert token == auth["token"]
        else:
            assert re.fullmatch(r"[A-Za-z0-9]{48}", token)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_env_names_are_the_services_public_interface(values_file: Path) -> None:
    values = load_values(values_file)
    env = env_of(objects(render(values)))
    chart_env = set(env) - {e["name"] for e in values.get("extraEnv", [])}
    assert chart_env <= SERVICE_ENV_VARS, chart_env - SERVICE_ENV_VARS
    assert {"PROMETHEUS_URL", "SLO_LATENCY", "QUERY_PRESET", "DRY_RUN", "API_TOKEN_FILE"} <= set(
        env
    )
    assert env["DRY_RUN"] in {"true", "false"}
    assert float(env["SLO_LATENCY"]) > 0


def test_settings_follow_the_values() -> None:
    values = load_values(CHART_DIR / "ci" / "all-features-values.yaml")
    env = env_of(objects(render(values)))
    assert env["PROMETHEUS_URL"] == "https://prometheus.monitoring.svc:9090"
    assert env["PROMETHEUS_TIMEOUT_SECONDS"] == "1.5"
    assert float(env["SLO_LATENCY"]) == 150.0
    assert env["QUERY_PRESET"] == "ingress-nginx"
    assert env["ANALYSIS_WINDOW"] == "1m"
    assert env["GUARDRAIL_HARD_ERROR_RATE"] == "0.2"
    assert env["GUARDRAIL_MIN_CANARY_REQUESTS"] == "50"
    assert env["TOLERANCE_ERROR_FACTOR"] == "1.5"
    assert env["TOLERANCE_LATENCY_FLOOR_MS"] == "10"
    assert env["SHIELD_ALPHA_PROMOTE"] == "0.05"
    assert env["SHIELD_PROOF_WINDOWS"] == "6"
    assert env["SHIELD_ABORT_MARGIN"] == "0.5"
    assert env["SHIELD_PARTIAL_PROOF_WEIGHT"] == "10"
    assert env["SHIELD_PARTIAL_PROOF_ALPHA"] == "0.3"
    assert env["SHIELD_FULL_PROOF_WEIGHT"] == "60"
    assert env["SHIELD_DRIFT_HORIZON_WINDOWS"] == "120"
    assert env["SHIELD_LAST_LOOK_SHARE"] == "0.5"
    assert env["SHIELD_ENFORCE_ABORT"] == "false"
    assert env["SHIELD_DECLINE_SHARE"] == "0.75"
    assert env["SHIELD_DECLINE_SHARE_BEYOND"] == "0.9"
    assert env["SHIELD_WARMUP_WINDOWS"] == "4"
    assert "SHIELD_ENABLED" not in env  # unset keys keep the service's defaults
    assert env["LOG_LEVEL"] == "debug"


def test_user_query_templates_are_mounted() -> None:
    values = load_values(CHART_DIR / "ci" / "all-features-values.yaml")
    docs = objects(render(values))
    env = env_of(docs)
    queries = next(d for d in docs if d["metadata"]["name"].endswith("-queries"))
    assert (
        queries["data"]["query-templates.yaml"].strip()
        == values["config"]["queryTemplates"].strip()
    )
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "query-templates")
    assert env["QUERY_TEMPLATES_FILE"] == f"{mount['mountPath']}/query-templates.yaml"
    assert "QUERY_TEMPLATES_FILE" not in env_of(ci_docs("default-values.yaml"))


def test_dry_run_reaches_the_service() -> None:
    env = env_of(ci_docs("dry-run-values.yaml"))
    assert (env["DRY_RUN"], env["DRY_RUN_ANSWER"]) == ("true", "hold")


@pytest.mark.parametrize(
    ("values_file", "model_path", "volume_source"),
    [
        ("default-values.yaml", None, None),
        ("custom-model-values.yaml", "/models/custom/canary-dqn.onnx", "configMap"),
        ("model-volume-values.yaml", "/models/custom/canary-dqn-v2.onnx", "persistentVolumeClaim"),
    ],
)
def test_model_source(values_file: str, model_path: str | None, volume_source: str | None) -> None:
    """The image's shipped model by default (no MODEL_PATH), else the mounted user model."""
    docs = ci_docs(values_file)
    env = env_of(docs)
    assert env.get("MODEL_PATH") == model_path
    volumes = {
        v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    if volume_source is None:
        assert "model" not in volumes
    else:
        assert volume_source in volumes["model"]
        mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "model")
        assert model_path is not None and model_path.startswith(mount["mountPath"] + "/")


def test_optional_objects_follow_their_switches() -> None:
    default = {d["kind"] for d in ci_docs("default-values.yaml")}
    assert default == {
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ClusterAnalysisTemplate",
    }
    docs = ci_docs("all-features-values.yaml")
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"} <= {
        d["kind"] for d in docs
    }
    assert "replicas" not in only(docs, "Deployment")["spec"], "the HPA owns the replica count"
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert any(p.get("port") == 53 for rule in policy["egress"] for p in rule.get("ports", []))
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    dry_run = {d["kind"] for d in ci_docs("dry-run-values.yaml")}
    assert "ClusterAnalysisTemplate" not in dry_run and "PodDisruptionBudget" not in dry_run


def test_names_are_cut_at_63_characters() -> None:
    release = "a-release-name-as-long-as-helm-allows-fifty-three-chr"
    assert len(release) == 53
    docs = objects(render({"auth": {"generateToken": True}}, name=release))
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    fullname = f"{release}-k8s-rollout-agent"[:63]
    assert only(docs, "Deployment")["metadata"]["name"] == fullname
    assert only(docs, "Secret")["metadata"]["name"] == f"{fullname[:57]}-token"


def test_release_named_after_the_chart_is_not_repeated() -> None:
    docs = objects(render({"auth": {"generateToken": True}}, name="k8s-rollout-agent"))
    assert only(docs, "Deployment")["metadata"]["name"] == "k8s-rollout-agent"
    assert only(docs, "Secret")["metadata"]["name"] == "k8s-rollout-agent-token"


def test_notes_tell_how_to_reference_the_template() -> None:
    notes = render(load_values(CHART_DIR / "ci" / "all-features-values.yaml"))[
        "k8s-rollout-agent/templates/NOTES.txt"
    ]
    assert "templateName: rl-canary-decision" in notes
    assert "every 20s; after 15 holds" in notes
    assert "clusterScope: true" in notes
    assert "podTemplateHashValue: Latest" in notes and "podTemplateHashValue: Stable" in notes
    assert "kubectl argo rollouts promote" in notes and "kubectl argo rollouts abort" in notes
    assert 'Secret "rollout-agent-token"' in notes


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_the_service_accepts_the_rendered_settings(values_file: Path, tmp_path: Path) -> None:
    """The decision service's own Settings class parses what the chart hands it."""
    settings_module = pytest.importorskip("decision_service.settings")
    docs = ci_docs(values_file.name)
    env = env_of(docs)
    # Files the pod would have mounted: stand-ins with the rendered content where there is one.
    token = tmp_path / "token"
    token.write_text("a-token-for-the-test")
    env["API_TOKEN_FILE"] = str(token)
    if "QUERY_TEMPLATES_FILE" in env:
        queries = next(d for d in docs if d["metadata"]["name"].endswith("-queries"))
        templates = tmp_path / "query-templates.yaml"
        templates.write_text(queries["data"]["query-templates.yaml"])
        env["QUERY_TEMPLATES_FILE"] = str(templates)
    if "MODEL_PATH" in env:
        model = tmp_path / Path(env["MODEL_PATH"]).name
        model.write_bytes(b"")
        env["MODEL_PATH"] = str(model)
    settings = settings_module.Settings(**{key.lower(): value for key, value in env.items()})
    assert settings.bearer_token == "a-token-for-the-test"
    assert settings.prometheus_url == env["PROMETHEUS_URL"].rstrip("/")
    assert settings.dry_run is (env["DRY_RUN"] == "true")
    # The preset and any user templates load as the app would load them at start.
    queries = pytest.importorskip("decision_service.queries")
    queries.load_templates(settings.query_preset, settings.query_templates_file)


def test_the_controllers_calls_stay_on_one_replica() -> None:
    """Argo's controller is one client: with ClientIP affinity its calls reach one replica, whose
    count of measurements at a step is then whole (issue: two replicas each counting half)."""
    service = only(ci_docs("default-values.yaml"), "Service")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert service["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    values = load_values(CHART_DIR / "ci" / "default-values.yaml")
    values.setdefault("service", {})["sessionAffinity"] = "None"
    plain = only(objects(render(values)), "Service")
    assert plain["spec"]["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in plain["spec"]
