"""Evaluate the shipped policy (from its ONNX file) against the tuned classical baselines.

    python -m training.evaluate --scenarios scenarios --scenarios scenarios/holdout \\
        [--stress 2000] [--episodes 2000] [--json report.json] [--plot report.png] \\
        [--episodes-csv episodes.csv.gz] [--markdown report.md]

Every agent runs the same seeded episodes (seed = f(scenario name, index)). ``--stress N`` adds
the stress suite (:mod:`training.stress`): ``N`` episodes of every family of random effect
combinations that training never sees. Each episode's truth is computed from its draw against
the tolerance (:mod:`scenarios.truth`). The report gives, per scenario, per family and overall:
bad canaries promoted, good ones aborted, pauses, blast radius, decisions to promote and the
objective of :mod:`training.env`, with hold rates and the policy's paired 95 % confidence
intervals against each baseline (overall, on the library and on the stress suite).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml
from tqdm import tqdm

from decision_service.guardrails import GuardrailConfig
from decision_service.policy import DEFAULT_MODEL_PATH
from decision_service.shield import ShieldConfig
from scenarios import load_scenarios
from training.baselines import BASELINES
from training.env import DEFAULT_WEIGHTS, EnvConfig
from training.episodes import (
    EPISODE_COLUMNS,
    POLICY,
    AgentSpec,
    Suite,
    records_as_rows,
    run_agents,
)
from training.report import acceptance, summarise
from training.stress import FAMILIES
from training.tune import DEFAULT_OUT as BASELINES_CONFIG

AGENT_ORDER = (POLICY, "static_threshold", "mann_whitney", "sequential", "anytime_valid", "shield")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """Per scenario and overall, one row per agent (the README's results table)."""
    lines = [
        "| scenario | family | bad draws | agent | objective | bad promoted | good aborted "
        "| paused | hold rate | blast radius | decisions to promote |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    holds = report.get("hold_rate", {})
    for name, entry in report["scenarios"].items():
        for agent, s in entry["agents"].items():
            lines.append(
                f"| {name} | {entry['family']} | {_pct(entry['bad_share'])} | {agent} "
                f"| {_num(s['objective_mean'])} | {_pct(s['bad_promotion_rate'])} "
                f"| {_pct(s['healthy_abort_rate'])} | {_pct(s['pause_rate'])} "
                f"| {_pct(holds.get(name, {}).get(agent))} "
                f"| {_num(s['blast_radius_mean'], 0)} | {_num(s['decisions_to_promote_mean'], 1)} |"
            )
    for agent, s in report["overall"].items():
        lines.append(
            f"| **overall** | | | **{agent}** | **{_num(s['objective_mean'])}** "
            f"| {_pct(s['bad_promotion_rate'])} | {_pct(s['healthy_abort_rate'])} "
            f"| {_pct(s['pause_rate'])} | | {_num(s['blast_radius_mean'], 0)} "
            f"| {_num(s['decisions_to_promote_mean'], 1)} |"
        )
    return "\n".join(lines)


def releases_table(report: dict[str, Any], group: str = "overall") -> str:
    """Per 100 good and per 100 bad releases, what each analyser did (simulated)."""
    stats = report["overall"] if group == "overall" else report["groups"][group]
    lines = [
        "| analyser | good releases promoted | good paused | good rolled back "
        "| bad releases rolled back | bad paused | bad promoted | minutes to promote a good one |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agent, s in stats.items():
        minutes = s["decisions_to_promote_mean"]
        lines.append(
            f"| {agent} | {_per100(s['good_promoted_rate'])} | {_per100(s['good_paused_rate'])} "
            f"| {_per100(s['healthy_abort_rate'])} | {_per100(s['bad_aborted_rate'])} "
            f"| {_per100(s['bad_paused_rate'])} | {_per100(s['bad_promotion_rate'])} "
            f"| {'—' if minutes is None else f'{minutes * 0.5:.1f}'} |"
        )
    return "\n".join(lines)


def _per100(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}"


def _cell(s: dict[str, Any]) -> str:
    return (
        f"{s['objective_mean']:7.3f} {100 * s['bad_promotion_rate']:4.1f}/"
        f"{100 * s['healthy_abort_rate']:4.1f}/{100 * s['pause_rate']:4.1f}"
    )


def print_summary(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    agents = list(report["overall"])
    print(
        "objective per episode (higher is better) and % bad promoted / good aborted / paused",
        file=out,
    )
    print(f"{'scenario':34s} {'bad':>5s} " + " ".join(f"{a:>24s}" for a in agents), file=out)
    for name, entry in report["scenarios"].items():
        cells = " ".join(f"{_cell(entry['agents'][a]):>24s}" for a in agents)
        print(f"{name:34s} {100 * entry['bad_share']:4.0f}% {cells}", file=out)
    for family, per_agent in report.get("families", {}).items():
        cells = " ".join(f"{_cell(per_agent[a]):>24s}" for a in agents)
        print(f"{'family ' + family:34s} {'':5s} {cells}", file=out)
    cells = " ".join(f"{_cell(report['overall'][a]):>24s}" for a in agents)
    print(f"{'OVERALL':34s} {'':5s} {cells}", file=out)
    groups = report.get("paired_by_group", {})
    for group, diffs in [
        ("overall", report.get("paired_objective_vs_policy", {})),
        *groups.items(),
    ]:
        for other, diff in diffs.items():
            print(
                f"{group}: policy - {other}: {diff['mean']:+.3f} (95 % CI {diff['ci_low']:+.3f} "
                f".. {diff['ci_high']:+.3f}, n={diff['n']})",
                file=out,
            )
    for key, value in report.get("acceptance", {}).items():
        print(f"acceptance {key}: {value}", file=out)


def plot(report: dict[str, Any], path: Path) -> None:
    """Objective, bad promoted and good aborted per scenario and agent (held-out marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenarios = list(report["scenarios"])
    labels = [
        f"{name}\n({report['scenarios'][name]['family']})"
        if report["scenarios"][name]["family"] != "library"
        else name
        for name in scenarios
    ]
    agents = list(report["overall"])
    panels = (
        ("objective_mean", 1.0, "objective per episode (higher is better)"),
        ("bad_promotion_rate", 100.0, "bad canaries promoted, % of bad draws"),
        ("healthy_abort_rate", 100.0, "good canaries aborted, % of good draws"),
    )
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(12, 0.9 * len(scenarios)), 11), constrained_layout=True
    )
    width = 0.8 / len(agents)
    x = np.arange(len(scenarios))
    for ax, (key, scale, title) in zip(axes, panels, strict=True):
        for i, agent in enumerate(agents):
            values = [report["scenarios"][s]["agents"][agent][key] * scale for s in scenarios]
            ax.bar(x + i * width, values, width, label=agent)
        ax.set_xticks(x + width * (len(agents) - 1) / 2, labels, rotation=30, ha="right")
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncol=len(agents))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def library_suites(paths: list[str]) -> list[Suite]:
    """One suite per scenario file; files in a folder named ``holdout`` are the holdout family."""
    suites = []
    for path in paths:
        family = "holdout" if "holdout" in Path(path).parts else "library"
        suites += [Suite.of(s, family) for s in load_scenarios(path)]
    names = [s.name for s in suites]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"scenario names used twice: {', '.join(duplicates)}")
    return suites


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--scenarios", action="append", default=[], help="scenario file or folder (repeatable)"
    )
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per scenario")
    parser.add_argument(
        "--stress",
        type=int,
        default=0,
        metavar="N",
        help="also N episodes of every stress family (training never sees them)",
    )
    parser.add_argument(
        "--stress-family",
        action="append",
        choices=sorted(FAMILIES),
        help="only these stress families (repeatable; default: all)",
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here")
    parser.add_argument("--episodes-csv", type=Path, help="one row per episode (.gz to compress)")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX policy")
    parser.add_argument(
        "--baselines-config",
        type=Path,
        default=BASELINES_CONFIG,
        help="the baselines' tuned parameters (python -m training.tune)",
    )
    parser.add_argument(
        "--agents", nargs="+", choices=AGENT_ORDER, default=list(AGENT_ORDER), help="who runs"
    )
    parser.add_argument(
        "--shield",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the policy inside the shield, as the service does by default",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default=DEFAULT_WEIGHTS,
        help="the Rollout's canary weights, comma-separated (a schedule of your own: a quiet "
        "service's first step is larger; the policy was trained on the default)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=EnvConfig().patience,
        help="measurements per step before a pause (the AnalysisTemplate's count)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    if not args.scenarios and not args.stress:
        parser.error("give --scenarios and/or --stress")
    try:
        config = EnvConfig(weights=args.weights, patience=args.patience)
    except ValueError as exc:
        parser.error(str(exc))

    suites = library_suites(args.scenarios)
    if args.stress:
        suites += [Suite.stress(f) for f in (args.stress_family or FAMILIES)]
    params = load_baseline_params(args.baselines_config)
    specs = []
    for agent in args.agents:
        if agent == POLICY:
            specs.append(
                AgentSpec(
                    POLICY,
                    model_path=str(args.model),
                    guardrails=GuardrailConfig(),
                    shield=ShieldConfig() if args.shield else None,
                )
            )
        else:
            assert agent in BASELINES
            specs.append(AgentSpec(agent, params.get(agent)))
    bar = tqdm(total=0, unit="batch", desc="episodes", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    records = run_agents(
        specs,
        suites,
        args.episodes,
        config,
        stress_episodes=args.stress,
        workers=args.workers,
        progress=progress,
    )
    bar.close()
    report = summarise(records, args.episodes)
    report["stress_episodes_per_family"] = args.stress
    report["acceptance"] = acceptance(report)
    report["tolerance"] = config.tolerance.model_dump()
    report["schedule"] = {"weights": list(config.weights), "patience": config.patience}
    report["policy_shield"] = ShieldConfig().model_dump() if args.shield else None
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


def readme_results(report: dict[str, Any]) -> str:
    """The README's results block from a report: per-100-releases tables for the library and
    the stress suite, the paired comparisons, the shield's guarantees per family and the
    per-scenario objective."""
    out = [
        "Per 100 good and per 100 bad releases (simulated; a good release is one within the "
        "tolerance), on the library and held-out files:",
        "",
        releases_table(report, "library"),
        "",
        "On the stress suite (random combinations of every effect, never trained on):",
        "",
        releases_table(report, "stress"),
        "",
        "The objective per episode (higher is better) and the policy's paired difference with "
        "95 % confidence intervals (same episodes):",
        "",
        "| | " + " | ".join(report["overall"]) + " |",
        "|---|" + "---:|" * len(report["overall"]),
    ]
    for group in ("library", "stress"):
        stats = report["groups"].get(group)
        if stats:
            out.append(
                f"| {group} objective | "
                + " | ".join(f"{s['objective_mean']:.3f}" for s in stats.values())
                + " |"
            )
    for group, diffs in report.get("paired_by_group", {}).items():
        cells = ["—"]
        for other in list(report["overall"])[1:]:
            d = diffs[other]
            cells.append(f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
        out.append(f"| policy − agent, {group} | " + " | ".join(cells) + " |")
    out += [
        "",
        "The shield's guarantees, per scenario and family (the shipped stack: policy inside the "
        "shield). G1: canaries beyond the indifference zone that completed the rollout (≤ 1 %). "
        "G2: canaries equal to or better than stable, without canary-only faults, that were "
        "rolled back (≤ 1 %). — means no such draw:",
        "",
        "| scenario or family | bad draws | G1 policy | G1 shield alone | G2 policy "
        "| G2 shield alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in report["scenarios"].items():
        p = entry["agents"].get(POLICY, {})
        s = entry["agents"].get("shield", {})
        out.append(
            f"| {name} | {100 * entry['bad_share']:.0f} % "
            f"| {_pct(p.get('beyond_zone_promoted_rate'))} "
            f"| {_pct(s.get('beyond_zone_promoted_rate'))} "
            f"| {_pct(p.get('equal_or_better_aborted_rate'))} "
            f"| {_pct(s.get('equal_or_better_aborted_rate'))} |"
        )
    return "\n".join(out)
