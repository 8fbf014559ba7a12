"""The chart's dashboard and alerts as the tests read them: rendered by Helm, the dashboard's
PromQL with Grafana's variables put in, the PrometheusRule's spec as a Prometheus rules file,
and ``promtool check rules`` on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.conftest import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"
DASHBOARD_FILE = CHART_DIR / "dashboards" / "rollout-agent.json"
#: What Grafana puts in for its built-in variables when a test runs a panel's query: windows long
#: enough to span a whole test (a test's data is seconds to minutes old).
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__range": "10m", "__interval": "15s"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def render_chart(values: dict[str, Any], name: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's objects for ``values`` (NOTES.txt aside)."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values, name=name, namespace=namespace)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def dashboard_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The dashboard JSON the chart's ConfigMap carries."""
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    (text,) = config_map["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def rule_spec_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel with queries (rows' own panels included)."""
    found = []
    for panel in dashboard["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [p for p in found if p.get("targets")]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` of every query of every panel."""
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def grafana_expr(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced as Grafana would (``variables`` for the
    dashboard's own, :data:`GRAFANA_BUILTINS` for the built-in ones); an unknown one fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        known = GRAFANA_BUILTINS | variables
        if name not in known:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return known[name]

    return _VARIABLE.sub(value, expr)


def alert_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


def promtool_binary() -> str:
    """promtool beside the Prometheus binary or on the PATH; skip (fail under CI's flag)."""
    beside = os.environ.get("PROMETHEUS_BIN")
    candidates = [str(Path(beside).with_name("promtool")) if beside else None, "promtool"]
    for candidate in candidates:
        found = candidate and shutil.which(candidate)
        if found:
            return found
    reason = "promtool (it ships with Prometheus) is not installed"
    if os.environ.get("K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"{reason}; K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS=1 forbids skipping")
    pytest.skip(reason)


def check_rules(spec: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on the PrometheusRule's spec written as a rules file (the
    operator hands Prometheus exactly its ``groups``)."""
    path = folder / "rollout-agent.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
    return subprocess.run(
        [promtool_binary(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
