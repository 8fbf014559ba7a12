"""The chart's README.md is what scripts/chart_readme.py makes of README.md.gotmpl and the
`# --` comments of values.yaml (helm-docs' format), and the generator reads those comments as
helm-docs does: continuation lines, list defaults, documented maps and their children."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import yaml

from tests.conftest import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "k8s-rollout-agent"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chart_readme", REPO_ROOT / "scripts" / "chart_readme.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chart_readme = _generator()


def test_the_committed_readme_is_the_generated_one() -> None:
    assert (CHART_DIR / "README.md").read_text() == chart_readme.render(CHART_DIR), (
        "helm/k8s-rollout-agent/README.md is stale: run python scripts/chart_readme.py"
    )


def _leaves(values: object, prefix: str = "") -> set[str]:
    if isinstance(values, dict) and values:
        found: set[str] = set()
        for key, value in values.items():
            found |= _leaves(value, f"{prefix}.{key}" if prefix else key)
        return found
    return {prefix}


def test_every_value_is_in_the_table_itself_or_through_a_documented_map() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    keys = {row.key for row in chart_readme.rows((CHART_DIR / "values.yaml").read_text())}
    uncovered = {
        leaf
        for leaf in _leaves(values)
        if not any(leaf == key or leaf.startswith(key + ".") for key in keys)
    }
    assert uncovered == set()
    readme = (CHART_DIR / "README.md").read_text()
    assert "| prometheusRule.alerts.abortSpike.rollouts | int | `3` |" in readme
    assert '| grafanaDashboard.labels | object | `{"grafana_dashboard":"1"}` |' in readme


def test_the_generator_reads_comments_as_helm_docs_does() -> None:
    text = (
        "# A file header, not a description\n"
        "\n"
        "# -- Replicas; continued\n"
        "# on a second line\n"
        "replicaCount: 2\n"
        "undocumented: x\n"
        "image:\n"
        "  # -- Repository | with a pipe\n"
        "  repository: r\n"
        "# -- A documented map: one row\n"
        "probe:\n"
        "  path: /healthz\n"
        "  # a plain comment: no row\n"
        "  port: 8080\n"
        "# -- A list default: its items are data\n"
        "from:\n"
        "  - name: a\n"
        "    # -- not a key of the values\n"
        "    value: b\n"
        "# -- After the list\n"
        "last: null\n"
    )
    rows = [(r.key, r.type, r.default, r.description) for r in chart_readme.rows(text)]
    assert rows == [
        ("replicaCount", "int", "2", "Replicas; continued on a second line"),
        ("image.repository", "string", '"r"', "Repository | with a pipe"),
        ("probe", "object", '{"path":"/healthz","port":8080}', "A documented map: one row"),
        ("from", "list", '[{"name":"a","value":"b"}]', "A list default: its items are data"),
        ("last", "string", "null", "After the list"),
    ]
    table = chart_readme.values_section(chart_readme.rows(text))
    assert '| image.repository | string | `"r"` | Repository \\| with a pipe |' in table


def test_check_fails_on_a_stale_readme(tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART_DIR, copy)
    assert chart_readme.main(["--chart", str(copy), "--check"]) == 0
    values = copy / "values.yaml"
    values.write_text(values.read_text().replace("# -- Replicas of", "# -- How many replicas of"))
    assert chart_readme.main(["--chart", str(copy), "--check"]) == 1
    assert chart_readme.main(["--chart", str(copy)]) == 0
    assert "How many replicas of" in (copy / "README.md").read_text()
    assert chart_readme.main(["--chart", str(copy), "--check"]) == 0


def test_the_template_stays_out_of_the_packaged_chart() -> None:
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        names = {f["name"] for f in chart.files}
    assert "README.md" in names and "README.md.gotmpl" not in names
    assert "dashboards/rollout-agent.json" in names  # .Files.Get needs it packaged
