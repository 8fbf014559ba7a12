"""Every query of the chart's Grafana dashboard and every expression of its PrometheusRule, run
on a real Prometheus scraping real decision-service processes that have made decisions.

The world (about 15 s): three ``python -m decision_service`` processes on loopback, asking a
fake Prometheus (:mod:`tests.support.fake_prometheus`) that answers by canary hash — a healthy
canary, one leaning (``lean``), a hard breach (``bad``) or HTTP 500 (``fail``) — on stand-in
ONNX models:

* ``enforce``: an always-promote model, a bearer token; aborts for three Rollouts (one of
  them only once, so that only a count that does not lose a Rollout's first decision sees it),
  a promote, an abort the shield requires (a canary shown beyond the tolerance), Prometheus
  errors, one 401 and one 413;
* ``dry-run``: the same model in dry-run mode answering ``hold``: would-be aborts and promotes;
* ``broken``: a model file that is not ONNX (``rollout_agent_model_loaded`` 0);

plus a scrape target where nothing listens (``up`` 0). The real Prometheus scrapes them as the
chart's ServiceMonitor would have the Prometheus Operator do it: job = the Service's name,
``honor_labels`` (the Rollout's ``namespace`` stays), the pod's namespace on the other series.

Each dashboard query, with Grafana's variables put in, must parse and return series (the key
ones a non-zero value); each alert expression must parse, pass ``promtool check rules`` and
*fire* (return series) in this world, naming what it should. ``for:`` durations are not waited
for: the expressions are evaluated directly.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from decision_service.metrics import PREFIX
from demo_apps.local.prometheus import ScrapeTarget
from tests.conftest import prometheus_binary
from tests.support.fake_prometheus import FakePrometheus, Reply, Traffic, demo_prometheus
from tests.support.observability import (
    alert_rules,
    check_rules,
    dashboard_of,
    grafana_expr,
    panel_queries,
    render_chart,
    rule_spec_of,
)
from tests.support.onnx_models import constant_models
from tests.support.prometheus import PrometheusServer, free_port
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.prometheus

RELEASE = "rollout-agent"
AGENT_NAMESPACE = "platform"
JOB = f"{RELEASE}-k8s-rollout-agent"  # the Service's name: the job a ServiceMonitor gives
TOKEN = "observability-test-token"
VALUES: dict[str, Any] = {
    "auth": {"generateToken": True},
    "serviceMonitor": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "prometheusRule": {"enabled": True},
}
#: Dashboard queries that must not only return series but a value above zero in this world.
NON_ZERO = (
    "Replicas scraped and up",
    "Replicas with the model loaded",
    "Model and build per replica",
    "Decisions by outcome and guardrail",
    "Decisions in the time range by Rollout",
    "Dry run: would-be decision vs answered",
    "Shield decisions by the policy's proposal",
    "Decision latency",
    "Prometheus errors by kind",
    "Refused requests",
)

HEALTHY = demo_prometheus(Traffic(300, 1), Traffic(1200, 4))
BREACH = demo_prometheus(Traffic(300, 150), Traffic(1200, 4))
#: 1 % errors against stable's 0.33 %: the policy promotes, the shield requires an abort.
LEANING = demo_prometheus(Traffic(300, 3), Traffic(1200, 4))


def _by_canary(query: str) -> Reply:
    """The fake Prometheus: its answer follows the canary hash in the query."""
    if "fail" in query:
        return Reply(status=500, body={"status": "error", "error": "injected"})
    if "lean" in query:
        return LEANING(query)
    return BREACH(query) if "bad" in query else HEALTHY(query)


@dataclass
class World:
    prometheus: PrometheusServer
    enforce: ServiceProcess
    dry_run: ServiceProcess
    broken: ServiceProcess
    dead_address: str


def _post(service: ServiceProcess, body: dict[str, str] | bytes, token: str | None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{service.url}/v1/decide", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _decide(service: ServiceProcess, namespace: str, rollout: str, canary: str) -> int:
    body = {
        "namespace": namespace,
        "rollout": rollout,
        "canary_hash": canary,
        "stable_hash": "stable1",
        "step_weight": "20",
    }
    return _post(service, body, TOKEN)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("observability")
    models = constant_models(folder)
    broken_model = folder / "broken.onnx"
    broken_model.write_bytes(b"not an ONNX model")
    with FakePrometheus(_by_canary) as fake:
        common = {
            "PROMETHEUS_URL": fake.url,
            "ANALYSIS_WINDOW": "3s",
            "PROMETHEUS_TIMEOUT_SECONDS": "2",
            "API_TOKEN": TOKEN,
        }
        services = {
            "enforce": ServiceProcess(common | {"MODEL_PATH": str(models["promote"])}),
            "dry-run": ServiceProcess(
                common
                | {
                    "MODEL_PATH": str(models["promote"]),
                    "DRY_RUN": "true",
                    "DRY_RUN_ANSWER": "hold",
                }
            ),
            "broken": ServiceProcess(common | {"MODEL_PATH": str(broken_model)}),
        }
        dead_address = f"127.0.0.1:{free_port()}"  # nothing listens there
        try:
            with ThreadPoolExecutor(len(services)) as pool:  # start-ups overlap
                list(pool.map(lambda s: s.start(), services.values()))
            targets = [
                ScrapeTarget(
                    service.url.removeprefix("http://"),
                    {"namespace": AGENT_NAMESPACE, "pod": f"{JOB}-{name}", "service": JOB},
                )
                for name, service in services.items()
            ]
            targets.append(
                ScrapeTarget(dead_address, {"namespace": AGENT_NAMESPACE, "pod": f"{JOB}-gone"})
            )
            with PrometheusServer(
                prometheus_binary(),
                targets,
                scrape_interval="1s",
                job_name=JOB,
                honor_labels=True,
            ) as prometheus:
                world = World(
                    prometheus,
                    services["enforce"],
                    services["dry-run"],
                    services["broken"],
                    dead_address,
                )
                _make_decisions(world)
                yield world
        finally:
            for service in services.values():
                service.stop()


def _make_decisions(world: World) -> None:
    """Two rounds of decisions, each waited for until Prometheus has scraped it (rate() needs a
    Rollout's series scraped before its increments), on targets Prometheus already scrapes."""
    enforce, dry, prometheus = world.enforce, world.dry_run, world.prometheus
    # Prometheus starts scraping a few seconds after it is ready (discovery is throttled).
    prometheus.wait_for(f'count(up{{job="{JOB}"}}) == 4', timeout=30)
    first = [
        (enforce, "shop", "cart", "bad1", 200),
        (enforce, "shop", "checkout", "bad2", 200),
        (enforce, "shop", "checkout", "good1", 200),
        (enforce, "shop", "checkout", "lean1", 200),
        (enforce, "shop", "checkout", "fail1", 503),
        (enforce, "shop", "checkout", "fail2", 503),
        (dry, "pay", "ledger", "bad3", 200),
        (dry, "pay", "ledger", "good2", 200),
    ]
    second = [
        *first,
        (enforce, "search", "search", "bad4", 200),  # its one and only decision
        (dry, "pay", "invoice", "bad5", 200),  # its one and only decision
    ]
    decided = errors = 0
    for decisions in (first, second):
        for service, namespace, rollout, canary, status in decisions:
            assert _decide(service, namespace, rollout, canary) == status, (rollout, canary)
        decided += sum(status == 200 for *_, status in decisions)
        errors += sum(status == 503 for *_, status in decisions)
        prometheus.wait_for(
            f'sum({PREFIX}_decisions_total{{job="{JOB}"}}) == {decided}'
            f' and sum({PREFIX}_prometheus_errors_total{{job="{JOB}"}}) == {errors}',
            timeout=20,
        )
    assert _post(enforce, {"namespace": "shop"}, None) == 401
    assert _post(enforce, b"{" + b" " * 20_000 + b"}", TOKEN) == 413
    prometheus.wait_for(f'sum({PREFIX}_body_too_large_total{{job="{JOB}"}}) == 1', timeout=20)


def _query(prometheus: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    """An instant query; a PromQL error fails the test with Prometheus' own message."""
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        pytest.fail(f"Prometheus refused {expr!r}: {error.read().decode()}")
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render_chart(VALUES, RELEASE, AGENT_NAMESPACE)


def test_every_dashboard_query_returns_series(world: World, rendered: list[dict[str, Any]]) -> None:
    dashboard = dashboard_of(rendered)
    variables = {"job": JOB, "namespace": ".*", "rollout": ".*"}
    queries = panel_queries(dashboard)
    assert len(queries) >= 14
    empty, zero = [], []
    for name, expr in queries:
        result = _query(world.prometheus, grafana_expr(expr, variables))
        if not result:
            empty.append(name)
        elif name.startswith(NON_ZERO) and not any(v > 0 for v in _values(result)):
            zero.append(name)
    assert empty == [] and zero == []


def test_the_dashboards_variables_list_this_world(
    world: World, rendered: list[dict[str, Any]]
) -> None:
    """Each variable's ``label_values(selector, label)``, run as the series query Grafana makes
    of it: the job, and the Rollouts by namespace."""
    found: dict[str, set[str]] = {}
    for variable in dashboard_of(rendered)["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
        assert match, variable["name"]
        selector = grafana_expr(match[1], {"job": JOB, "namespace": ".*"})
        result = _query(world.prometheus, f"count by ({match[2]}) ({selector})")
        found[variable["name"]] = {s["metric"][match[2]] for s in result}
    assert found == {
        "job": {JOB},
        "namespace": {"shop", "search", "pay"},
        "rollout": {"cart", "checkout", "search", "ledger", "invoice"},
    }


def test_the_dry_run_panel_tells_would_be_from_answered(world: World) -> None:
    selector = f'{PREFIX}_decisions_total{{job="{JOB}", dry_run="true"}}'
    would_be = _query(world.prometheus, f"sum by (decision) ({selector}) > 0")
    answered = _query(world.prometheus, f"sum by (answer) ({selector}) > 0")
    assert {s["metric"]["decision"] for s in would_be} == {"abort", "promote"}
    assert {s["metric"]["answer"] for s in answered} == {"hold"}


def test_the_rules_pass_promtool(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    result = check_rules(rule_spec_of(rendered), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _alert(rendered: list[dict[str, Any]], name: str) -> str:
    (rule,) = [r for r in alert_rules(rule_spec_of(rendered)) if r["alert"] == name]
    expr: str = rule["expr"]
    return expr


def test_every_alert_fires(world: World, rendered: list[dict[str, Any]]) -> None:
    rules = alert_rules(rule_spec_of(rendered))
    assert len(rules) == 4
    silent = [r["alert"] for r in rules if not _query(world.prometheus, r["expr"])]
    assert silent == []


def test_not_ready_fires_for_the_down_target_and_the_replica_without_a_model(
    world: World, rendered: list[dict[str, Any]]
) -> None:
    result = _query(world.prometheus, _alert(rendered, "RolloutAgentNotReady"))
    firing = {(s["metric"]["__name__"], s["metric"]["instance"]) for s in result}
    assert firing == {
        ("up", world.dead_address),
        (f"{PREFIX}_model_loaded", world.broken.url.removeprefix("http://")),
    }


def test_prometheus_errors_fire(world: World, rendered: list[dict[str, Any]]) -> None:
    result = _query(world.prometheus, _alert(rendered, "RolloutAgentPrometheusErrors"))
    assert [s["metric"] for s in result] == [{"job": JOB}]
    (value,) = _values(result)
    assert value >= 3  # the failures counted by increase() over the window


def test_the_abort_spike_counts_every_aborted_rollout(
    world: World, rendered: list[dict[str, Any]]
) -> None:
    """Three Rollouts answered abort; search's one decision created its series already at 1,
    which increase() would not count: the rule's own count does."""
    expr = _alert(rendered, "RolloutAgentAbortSpike")
    result = _query(world.prometheus, expr)
    assert [(s["metric"], v) for s, v in zip(result, _values(result), strict=True)] == [
        ({"job": JOB}, 3.0)
    ]
    answered_abort = f'{PREFIX}_decisions_total{{job="{JOB}", answer="abort"}}'
    naive = _query(
        world.prometheus,
        f"sum by (namespace, rollout) (increase({answered_abort}[30m])) > 0",
    )
    assert {s["metric"]["rollout"] for s in naive} == {"cart", "checkout"}, "the pitfall"


def test_the_dry_run_disagreement_names_the_rollouts(
    world: World, rendered: list[dict[str, Any]]
) -> None:
    result = _query(world.prometheus, _alert(rendered, "RolloutAgentDryRunDisagreement"))
    firing = {
        (
            s["metric"]["namespace"],
            s["metric"]["rollout"],
            s["metric"]["decision"],
            s["metric"]["answer"],
            v,
        )
        for s, v in zip(result, _values(result), strict=True)
    }
    assert firing == {
        ("pay", "ledger", "abort", "hold", 2.0),
        ("pay", "invoice", "abort", "hold", 1.0),
    }


def test_the_service_processes_made_the_decisions_the_world_needs(world: World) -> None:
    """The world is what the docstring says (else the tests above prove less): the breach
    aborts, the dry-run service answered hold, the broken one is not ready."""
    samples = _query(
        world.prometheus,
        f'sum by (instance, decision, guardrail, answer) ({PREFIX}_decisions_total{{job="{JOB}"}})'
        " > 0",
    )
    seen = {
        (s["metric"]["instance"], s["metric"]["decision"], s["metric"]["guardrail"])
        for s in samples
    }
    enforce = world.enforce.url.removeprefix("http://")
    assert {
        (enforce, "abort", "hard_slo_breach"),
        (enforce, "promote", "none"),
        (enforce, "abort", "shield"),
    } <= seen
    assert all(math.isfinite(v) for v in _values(samples))
    with pytest.raises(urllib.error.HTTPError) as unready:
        urllib.request.urlopen(f"{world.broken.url}/readyz", timeout=5).close()
    assert unready.value.code == 503
