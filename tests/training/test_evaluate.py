"""The evaluation CLI: same seeds for every agent, the JSON and CSV contracts."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from decision_service.policy import DEFAULT_MODEL_PATH
from tests.conftest import SCENARIOS_DIR
from training import evaluate
from training.episodes import EpisodeRecord
from training.report import STAT_KEYS, paired_difference, stats
from training.seeds import episode_seed

CSV_COLUMNS = [
    "scenario",
    "truth",
    "seed",
    "agent",
    "outcome",
    "blast_radius",
    "decisions",
    "objective",
    "family",
    "zone",
]


def test_seeds_are_stable_and_distinct() -> None:
    assert episode_seed("buggy", 3) == episode_seed("buggy", 3)
    assert episode_seed("buggy", 3) != episode_seed("healthy", 3)
    assert episode_seed("buggy", 3, "tune") != episode_seed("buggy", 3)


def _record(
    agent: str, seed: int, objective: float, outcome: str = "promoted", truth: str = "good"
) -> EpisodeRecord:
    return EpisodeRecord("s", truth, seed, agent, outcome, 0, 7, objective, 0)


def test_stats_and_paired_difference() -> None:
    records = [_record("a", i, 1.0) for i in range(10)] + [
        _record("b", i, 0.5 if i % 2 else 0.7, "aborted") for i in range(10)
    ]
    s = stats([r for r in records if r.agent == "b"])
    assert s["healthy_abort_rate"] == 1.0 and s["decisions_to_promote_mean"] is None
    diff = paired_difference(records, "a", "b")
    assert diff["mean"] == pytest.approx(0.4)
    assert diff["ci_low"] < 0.4 < diff["ci_high"] and diff["n"] == 10


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="the shipped model is not built yet")
def test_cli_writes_the_contract(tmp_path: Path) -> None:
    out, rows = tmp_path / "report.json", tmp_path / "episodes.csv.gz"
    code = evaluate.main(
        [
            "--scenarios",
            str(SCENARIOS_DIR / "buggy.yaml"),
            "--scenarios",
            str(SCENARIOS_DIR / "healthy.yaml"),
            "--episodes",
            "6",
            "--json",
            str(out),
            "--episodes-csv",
            str(rows),
            "--plot",
            str(tmp_path / "p.png"),
            "--markdown",
            str(tmp_path / "t.md"),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["episodes_per_scenario"] == 6
    agents = {"policy", "static_threshold", "mann_whitney", "sequential", "anytime_valid", "shield"}
    assert set(report["scenarios"]) == {"buggy", "healthy"}
    assert report["scenarios"]["buggy"]["intent"] == "bad"
    assert report["scenarios"]["buggy"]["bad_share"] == 1.0
    assert report["scenarios"]["healthy"]["bad_share"] == 0.0
    assert set(report["families"]) == {"library"}
    assert report["tolerance"]["error_factor"] == 1.2
    for entry in report["scenarios"].values():
        assert set(entry["agents"]) == agents
        for values in entry["agents"].values():
            assert list(values) == list(STAT_KEYS)
    assert set(report["overall"]) == agents
    with gzip.open(rows, "rt") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CSV_COLUMNS
        table = list(reader)
    assert len(table) == 2 * 6 * len(agents)
    # every agent ran the same seeds
    seeds = {a: sorted(r["seed"] for r in table if r["agent"] == a) for a in agents}
    assert len({tuple(v) for v in seeds.values()}) == 1
    assert {r["outcome"] for r in table} <= {"promoted", "aborted", "paused"}
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "| buggy |" in (tmp_path / "t.md").read_text()


def test_the_stress_suite_runs_with_its_own_seeds_and_families(tmp_path: Path) -> None:
    out, rows = tmp_path / "report.json", tmp_path / "episodes.csv"
    code = evaluate.main(
        [
            "--stress",
            "5",
            "--stress-family",
            "dispersed",
            "--stress-family",
            "cold_start",
            "--agents",
            "static_threshold",
            "sequential",
            "--json",
            str(out),
            "--episodes-csv",
            str(rows),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == {"stress:dispersed", "stress:cold_start"}
    assert set(report["families"]) == {"dispersed", "cold_start"}
    with rows.open() as handle:
        table = list(csv.DictReader(handle))
    assert {r["family"] for r in table} == {"dispersed", "cold_start"}
    assert all(r["scenario"] == f"stress:{r['family']}" for r in table)
    assert {r["truth"] for r in table} <= {"good", "bad"}


def test_a_schedule_of_your_own_is_played_and_reported(tmp_path: Path) -> None:
    """``--weights`` and ``--patience``: the Rollout's own steps and ``count``. A baseline that
    holds until the shield allows (``shield`` alone) on ``low_traffic`` pauses at the first
    step after exactly ``patience`` measurements; the report says which schedule it played."""
    out, rows = tmp_path / "report.json", tmp_path / "episodes.csv"
    argv = ["--scenarios", str(SCENARIOS_DIR / "low_traffic.yaml"), "--episodes", "4"]
    argv += ["--agents", "shield", "--workers", "1", "--json", str(out)]
    argv += ["--episodes-csv", str(rows), "--weights", "25,50,100", "--patience", "3"]
    assert evaluate.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["schedule"] == {"weights": [25.0, 50.0, 100.0], "patience": 3}
    with rows.open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["outcome"], r["decisions"]) for r in table] == [("paused", "3")] * 4


@pytest.mark.parametrize("weights", ["50,25", "0,50", "a,b"])
def test_a_schedule_that_cannot_be_a_rollout_is_refused(weights: str) -> None:
    with pytest.raises(SystemExit) as caught:
        evaluate.main(["--scenarios", str(SCENARIOS_DIR), "--weights", weights])
    assert caught.value.code == 2
