"""Two ways of serving or sending the same requests, measured in alternating rounds.

Shared by ``bench_loadgen.py`` (two HTTP clients against the demo apps) and ``bench_app.py``
(two ways of answering ``GET /`` in the demo app): their command-line arguments, the
``instant`` scenario, starting a demo app, a round's :class:`Run`, the rounds with the order
alternating (so a machine that slows down during the benchmark weighs on both sides alike) and
the medians with their ratio. The scripts put the repository on ``sys.path`` first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from demo_apps.local.processes import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    loopback_env,
    wait_ready,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The demo app answering at once, without errors: the other side, not the scenario, sets the
#: pace.
INSTANT_SCENARIO = """\
name: instant
truth: good
description: Answers at once, without errors, so that what is measured sets the pace.
traffic: {requests_per_second: 100}
stable: {error_rate: 0.0, latency_p50_ms: 0.001, latency_spread: 0.001}
"""


def add_round_arguments(parser: argparse.ArgumentParser, side: str) -> None:
    """``--seconds`` (per ``side`` and round), ``--concurrency``, ``--rounds``, ``--scenario``."""
    parser.add_argument("--seconds", type=float, default=5.0, help=f"per {side} and round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", default="instant", help="instant, a shipped name or a file")


def heading(args: argparse.Namespace) -> str:
    """What the medians were measured on, from :func:`add_round_arguments`' arguments."""
    return (
        f"scenario {args.scenario}, {args.concurrency} in flight, {args.seconds:g} s x "
        f"{args.rounds} rounds"
    )


def start_app(
    name: str,
    track: str,
    scenario: str,
    folder: Path,
    argv: Callable[[int], Sequence[str]] | None = None,
) -> tuple[ManagedProcess, str]:
    """A demo app on loopback, ready: its process and its ``GET /`` URL. ``argv(port)``
    replaces ``python -m demo_apps.app`` (a baseline app)."""
    port = free_port()
    command = (
        [sys.executable, "-m", "demo_apps.app", "--host", LOOPBACK, "--port", str(port)]
        if argv is None
        else list(argv(port))
    )
    env = {"APP_TYPE": track, "SCENARIO": scenario, "PYTHONPATH": str(REPO_ROOT)}
    process = ManagedProcess(f"app-{name}", command, loopback_env(env), folder / f"{name}.log")
    process.start()
    url = f"http://{LOOPBACK}:{port}/"
    try:
        wait_ready(process, f"{url}healthz", 30)
    except BaseException:
        process.stop()
        raise
    return process, url


def scenario_path(scenario: str, folder: Path) -> str:
    """``scenario`` as the apps' ``SCENARIO``: ``instant`` is written to ``folder``."""
    if scenario != "instant":
        return scenario
    path = folder / "instant.yaml"
    path.write_text(INSTANT_SCENARIO)
    return str(path)


@dataclass
class Run:
    """One side's round: requests answered in ``seconds``, and the CPU time it measured."""

    name: str
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int = 0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / max(self.requests, 1)


def alternate(
    names: tuple[str, str], rounds: int, measure: Callable[[str], Run], cpu_label: str
) -> dict[str, list[Run]]:
    """``rounds`` rounds of ``measure(name)`` for both names, the first name first in odd
    rounds and second in even ones; prints each round."""
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else names[::-1]:
            run = measure(name)
            runs[name].append(run)
            print(
                f"round {round_number + 1} {name:<9s} {run.per_second:7.0f} req/s, "
                f"{run.cpu_us_per_request:6.0f} µs {cpu_label}/request, {run.errors} errors",
                flush=True,
            )
    return runs


def print_medians(runs: dict[str, list[Run]], heading: str, cpu_label: str) -> None:
    """Each side's median requests/s and CPU per request, then the first side's ratios to the
    second's."""
    print(f"{heading} (medians):")
    median = {
        name: (
            statistics.median(r.per_second for r in rs),
            statistics.median(r.cpu_us_per_request for r in rs),
        )
        for name, rs in runs.items()
    }
    for name, (rps, cpu) in median.items():
        print(f"  {name:<9s} {rps:7.0f} req/s, {cpu:6.0f} µs {cpu_label}/request")
    (first, (f_rps, f_cpu)), (second, (s_rps, s_cpu)) = median.items()
    print(
        f"  {first} / {second}: {f_rps / s_rps:.2f}x the requests/s, "
        f"{f_cpu / s_cpu:.2f}x the CPU per request"
    )
