"""Serving never loads the training stack: importing the app leaves torch, SB3 and gymnasium out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("torch", "stable_baselines3", "gymnasium", "onnx", "scipy", "matplotlib")


def test_importing_and_building_the_app_loads_no_training_dependency() -> None:
    code = (
        "import json, sys\n"
        "import decision_service.app, decision_service.__main__\n"
        "decision_service.app.create_app()\n"
        f"print(json.dumps(sorted(m for m in {TRAINING_ONLY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
