"""The scripts the workflows run: set_image.py (points the kustomization at a new image,
touching only those lines; the chart is never edited, its image tag is its appVersion) and
commit_and_push.sh (the bot's commit, rebased and retried when another build pushed first),
run here against copies of the real files and a local Git remote.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / ".github" / "scripts"
CHART_VALUES = REPO_ROOT / "helm" / "k8s-rollout-agent" / "values.yaml"
KUSTOMIZATION = REPO_ROOT / "rollouts" / "base" / "kustomization.yaml"


def load_set_image() -> ModuleType:
    spec = importlib.util.spec_from_file_location("set_image", SCRIPTS / "set_image.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


set_image = load_set_image()


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_chart_is_no_longer_edited() -> None:
    """No command edits values.yaml: the chart's image tag is its appVersion (build-agent.yaml)."""
    assert not hasattr(set_image, "set_chart_image")
    with pytest.raises(SystemExit):
        set_image.main(
            ["chart", "--values", str(CHART_VALUES), "--repository", "a/b", "--tag", "t"]
        )


def test_kustomization_edit_touches_only_the_named_image() -> None:
    if not KUSTOMIZATION.is_file():
        pytest.skip("rollouts/base/kustomization.yaml is not there yet")
    before = KUSTOMIZATION.read_text()
    after = set_image.set_kustomize_image(before, "demo-app", "ghcr.io/acme/demo-app", "stable-1")
    (entry,) = [i for i in yaml.safe_load(after)["images"] if i["name"] == "demo-app"]
    assert entry == {"name": "demo-app", "newName": "ghcr.io/acme/demo-app", "newTag": "stable-1"}
    assert all(line.strip("+- ").startswith("new") for line in changed_lines(before, after))
    assert yaml.safe_load(after)["resources"] == yaml.safe_load(before)["resources"]


def test_kustomization_edit_inserts_keys_inside_the_right_entry() -> None:
    text = (
        "images:\n"
        "  - name: other\n    newTag: keep\n"
        "  - name: demo-app\n"
        "  - name: last\n    newName: x/last\n"
        "resources:\n  - a.yaml\n"
    )
    images = yaml.safe_load(set_image.set_kustomize_image(text, "demo-app", "r/demo", "t1"))
    assert images["images"] == [
        {"name": "other", "newTag": "keep"},
        {"name": "demo-app", "newName": "r/demo", "newTag": "t1"},
        {"name": "last", "newName": "x/last"},
    ]
    assert images["resources"] == ["a.yaml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resources: []\n", "no top-level `images:`"),
        ("images:\n  - name: other\n", "no `images:` entry named 'demo-app'"),
    ],
)
def test_kustomization_edit_refuses_what_it_cannot_find(text: str, message: str) -> None:
    with pytest.raises(set_image.ImageEditError, match=message):
        set_image.set_kustomize_image(text, "demo-app", "r/demo", "t1")


@pytest.mark.parametrize(
    ("repository", "tag"),
    [
        ("ghcr.io/Acme/agent", "v1"),  # registries want lower case
        ("ghcr.io/acme/agent;rm -rf /", "v1"),
        ("ghcr.io/acme/agent", "v1 --push"),
        ("ghcr.io/acme/agent", ""),
    ],
)
def test_bad_references_are_refused(repository: str, tag: str) -> None:
    with pytest.raises(set_image.ImageEditError):
        set_image.set_kustomize_image(KUSTOMIZATION.read_text(), "demo-app", repository, tag)


def test_cli_edits_in_place_and_reports_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.yaml"
    shutil.copy(KUSTOMIZATION, copy)
    args = ["kustomization", "--file", str(copy), "--name", "demo-app"]
    assert set_image.main([*args, "--new-name", "ghcr.io/a/b", "--new-tag", "sha-1"]) == 0
    images = yaml.safe_load(copy.read_text())["images"]
    assert {"newName": "ghcr.io/a/b", "newTag": "sha-1"}.items() <= images[0].items()
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text("resources: []\n")
    args = ["kustomization", "--file", str(kustomization), "--name", "demo-app"]
    assert set_image.main([*args, "--new-name", "r/demo", "--new-tag", "t"]) == 1
    assert "no top-level `images:`" in capsys.readouterr().err


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture
def repo_with_remote(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(remote), str(work))
    (work / "values.yaml").write_text("tag: old\n")
    (work / "other.txt").write_text("x\n")
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "start")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return work, remote


def run_commit_and_push(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / "commit_and_push.sh"), *args],
        cwd=work,
        env={**os.environ, "GITHUB_REF_NAME": "main"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_commit_and_push_commits_only_the_named_files(
    repo_with_remote: tuple[Path, Path],
) -> None:
    work, remote = repo_with_remote
    (work / "values.yaml").write_text("tag: new\n")
    (work / "other.txt").write_text("an unrelated edit\n")
    result = run_commit_and_push(work, "bump tag", "values.yaml")
    assert result.returncode == 0, result.stderr
    assert git(remote, "log", "-1", "--format=%s%n%an", "main") == "bump tag\ngithub-actions[bot]"
    assert git(remote, "show", "--name-only", "--format=", "main") == "values.yaml"


def test_commit_and_push_rebases_on_a_concurrent_push(
    repo_with_remote: tuple[Path, Path], tmp_path: Path
) -> None:
    work, remote = repo_with_remote
    other = tmp_path / "other-clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(other))
    (other / "other.txt").write_text("pushed first\n")
    git(other, "commit", "--quiet", "-am", "the other build")
    git(other, "push", "--quiet", "origin", "HEAD:main")
    (work / "values.yaml").write_text("tag: new\n")
    result = run_commit_and_push(work, "bump tag", "values.yaml")
    assert result.returncode == 0, result.stderr
    assert git(remote, "log", "--format=%s", "main").splitlines()[:2] == [
        "bump tag",
        "the other build",
    ]


def test_commit_and_push_without_changes_is_a_no_op(
    repo_with_remote: tuple[Path, Path],
) -> None:
    work, remote = repo_with_remote
    before = git(remote, "rev-parse", "main")
    result = run_commit_and_push(work, "nothing", "values.yaml")
    assert result.returncode == 0 and "nothing to commit" in result.stdout
    assert git(remote, "rev-parse", "main") == before
