"""Tune each classical baseline for the shared objective: a small, documented grid search.

Every combination of a baseline's ``GRID`` (see :mod:`training.baselines`) runs on the same
seeded episodes of the training scenarios (seeds salted ``"tune"``, disjoint from the
evaluation's), and the combination with the best mean objective wins. The winners and the
whole grid's scores go to ``training/configs/baselines.yaml``, which ``training.evaluate`` reads.

    python -m training.tune --scenarios scenarios --episodes 150
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from scenarios import load_scenarios
from training.baselines import BASELINES
from training.env import EnvConfig
from training.episodes import AgentSpec, run_agents

DEFAULT_OUT = Path(__file__).resolve().parent / "configs" / "baselines.yaml"


def grid(name: str) -> list[dict[str, Any]]:
    space = BASELINES[name].GRID
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--scenarios",
        action="append",
        help="scenario file or folder (repeatable); default scenarios",
    )
    parser.add_argument("--episodes", type=int, default=150, help="episodes per scenario")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the tuned parameters (YAML)")
    parser.add_argument(
        "--only",
        choices=sorted(BASELINES),
        action="append",
        help="tune only this baseline (repeatable); the others keep their tuned parameters",
    )
    args = parser.parse_args(argv)

    scenarios = load_scenarios(args.scenarios or ["scenarios"])
    config = EnvConfig()
    result: dict[str, Any] = {
        "objective": "training.env reward (mean per episode)",
        "scenarios": [s.name for s in scenarios],
        "episodes_per_scenario": args.episodes,
        "seed_salt": "tune",
        "baselines": {},
    }
    for name in args.only or sorted(n for n in BASELINES if BASELINES[n].GRID):
        combos = grid(name)
        specs = [AgentSpec(name, params) for params in combos]
        started = time.perf_counter()
        scores: list[tuple[float, dict[str, Any]]] = []
        for spec in tqdm(specs, desc=name, unit="combination", file=sys.stderr):
            records = run_agents(
                [spec], scenarios, args.episodes, config, salt="tune", workers=args.workers
            )
            score = sum(r.objective for r in records) / len(records)
            scores.append((score, spec.params or {}))
        scores.sort(key=lambda item: -item[0])
        best_score, best = scores[0]
        print(
            f"{name}: {len(combos)} combinations in {time.perf_counter() - started:.0f}s; "
            f"best {best_score:.3f} with {best}"
        )
        result["baselines"][name] = {
            "params": best,
            "objective_mean": round(best_score, 4),
            "grid": {k: list(v) for k, v in BASELINES[name].GRID.items()},
            "top5": [{"objective_mean": round(s, 4), "params": p} for s, p in scores[:5]],
        }
    if args.only and args.out.exists():
        previous = yaml.safe_load(args.out.read_text()) or {}
        merged = previous.get("baselines", {})
        merged.update(result["baselines"])
        result["baselines"] = merged
    header = "# Tuned baseline parameters; written by `python -m training.tune`. Do not edit.\n"
    args.out.write_text(header + yaml.safe_dump(result, sort_keys=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
