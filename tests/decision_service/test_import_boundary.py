"""Serving never loads the training stack: importing the app leaves torch, SB3 and gymnasium out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("torch", "stable_baselines3", "gymnasium", "onnx", "scipy", "matplotlib")


def _printed_by_fresh_python(code: str) -> object:
    """What ``code`` prints last (JSON), run in a fresh interpreter from the repository."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_and_building_the_app_loads_no_training_dependency() -> None:
    code = (
        "import json, sys\n"
        "import decision_service.app, decision_service.__main__\n"
        "decision_service.app.create_app()\n"
        f"print(json.dumps(sorted(m for m in {TRAINING_ONLY!r} if m in sys.modules)))\n"
    )
    assert _printed_by_fresh_python(code) == []


def test_the_replay_loads_no_training_dependency_until_it_draws() -> None:
    """``python -m decision_service.replay`` is serving-side: no torch, gymnasium, scipy, nor
    the scenario format; matplotlib only when ``--plot`` draws."""
    code = (
        "import json, sys\n"
        "import decision_service.replay, decision_service.replay_input\n"
        "import decision_service.timeline_plot\n"
        f"print(json.dumps(sorted(m for m in {(*TRAINING_ONLY, 'scenarios')!r} "
        "if m in sys.modules)))\n"
    )
    assert _printed_by_fresh_python(code) == []


#: The pure modules of the decision: data in, decision out, no I/O.
PURE = (
    "decision_service.snapshot",
    "decision_service.statistics",
    "decision_service.features",
    "decision_service.guardrails",
    "decision_service.pipeline",
)
#: What doing I/O would take: HTTP clients, the web framework, the Prometheus client, the
#: service's own I/O layer (and the scenario package, which the service never needs).
IO_MODULES = (
    "requests",
    "httpx",
    "urllib3",
    "prometheus_api_client",
    "fastapi",
    "starlette",
    "uvicorn",
    "decision_service.prometheus_source",
    "decision_service.queries",
    "decision_service.api",
    "decision_service.app",
    "decision_service.settings",
    "scenarios",
)


def test_the_decision_modules_import_no_io() -> None:
    """``pipeline``, ``features``, ``guardrails``, ``statistics`` and ``snapshot`` load none
    of the I/O layer, in a fresh interpreter: the decision is a pure function of its inputs."""
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in PURE)
        + f"print(json.dumps(sorted(m for m in {IO_MODULES!r} if m in sys.modules)))\n"
    )
    assert _printed_by_fresh_python(code) == []


def test_the_service_never_imports_the_scenario_format() -> None:
    """The scenario format is training's and the demo's; serving builds without it."""
    code = (
        "import json, sys\n"
        "import decision_service.app, decision_service.__main__\n"
        "decision_service.app.create_app()\n"
        "print(json.dumps('scenarios' in sys.modules))\n"
    )
    assert _printed_by_fresh_python(code) is False
