"""The Makefile's set-up: every target runs in the project's virtualenv and none installs into
the system's Python (read off `make -n -B` for every phony target, so a target added later is
held to it too; one written the old way, with $(PYTHON) or $(PIP), runs in the venv as well);
`make demo` installs the `demo` extra alone; torch comes alone from the CPU index; installs are
stamped, so a second run installs nothing until pyproject.toml changes (run for real, against a
stand-in Python that only records what it is asked); a missing `venv` module names the package
to install; and `.ci/run` runs `make test` as a user would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

MAKEFILE = REPO_ROOT / "Makefile"
SYSTEM_PYTHON = "SYSTEM-PYTHON"
# A program that is a Python or a pip: python, python3, python3.11, pip3, /usr/bin/python3 ...
PYTHON_OR_PIP = re.compile(r"(?:^|/)(?:python|pip)[0-9.]*$")


def make_env() -> dict[str, str]:
    """The environment without the outer make's (`make test` runs these tests), and with a
    PYTHON that the Makefile must not take (recipes run $(PYTHON): always the venv's)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.pop("TORCH_INDEX_URL", None)  # .ci/run sets it; these tests read the Makefile's default
    env["PYTHON"] = "python3"
    return env


def make_tool() -> str:
    found = shutil.which("make")
    if found is None:
        pytest.skip("make is not installed")
    return found


def phony_targets() -> list[str]:
    text = MAKEFILE.read_text()
    targets = [t for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for t in line.split()]
    assert targets, "the Makefile declares no .PHONY targets"
    return targets


def dry_run(target: str, venv: Path, *assignments: str) -> str:
    """What `make` would run for `target` from nothing (-B: as if no stamp existed)."""
    result = subprocess.run(
        [
            make_tool(),
            "-n",
            "-B",
            target,
            f"BASE_PYTHON={SYSTEM_PYTHON}",
            f"VENV={venv}",
            *assignments,
        ],
        cwd=REPO_ROOT,
        env=make_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def words(script: str) -> list[list[str]]:
    """The shell words of each command in `script` (lines joined, split at ; && || | { } $( )."""
    joined = script.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|(){}")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote inside an echo: keep what split
            tokens = line.split()
        current: list[str] = []
        for token in tokens:
            if token and set(token) <= set(";&|(){}$"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token.removeprefix("$"))
        if current:
            commands.append(current)
    return commands


def outside_venv(commands: list[list[str]], venv_python: str) -> list[str]:
    """The Pythons and pips in `commands` that are not the venv's (the system's Python may only
    make the venv, `-m venv`, or answer a question, `-c`)."""

    def bad(command: list[str], i: int, word: str) -> bool:
        if word == SYSTEM_PYTHON:
            return command[i + 1 : i + 3] != ["-m", "venv"] and command[i + 1 : i + 2] != ["-c"]
        if word == "pip" and command[i - 1 : i] == ["-m"]:
            return command[i - 2] != venv_python
        return bool(PYTHON_OR_PIP.search(word)) and word != venv_python

    return [
        " ".join(command)
        for command in commands
        if any(bad(command, i, word) for i, word in enumerate(command))
    ]


def test_every_target_runs_python_and_pip_from_the_venv_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    for target in phony_targets():
        commands = words(dry_run(target, venv))
        assert outside_venv(commands, f"{venv}/bin/python") == [], f"make {target}"


def test_the_check_sees_a_system_install() -> None:
    """What the Makefile ran before it had a venv is caught."""
    old = (
        "python3 -m pip install --quiet -e '.[train,dev]'\n"
        "$(PIP) install -e . && pip3 list\n"
        "SYSTEM-PYTHON -m pip install x; /v/bin/python -m pytest\n"
    )
    assert outside_venv(words(old), "/v/bin/python") == [
        "python3 -m pip install --quiet -e .[train,dev]",
        "pip3 list",
        "SYSTEM-PYTHON -m pip install x",
    ]


def test_every_python_target_ends_in_the_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    for target in ("test", "test-all", "demo", "lint", "typecheck", "bench", "evaluate"):
        last = dry_run(target, venv).replace("\\\n", " ").strip().splitlines()[-1]
        assert last.startswith(f"{venv}/bin/python "), f"make {target}: {last}"


def test_demo_installs_the_demo_extra_alone(tmp_path: Path) -> None:
    out = dry_run("demo", tmp_path / "venv")
    assert "install --quiet -e '.[demo]'" in out
    assert "train" not in out and "dev]" not in out and "torch" not in out
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("matplotlib") for r in extras["demo"])
    assert not any(
        r.startswith(("torch", "stable-baselines3", "gymnasium")) for r in extras["demo"]
    )


def torch_requirement() -> str:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (requirement,) = [r for r in extras["train"] if re.match(r"torch\b(?!-)", r)]
    return str(requirement)


def test_torch_is_installed_alone_from_the_cpu_index_first(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    pip_lines = [
        line for line in dry_run("install", venv).splitlines() if " -m pip install " in line
    ]
    assert pip_lines == [
        f"{venv}/bin/python -m pip install --quiet --no-deps --extra-index-url "
        f"'https://download.pytorch.org/whl/cpu' '{torch_requirement()}'",
        f"{venv}/bin/python -m pip install --quiet -e '.[train,dev]'",
    ]
    # TORCH_INDEX_URL empty (.ci/run): no extra index at all, torch with the rest.
    out = dry_run("install", venv, "TORCH_INDEX_URL=")
    assert "--extra-index-url" not in out and "--no-deps" not in out


# --- for real, with a stand-in Python ---------------------------------------------------------

FAKE_PYTHON = """#!/usr/bin/env bash
# Records its arguments; makes a venv holding a copy of itself; answers -c with a real Python.
echo "$(basename "$0") $*" >> "$FAKE_PYTHON_LOG"
case "$1" in
  -c) [ -n "${FAKE_PYTHON_OLD:-}" ] && exit 1; exec "$REAL_PYTHON" "$@" ;;
  -m) if [ "$2" = venv ]; then
        [ -n "${FAKE_PYTHON_NO_VENV:-}" ] && { mkdir -p "${@: -1}/bin"; exit 1; }
        mkdir -p "${@: -1}/bin" && cp "$0" "${@: -1}/bin/python"
      fi ;;
esac
exit 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the Makefile reads (Makefile, pyproject.toml, scripts/)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(MAKEFILE, root / "Makefile")
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def run_make(
    project: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = project.parent / "python.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [make_tool(), *args, f"BASE_PYTHON={project.parent / 'python3'}", "TORCH_INDEX_URL=x"],
        cwd=project,
        env={**make_env(), "FAKE_PYTHON_LOG": str(log), "REAL_PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_installs_are_stamped_and_redone_when_pyproject_changes(project: Path) -> None:
    result, calls = run_make(project, "install")
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if " -m pip install " in c] == [
        f"python -m pip install --quiet --no-deps --extra-index-url x {torch_requirement()}",
        "python -m pip install --quiet -e .[train,dev]",
    ]
    assert any(" -m venv " in c for c in calls)
    result, calls = run_make(project, "install")
    assert result.returncode == 0 and calls == [], calls  # nothing to do
    result, calls = run_make(project, "install-demo")
    assert [c for c in calls if "pip install" in c] == ["python -m pip install --quiet -e .[demo]"]
    assert not any(" -m venv " in c for c in calls)  # the same venv
    os.utime(project / "pyproject.toml")  # newer than the stamps
    stamp = project / ".venv" / ".installed-all"
    os.utime(stamp, (stamp.stat().st_atime - 10, stamp.stat().st_mtime - 10))
    result, calls = run_make(project, "install")
    assert [c for c in calls if "pip install" in c][
        -1
    ] == "python -m pip install --quiet -e .[train,dev]"


def test_a_target_written_as_before_the_venv_runs_in_it(project: Path) -> None:
    """A target another branch adds the old way ($(PYTHON), $(PIP)) merges into the venv."""
    with (project / "Makefile").open("a") as makefile:
        makefile.write("\nsoak: install prometheus\n\t$(PYTHON) -m benchmarks.soak\n")
        makefile.write("\ntool:\n\t$(PIP) install some-tool\n")
    result = subprocess.run(
        [make_tool(), "-n", "soak", "tool"],
        cwd=project,
        env=make_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ".venv/bin/python -m benchmarks.soak" in lines
    assert ".venv/bin/python -m pip install some-tool" in lines


def test_a_missing_venv_module_says_what_to_install(project: Path) -> None:
    result, _ = run_make(project, "install", FAKE_PYTHON_NO_VENV="1")
    assert result.returncode != 0
    assert "sudo apt-get install python3-venv" in result.stderr
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}-venv"
    assert minor in result.stderr
    assert not (project / ".venv").exists()  # no half-made venv left for the next run


def test_an_old_python_is_refused_before_anything_is_made(project: Path) -> None:
    result, calls = run_make(project, "install", FAKE_PYTHON_OLD="1")
    assert result.returncode != 0
    assert "older than Python 3.11" in result.stderr
    assert not (project / ".venv").exists() and len(calls) == 1


# --- .ci/run ----------------------------------------------------------------------------------

FAKE_MAKE = """#!/usr/bin/env bash
{ echo "args=$*"; env; } > "$FAKE_MAKE_LOG"
"""


def test_ci_runs_make_test_in_the_venv_like_a_user(tmp_path: Path) -> None:
    text = (REPO_ROOT / ".ci" / "run").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    commands = words(code)
    assert not [w for c in commands for w in c if PYTHON_OR_PIP.search(w)], (
        ".ci/run calls a Python or pip itself instead of going through make"
    )
    repo = tmp_path / "clone"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO_ROOT / ".ci" / "run", repo / ".ci" / "run")
    crds = tmp_path / "shared" / "argo-rollouts" / "crds"
    crds.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    log = tmp_path / "make.log"
    env = {k: v for k, v in make_env().items() if k not in {"ARGO_ROLLOUTS_CRDS"}}
    env.pop("K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS", None)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_MAKE_LOG=str(log), CI="true")
    result = subprocess.run(
        ["bash", str(repo / ".ci" / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "args=test"
    seen = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert seen["K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS"] == "1"
    assert Path(seen["ARGO_ROLLOUTS_CRDS"]).resolve() == crds.resolve()
    assert seen["TORCH_INDEX_URL"] == ""
