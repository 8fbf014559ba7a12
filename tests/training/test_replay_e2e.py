"""End to end: a simulated buggy episode and a healthy one become OpenMetrics, promtool turns
them into TSDB blocks, a real Prometheus serves them, and ``python -m decision_service.replay``
replays each from the AnalysisRuns Argo would have recorded: the buggy canary is aborted at the
measurement the simulator aborted it, the healthy one promoted through every step, every
decision the simulator's. Then the ways a user's input can be wrong, against that Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from decision_service.replay import EXIT_BAD_INPUT, run
from decision_service.replay_input import format_time
from scenarios import resolve_scenario
from tests.conftest import REPO_ROOT, prometheus_binary, promtool_binary
from tests.support.onnx_models import build_model
from tests.support.prometheus import PrometheusServer
from training.openmetrics import EpisodeHistory, create_blocks, write_openmetrics
from training.replay_parity import (
    STAND_IN,
    STAND_IN_BIAS,
    LinearPolicy,
    RecordedEpisode,
    argo_analysis_runs,
    record_episode,
    service_config,
)

pytestmark = pytest.mark.prometheus


@dataclass
class History:
    url: str
    model: Path
    episodes: dict[str, RecordedEpisode]
    runs: dict[str, Path]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    binary, promtool = prometheus_binary(), promtool_binary()
    folder = tmp_path_factory.mktemp("replay-e2e")
    policy = LinearPolicy.stand_in()
    episodes = {
        name: record_episode(
            # seed 7: a healthy draw the shield lets climb (most healthy draws at 20-200 req/s
            # cannot lean within the zone at 5 % in ten windows, and pause there)
            resolve_scenario(name),
            0 if name == "buggy" else 7,
            policy,
            service_config(),
        )
        for name in ("buggy", "healthy")
    }
    with (folder / "history.om").open("w") as out:
        write_openmetrics([e.history for e in episodes.values()], out)
    create_blocks(folder / "history.om", folder / "data", promtool=promtool)
    runs = {}
    for name, episode in episodes.items():
        runs[name] = folder / f"{name}-analysisruns.yaml"
        document = {"apiVersion": "v1", "kind": "List", "items": argo_analysis_runs(episode)}
        runs[name].write_text(yaml.safe_dump(document))
    model = build_model(folder / "stand-in.onnx", q_values=STAND_IN_BIAS, weights=STAND_IN)
    with PrometheusServer(binary, [], data_dir=folder / "data", retention="10y") as server:
        yield History(server.url, model, episodes, runs)


def _target(h: EpisodeHistory) -> list[str]:
    """The replay's flags naming an episode's canary."""
    return [
        "--namespace",
        h.namespace,
        "--rollout",
        h.rollout,
        "--canary-hash",
        h.canary_hash,
        "--stable-hash",
        h.stable_hash,
    ]


def _replay(history: History, *args: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = run(["--prometheus", history.url, "--model", str(history.model), *args], lines.append)
    return status, lines


def test_the_buggy_canary_is_aborted_where_the_simulator_aborted_it(
    history: History, tmp_path: Path
) -> None:
    episode = history.episodes["buggy"]
    assert episode.outcome == "aborted"
    out = tmp_path / "buggy.json"
    status, lines = _replay(
        history, "--analysisrun", str(history.runs["buggy"]), "--json", str(out)
    )
    assert status == 0, lines
    document = json.loads(out.read_text())
    replayed = [(d["decision"], d["guardrail"]) for d in document["decisions"]]
    assert replayed == [(d.decision, d.guardrail) for d in episode.decisions]
    assert replayed[-1][0] == "abort"
    abort_at = format_time(episode.history.measured_at(episode.decisions[-1].index))
    assert document["summary"]["first_abort"]["time"] == abort_at
    assert any(line.startswith("the service would have aborted the rollout at") for line in lines)
    n = len(episode.decisions)
    assert f"same decision as Argo recorded: {n} of {n} measurements" in lines
    # every instant carries what the service computed from
    first = document["decisions"][0]
    assert set(first["observation"]) >= {"canary_error_rate", "shield_abort_allowed"}
    assert set(first["q_values"]) == {"hold", "promote", "abort"}
    assert first["window"]["canary"]["requests"] == episode.history.intervals[0].canary.requests


def test_the_healthy_canary_is_promoted_through_every_step(
    history: History, tmp_path: Path
) -> None:
    episode = history.episodes["healthy"]
    assert episode.outcome == "promoted"
    out, picture = tmp_path / "healthy.json", tmp_path / "healthy.png"
    status, lines = _replay(
        history,
        "--analysisrun",
        str(history.runs["healthy"]),
        "--json",
        str(out),
        "--plot",
        str(picture),
        "--quiet",
    )
    assert status == 0, lines
    decisions = [d["decision"] for d in json.loads(out.read_text())["decisions"]]
    assert decisions == [d.decision for d in episode.decisions]
    assert "abort" not in decisions and decisions.count("promote") == 7
    assert picture.stat().st_size > 10_000


def test_the_command_runs_as_a_module_and_prints_a_line_per_decision(history: History) -> None:
    """The entry point a user types, with a hand-written timeline of the buggy episode."""
    episode = history.episodes["buggy"]
    h = episode.history
    timeline = ",".join(
        f"{d.weight:g}%@{format_time(h.measured_at(d.index))}" for d in episode.decisions
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "decision_service.replay",
            "--prometheus",
            history.url,
            *_target(h),
            "--timeline",
            timeline,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "MODEL_PATH": str(history.model)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    decided = [line for line in lines if line.startswith("[")]
    assert len(decided) == len(episode.decisions)
    assert "step  1/1     5 %  #1  hold    (Inconclusive)" in decided[0]
    assert "abort   (Failed)" in decided[-1]


def test_a_time_outside_retention_is_refused(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    h = history.episodes["buggy"].history
    before = format_time(h.first_sample - 86_400)
    status, _ = _replay(
        history,
        *_target(h),
        "--timeline",
        f"5%@{before}",
    )
    assert status == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "before the oldest sample Prometheus holds" in err
    assert format_time(h.first_sample) in err and "retention 10y" in err


def test_unknown_hashes_and_rollouts_are_refused(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    h = history.episodes["buggy"].history
    at = format_time(h.measured_at(0))
    target = ["--namespace", h.namespace, "--rollout", h.rollout, "--stable-hash", h.stable_hash]
    status, _ = _replay(history, *target, "--canary-hash", "0000000000", "--timeline", f"5%@{at}")
    assert status == EXIT_BAD_INPUT
    assert "no series of the canary 0000000000" in capsys.readouterr().err
    status, _ = _replay(
        history, "--analysisrun", str(history.runs["buggy"]), "--rollout", "checkout"
    )
    assert status == EXIT_BAD_INPUT
    assert f"--rollout checkout does not match the rollout '{h.rollout}'" in (
        capsys.readouterr().err
    )
    # a rollout whose hashes select nothing with the preset that selects by Service
    status, _ = _replay(
        history, "--analysisrun", str(history.runs["buggy"]), "--preset", "ingress-nginx"
    )
    assert status == EXIT_BAD_INPUT
    assert f"(namespace {h.namespace}, rollout {h.rollout})" in capsys.readouterr().err


def test_an_unwritable_output_is_a_message(
    history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    runs = str(history.runs["buggy"])
    status, _ = _replay(history, "--analysisrun", runs, "--json", str(blocker / "out.json"))
    assert status == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(f"error: {blocker}")
