"""Write the chart's README.md from README.md.gotmpl and the `# --` comments of values.yaml, as
helm-docs (https://github.com/norwoodj/helm-docs) would, without needing its binary:

    python scripts/chart_readme.py            # rewrite helm/k8s-rollout-agent/README.md
    python scripts/chart_readme.py --check    # exit 1 when the committed README is stale

The template's ``{{ template "chart.valuesSection" . }}`` becomes a "Values" table (key, type,
default, description), one row per documented key, in the order of values.yaml; also
``{{ template "chart.version" . }}`` and ``{{ template "chart.appVersion" . }}``. A key is
documented by a ``# -- text`` comment right above it (the lines after ``# --`` continue it); a
documented map is one row with its whole default, its children none of their own unless they
have a comment too (tests/helm/test_chart_values.py makes sure every key has one, its own or
an ancestor's). A README written by helm-docs from the same template would show the same table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[1] / "helm" / "k8s-rollout-agent"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):(?:\s|$)")
_PLACEHOLDER = re.compile(r'\{\{-? *template "(?P<name>chart\.[\w]+)" \. *-?\}\}')


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _type(value: Any) -> str:
    """helm-docs' type names."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "string"
    return "object"


def _lookup(values: Any, path: list[str]) -> Any:
    for key in path:
        values = values[key]
    return values


def _description(comments: list[str]) -> str | None:
    """The text from the last ``# --`` line of a comment block on, or None."""
    starts = [i for i, line in enumerate(comments) if line.startswith("# --")]
    if not starts:
        return None
    first = starts[-1]
    parts = [comments[first].removeprefix("# --").strip()]
    parts += [line.removeprefix("#").strip() for line in comments[first + 1 :]]
    return " ".join(part for part in parts if part)


def rows(values_text: str) -> list[Row]:
    """The documented keys of a values.yaml, in file order."""
    values = yaml.safe_load(values_text)
    found: list[Row] = []
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    list_indent: int | None = None  # lines deeper than this belong to a list default
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped:
            comments = []
            continue
        indent = len(line) - len(line.lstrip(" "))
        if list_indent is not None and indent > list_indent:
            comments = []
            continue
        list_indent = None
        if stripped.startswith("- "):
            list_indent = indent - 1
            comments = []
            continue
        match = _KEY.match(line)
        if not match:
            comments = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        description = _description(comments)
        comments = []
        if description is None:
            continue
        path = [key for _, key in stack]
        value = _lookup(values, path)
        default = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        found.append(Row(".".join(path), _type(value), default, description))
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def values_section(table_rows: list[Row]) -> str:
    lines = [
        "## Values",
        "",
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
    ]
    for row in table_rows:
        lines.append(
            f"| {row.key} | {row.type} | `{_cell(row.default)}` | {_cell(row.description)} |"
        )
    return "\n".join(lines)


def render(chart_dir: Path = CHART_DIR) -> str:
    """The README the chart's template and values give."""
    template = (chart_dir / "README.md.gotmpl").read_text()
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    sections = {
        "chart.valuesSection": values_section(rows((chart_dir / "values.yaml").read_text())),
        "chart.version": str(chart["version"]),
        "chart.appVersion": str(chart["appVersion"]),
    }

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in sections:
            raise KeyError(f"README.md.gotmpl: unknown template {name!r}")
        return sections[name]

    return _PLACEHOLDER.sub(fill, template).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=Path, default=CHART_DIR)
    parser.add_argument("--check", action="store_true", help="fail when README.md is stale")
    args = parser.parse_args(argv)
    readme = args.chart / "README.md"
    text = render(args.chart)
    if args.check:
        if not readme.is_file() or readme.read_text() != text:
            print(f"{readme} is stale: run python scripts/chart_readme.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    print(f"{readme}: {text.count(chr(10))} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
