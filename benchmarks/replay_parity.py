"""Replay parity, the full figure (``make replay-parity``): the simulator's decisions against the
service's, replayed from a real Prometheus (``training/replay_parity.py`` has the method).

Per library scenario: ``--episodes`` evaluation episodes played with the policy, written as
OpenMetrics, turned into TSDB blocks by promtool, served by one Prometheus (the shared launcher,
``demo_apps/local/prometheus.py``, with a retention long enough for the history's fixed past
dates) and replayed at every measurement. Prints the agreement per scenario and the largest
difference per feature; ``--json`` writes the report with every disagreement.

The policy is the shipped model when it loads, else the linear stand-in
(``training.replay_parity.STAND_IN``); ``--model`` and ``--stand-in`` choose.

Usage: ``python benchmarks/replay_parity.py [--episodes 200] [--scenarios scenarios]
[--json runs/replay-parity/report.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from decision_service.pipeline import Policy  # noqa: E402
from decision_service.policy import DEFAULT_MODEL_PATH, OnnxPolicy, PolicyLoadError  # noqa: E402
from demo_apps.local.prometheus import PrometheusServer, find_prometheus  # noqa: E402
from scenarios import load_scenarios  # noqa: E402
from training.replay_parity import (  # noqa: E402
    LinearPolicy,
    ParityReport,
    run_scenario,
    summary_lines,
    variants,
)


def _policy(args: argparse.Namespace) -> tuple[Policy, str]:
    if args.stand_in:
        return LinearPolicy.stand_in(), "the linear stand-in (training.replay_parity.STAND_IN)"
    path = args.model or DEFAULT_MODEL_PATH
    try:
        policy = OnnxPolicy(path)
    except PolicyLoadError as exc:
        if args.model:
            raise
        print(f"the shipped model does not load ({exc}); using the stand-in", file=sys.stderr)
        return LinearPolicy.stand_in(), "the linear stand-in (the shipped model did not load)"
    return policy, f"{policy.info.label} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200, help="episodes per scenario")
    parser.add_argument("--scenarios", type=Path, default=REPO_ROOT / "scenarios")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--stand-in", action="store_true", help="the linear stand-in policy")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--no-exact-start", action="store_true", help="replay with the demo preset only"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    binary = find_prometheus()
    if binary is None:
        print("Prometheus is not installed (make prometheus)", file=sys.stderr)
        return 2
    policy, described = _policy(args)
    scenarios = load_scenarios(args.scenarios)
    if args.only:
        scenarios = [s for s in scenarios if s.name in set(args.only)]

    @contextmanager
    def serve(data_dir: Path) -> Iterator[str]:
        # The history sits at fixed past dates: keep it (Prometheus' retention counts from the
        # newest block, and 10 years covers any run).
        with PrometheusServer(binary, [], data_dir=data_dir, retention="10y") as server:
            yield server.url

    reports = {
        name: (templates, ParityReport())
        for name, templates in variants(not args.no_exact_start).items()
    }
    started = time.monotonic()
    print(f"policy: {described}; {args.episodes} episodes per scenario")
    with tempfile.TemporaryDirectory(prefix="replay-parity-") as tmp:
        workdir = args.workdir or Path(tmp)
        for scenario in scenarios:
            began = time.monotonic()
            run_scenario(
                scenario,
                range(args.episodes),
                policy,
                serve,
                workdir,
                reports,
                progress=lambda line: print(line, flush=True),
            )
            for name, (_, report) in reports.items():
                tally = report.per_scenario[scenario.name]
                print(
                    f"  {name}: {tally.instants} measurements, agreement "
                    f"{100 * tally.agree / max(tally.instants, 1):.2f} %",
                    flush=True,
                )
            print(f"  ({time.monotonic() - began:.0f} s)", flush=True)
    for name, (_, report) in reports.items():
        print(f"== {name}")
        for line in summary_lines(report):
            print(line)
    print(f"{time.monotonic() - started:.0f} s in all")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "policy": described,
            "episodes_per_scenario": args.episodes,
            "variants": {name: report.as_dict() for name, (_, report) in reports.items()},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
