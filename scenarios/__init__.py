"""The scenario format: how a canary behaves relative to stable, for the simulator and the demo.

* :mod:`scenarios.model` — the file format (pydantic models, JSON Schema), loading and the
  shipped library (this package's ``*.yaml`` files and ``holdout/``, read as package data);
* :mod:`scenarios.sampling` — one draw of a scenario's ranges and its per-interval weather.

Training, the demo apps and the exporter import this package; the decision service does not.
"""

from scenarios.model import (
    LIBRARY_DIR,
    SCENARIO_JSON_SCHEMA,
    Scenario,
    ScenarioError,
    Truth,
    load_scenario,
    load_scenarios,
    resolve_scenario,
    scenario_files,
)
from scenarios.sampling import Conditions, EpisodeParameters, VersionBehaviour, draw

__all__ = [
    "LIBRARY_DIR",
    "SCENARIO_JSON_SCHEMA",
    "Conditions",
    "EpisodeParameters",
    "Scenario",
    "ScenarioError",
    "Truth",
    "VersionBehaviour",
    "draw",
    "load_scenario",
    "load_scenarios",
    "resolve_scenario",
    "scenario_files",
]
