"""Scenario files: the shipped library loads, bad files are rejected naming file and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scenarios import (
    SCENARIO_JSON_SCHEMA,
    Conditions,
    EpisodeParameters,
    ScenarioError,
    load_scenario,
    load_scenarios,
    resolve_scenario,
)
from tests.conftest import SCENARIOS_DIR

SEED_SCENARIOS = {"healthy", "buggy", "degrading", "flaky"}
REAL_WORLD = {
    "latency_regression",
    "small_error_regression",
    "slow_leak",
    "low_traffic",
    "noisy_neighbour",
    "better_canary",
}


def test_library_holds_the_seed_and_real_world_scenarios() -> None:
    names = {s.name for s in load_scenarios(SCENARIOS_DIR)}
    assert names >= SEED_SCENARIOS | REAL_WORLD


def test_every_file_documents_its_intent_in_a_header_comment() -> None:
    for path in [*SCENARIOS_DIR.glob("*.yaml"), *SCENARIOS_DIR.glob("holdout/*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# "), path
        assert "Intent:" in path.read_text(), path
        assert load_scenario(path).name == path.stem


def test_intents() -> None:
    """What each file's author meant (the computed truth is checked in test_truth.py)."""
    truth = {s.name: s.truth for s in load_scenarios(SCENARIOS_DIR)}
    assert {n for n, t in truth.items() if t == "good"} == {
        "healthy",
        "low_traffic",
        "noisy_neighbour",
        "better_canary",
        "cold_start",
        "stable_incident",
        "clumped_errors",
        "traffic_dip",
        "transient_spikes",
    }


def test_shipped_json_schema_is_current() -> None:
    shipped = json.loads((SCENARIOS_DIR / "scenario.schema.json").read_text())
    assert shipped == SCENARIO_JSON_SCHEMA


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _base() -> dict:
    return yaml.safe_load((SCENARIOS_DIR / "healthy.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("truth"), "truth"),
        (lambda d: d.update(truth="maybe"), "truth"),
        (lambda d: d["stable"].update(error_rate=1.5), "stable.error_rate"),
        (lambda d: d["traffic"].update(requests_per_second=[10, 5]), "traffic.requests_per_second"),
        (lambda d: d["canary"].update(colour="red"), "canary.colour"),
        (lambda d: d["stable"].update(latency_p50_ms=-3), "stable.latency_p50_ms"),
        (lambda d: d.update(name="Bad Name"), "name"),
    ],
)
def test_bad_files_name_the_file_and_the_field(tmp_path: Path, mutate, field: str) -> None:
    doc = _base()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"field '{field}" in message


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(_write(tmp_path, [1, 2]))


def test_folder_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no \*\.yaml"):
        load_scenarios(tmp_path)
    for i in range(2):
        (tmp_path / f"s{i}.yaml").write_text(yaml.safe_dump(_base()))
    with pytest.raises(ScenarioError, match="also used by"):
        load_scenarios(tmp_path)


def test_resolve_by_name_or_path() -> None:
    assert resolve_scenario("buggy").truth == "bad"
    assert resolve_scenario(str(SCENARIOS_DIR / "flaky.yaml")).name == "flaky"
    with pytest.raises(ScenarioError):
        resolve_scenario("no-such-scenario")


def test_behaviour_model() -> None:
    params = EpisodeParameters.draw(
        load_scenario(SCENARIOS_DIR / "degrading.yaml"), np.random.default_rng(3)
    )
    start = params.drift_starts_after_minutes
    early = params.canary(start, spike=False, incident=False)
    late = params.canary(start + 10, spike=False, incident=False)
    assert late.error_rate > early.error_rate
    assert late.latency_p50_ms > early.latency_p50_ms
    assert params.stable(incident=False).error_rate == pytest.approx(params.stable_error_rate)


def test_shared_incidents_last_their_duration() -> None:
    scenario = load_scenario(SCENARIOS_DIR / "noisy_neighbour.yaml")
    rng = np.random.default_rng(0)
    params = EpisodeParameters.draw(scenario, rng)
    conditions = Conditions(params, scenario, rng)
    states = []
    for _ in range(2000):
        conditions.advance()
        states.append(conditions.incident)
    share = np.mean(states)
    assert 0.2 < share < 0.8  # incidents start 15-30 % of the time and last 1-4 intervals
    assert not any(Conditions(params, scenario, rng).spike for _ in range(3))
