"""Evaluate the shipped policy (from its ONNX file) against the tuned classical baselines.

    python -m training.evaluate --scenarios scenarios --episodes 2000 --json report.json \\
        [--plot report.png] [--episodes-csv episodes.csv.gz] [--markdown report.md]

Every agent runs the same seeded episodes (seed = f(scenario name, index)); the table and the
JSON report per scenario and overall: bad promotions, healthy aborts, blast radius (requests
served by a bad canary), decisions to promote, pause rate and the objective of
:mod:`training.env`, plus hold rates and paired 95 % confidence intervals of the policy's
objective against each baseline.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH
from scenarios import load_scenarios
from training.baselines import BASELINES
from training.env import EnvConfig
from training.episodes import EPISODE_COLUMNS, POLICY, AgentSpec, records_as_rows, run_agents
from training.report import acceptance, summarise
from training.tune import DEFAULT_OUT as BASELINES_CONFIG

AGENT_ORDER = (POLICY, "static_threshold", "mann_whitney", "sequential")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """Per scenario and overall, one row per agent (the README's results table)."""
    lines = [
        "| scenario | truth | agent | objective | bad promoted | good aborted | paused | hold rate "
        "| blast radius | decisions to promote |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    holds = report.get("hold_rate", {})
    for name, entry in report["scenarios"].items():
        for agent, s in entry["agents"].items():
            lines.append(
                f"| {name} | {entry['truth']} | {agent} | {_num(s['objective_mean'])} "
                f"| {_pct(s['bad_promotion_rate'])} | {_pct(s['healthy_abort_rate'])} "
                f"| {_pct(s['pause_rate'])} | {_pct(holds.get(name, {}).get(agent))} "
                f"| {_num(s['blast_radius_mean'], 0)} | {_num(s['decisions_to_promote_mean'], 1)} |"
            )
    for agent, s in report["overall"].items():
        lines.append(
            f"| **overall** | | **{agent}** | **{_num(s['objective_mean'])}** "
            f"| {_pct(s['bad_promotion_rate'])} | {_pct(s['healthy_abort_rate'])} "
            f"| {_pct(s['pause_rate'])} | | {_num(s['blast_radius_mean'], 0)} "
            f"| {_num(s['decisions_to_promote_mean'], 1)} |"
        )
    return "\n".join(lines)


def print_summary(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    agents = list(report["overall"])
    header = f"{'scenario':24s} {'truth':5s} " + " ".join(f"{a:>18s}" for a in agents)
    print(
        "objective per episode (higher is better); [bad promoted | good aborted | paused]", file=out
    )
    print(header, file=out)
    rows = [*report["scenarios"].items(), ("OVERALL", {"truth": "", "agents": report["overall"]})]
    for name, entry in rows:
        cells = []
        for agent in agents:
            s = entry["agents"][agent]
            wrong = s["bad_promotion_rate"] if entry["truth"] != "good" else s["healthy_abort_rate"]
            cells.append(
                f"{s['objective_mean']:7.3f} {100 * wrong:4.1f}%/{100 * s['pause_rate']:4.1f}%"
            )
        print(f"{name:24s} {entry['truth']:5s} " + " ".join(f"{c:>18s}" for c in cells), file=out)
    for other, diff in report.get("paired_objective_vs_policy", {}).items():
        print(
            f"policy - {other}: {diff['mean']:+.3f} (95 % CI {diff['ci_low']:+.3f} .. "
            f"{diff['ci_high']:+.3f}, n={diff['n']})",
            file=out,
        )
    for key, value in report.get("acceptance", {}).items():
        print(f"acceptance {key}: {value}", file=out)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenarios = list(report["scenarios"])
    agents = list(report["overall"])
    fig, axes = plt.subplots(2, 1, figsize=(14, 8), constrained_layout=True)
    width = 0.8 / len(agents)
    x = np.arange(len(scenarios))
    for i, agent in enumerate(agents):
        objective = [report["scenarios"][s]["agents"][agent]["objective_mean"] for s in scenarios]
        wrong = [
            report["scenarios"][s]["agents"][agent][
                "bad_promotion_rate"
                if report["scenarios"][s]["truth"] == "bad"
                else "healthy_abort_rate"
            ]
            for s in scenarios
        ]
        axes[0].bar(x + i * width, objective, width, label=agent)
        axes[1].bar(x + i * width, np.array(wrong) * 100, width, label=agent)
    for ax, title in zip(
        axes,
        (
            "objective per episode (higher is better)",
            "wrong terminal decisions, % (bad promoted / good aborted)",
        ),
        strict=True,
    ):
        ax.set_xticks(x + width * (len(agents) - 1) / 2, scenarios, rotation=20, ha="right")
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.legend(ncol=len(agents))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def load_baseline_params(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        print(
            f"warning: {path} missing; baselines run with default parameters "
            "(run `python -m training.tune`)",
            file=sys.stderr,
        )
        return {}
    doc = yaml.safe_load(path.read_text())
    return {name: entry["params"] for name, entry in doc.get("baselines", {}).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios", action="append", required=True, help="scenario file or folder (repeatable)"
    )
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per scenario")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here")
    parser.add_argument("--episodes-csv", type=Path, help="one row per episode (.gz to compress)")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX policy")
    parser.add_argument("--baselines-config", type=Path, default=BASELINES_CONFIG)
    parser.add_argument("--agents", nargs="+", choices=AGENT_ORDER, default=list(AGENT_ORDER))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    scenarios = load_scenarios(args.scenarios)
    config = EnvConfig()
    params = load_baseline_params(args.baselines_config)
    specs = []
    for agent in args.agents:
        if agent == POLICY:
            specs.append(
                AgentSpec(POLICY, model_path=str(args.model), guardrails=GuardrailConfig())
            )
        else:
            assert agent in BASELINES
            specs.append(AgentSpec(agent, params.get(agent)))
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(
            f"\r{done}/{total} batches, {time.perf_counter() - started:.0f}s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    records = run_agents(
        specs, scenarios, args.episodes, config, workers=args.workers, progress=progress
    )
    print(file=sys.stderr)
    report = summarise(records, args.episodes)
    report["acceptance"] = acceptance(report)
    report["agents_config"] = {
        s.name: (s.params if s.name != POLICY else {"model": str(args.model)}) for s in specs
    }
    print_summary(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(report) + "\n")
    if args.episodes_csv:
        args.episodes_csv.parent.mkdir(parents=True, exist_ok=True)
        opener = gzip.open if args.episodes_csv.suffix == ".gz" else open
        with opener(args.episodes_csv, "wt", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(EPISODE_COLUMNS))
            writer.writeheader()
            writer.writerows(records_as_rows(records))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
