"""What the chart gives operators around the service, rendered: the Grafana dashboard's
ConfigMap (the sidecar's label, the file as it is in the chart, every panel's query on the
service's metrics and parseable by promtool), the PrometheusRule (``promtool check rules``, the
switches, labels and selector), and the pod's extras (image digest, envFrom, extra volumes) and
the ServiceMonitor's relabelings. ``tests/observability/`` runs the queries on a real
Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from decision_service.metrics import PREFIX
from tests.helm.test_chart_render import ci_docs, container, objects, only, render
from tests.support.observability import (
    CHART_DIR,
    DASHBOARD_FILE,
    alert_rules,
    check_rules,
    dashboard_of,
    grafana_expr,
    panel_queries,
    rule_spec_of,
)

ALERTS = {
    "RolloutAgentNotReady",
    "RolloutAgentPrometheusErrors",
    "RolloutAgentAbortSpike",
    "RolloutAgentDryRunDisagreement",
}
METRIC_NAME = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|offset\b)")


def _metrics_in(expr: str) -> set[str]:
    return {m for m in METRIC_NAME.findall(expr) if m not in {"by", "without", "on", "offset"}}


def test_the_dashboard_ships_with_the_sidecar_label_and_the_charts_file() -> None:
    docs = ci_docs("all-features-values.yaml")
    (config_map,) = [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"rollout-agent.json": DASHBOARD_FILE.read_text().rstrip("\n")}
    assert not [d for d in ci_docs("default-values.yaml") if d["kind"] == "PrometheusRule"]
    names = [d["metadata"]["name"] for d in ci_docs("default-values.yaml")]
    assert not [n for n in names if n.endswith("-dashboard")], "off by default"


def test_the_dashboards_labels_annotations_and_namespace_follow_the_values() -> None:
    docs = ci_docs("observability-values.yaml")
    (config_map,) = [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "true"
    assert meta["annotations"] == {"grafana_folder": "Rollouts"}


def test_every_panel_queries_the_services_metrics_with_the_dashboards_variables() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "namespace", "rollout"}
    queries = panel_queries(dashboard)
    titles = " | ".join(name for name, _ in queries).lower()
    for wanted in ("outcome and guardrail", "dry run", "latency", "prometheus errors", "model"):
        assert wanted in titles, wanted
    assert "shield" in titles
    for name, expr in queries:
        metrics = _metrics_in(expr)
        assert metrics, name
        assert all(m.startswith(f"{PREFIX}_") or m == "up" for m in metrics), (name, metrics)
        assert 'job=~"$job"' in expr, name  # every panel follows the job picker
        values = {v: ".*" for v in variables}
        assert "$" not in grafana_expr(expr, values)
    used = {m for _, expr in queries for m in _metrics_in(expr)}
    assert {
        f"{PREFIX}_decisions_total",
        f"{PREFIX}_decision_duration_seconds_bucket",
        f"{PREFIX}_prometheus_errors_total",
        f"{PREFIX}_model_loaded",
        f"{PREFIX}_model_info",
        f"{PREFIX}_build_info",
    } <= used
    shield = [e for n, e in queries if "shield" in n.lower()]
    assert shield and all('guardrail="shield"' in e for e in shield)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule): a typo fails here, before Grafana."""
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    variables = {"job": ".*", "namespace": ".*", "rollout": ".*"}
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_expr(expr, variables)}
        for i, (_, expr) in enumerate(panel_queries(dashboard))
    ]
    result = check_rules({"groups": [{"name": "dashboard", "rules": rules}]}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "values_file", ["all-features-values.yaml", "observability-values.yaml"]
)
def test_the_rules_pass_promtool(values_file: str, tmp_path: Path) -> None:
    result = check_rules(rule_spec_of(ci_docs(values_file)), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_follow_the_values() -> None:
    default = {r["alert"]: r for r in alert_rules(rule_spec_of(ci_docs("all-features-values.yaml")))}
    assert set(default) == ALERTS
    job = 'job="rollout-agent-k8s-rollout-agent"'
    for rule in default.values():
        assert job in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description"} <= set(rule["annotations"])
    assert default["RolloutAgentNotReady"]["labels"]["severity"] == "critical"
    assert 'decision="abort", answer!="abort"' in default["RolloutAgentDryRunDisagreement"]["expr"]
    assert "promote" not in default["RolloutAgentDryRunDisagreement"]["expr"]

    docs = ci_docs("observability-values.yaml")
    custom = {r["alert"]: r for r in alert_rules(rule_spec_of(docs))}
    assert set(custom) == ALERTS - {"RolloutAgentNotReady"}
    for rule in custom.values():
        assert 'job="rollout-agent", service="rollout-agent"' in rule["expr"]
        assert "k8s-rollout-agent" not in rule["expr"]
        assert rule["labels"]["team"] == "platform"
    errors = custom["RolloutAgentPrometheusErrors"]
    assert (errors["for"], errors["labels"]["severity"]) == ("10m", "critical")
    assert "[15m]" in errors["expr"] and ">= 5" in errors["expr"] and "> 0.1" in errors["expr"]
    disagreement = custom["RolloutAgentDryRunDisagreement"]["expr"]
    assert 'decision="promote", answer!="promote"' in disagreement


def test_the_image_is_the_apps_version_unless_pinned() -> None:
    """No tag committed by CI: the default image is the chart's appVersion; a digest pins it."""
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert (values["image"]["tag"], values["image"]["digest"]) == ("", "")
    default = container(ci_docs("default-values.yaml"))["image"]
    assert default == f"{values['image']['repository']}:{app_version}"
    pinned = container(ci_docs("all-features-values.yaml"))["image"]
    assert re.fullmatch(
        r"ghcr\.io/example/canary-agent:sha-0123456@sha256:[0-9a-f]{64}", pinned
    ), pinned


def test_extra_volumes_mounts_and_env_sources_reach_the_pod() -> None:
    docs = ci_docs("all-features-values.yaml")
    ctr = container(docs)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "prometheus-ca", "configMap": {"name": "prometheus-ca"}} in pod["volumes"]
    mount = {"name": "prometheus-ca", "mountPath": "/etc/ssl/prometheus", "readOnly": True}
    assert mount in ctr["volumeMounts"]
    sources: list[dict[str, Any]] = ctr["envFrom"]
    assert sources[0] == {"configMapRef": {"name": "rollout-agent-k8s-rollout-agent"}}
    assert sources[1:] == [{"secretRef": {"name": "proxy-settings"}}], "after: it may override"
    default = container(ci_docs("default-values.yaml"))
    assert len(default["envFrom"]) == 1


def test_the_service_monitor_takes_relabelings_and_keeps_the_rollout_namespace() -> None:
    (endpoint,) = only(ci_docs("all-features-values.yaml"), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
    ]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    plain = objects(
        render({"auth": {"generateToken": True}, "serviceMonitor": {"enabled": True}})
    )
    (endpoint,) = only(plain, "ServiceMonitor")["spec"]["endpoints"]
    assert "relabelings" not in endpoint and "metricRelabelings" not in endpoint
