"""The GitHub Actions workflows: valid against GitHub's workflow schema (check-jsonschema's
built-in copy), clean under zizmor's offline audits, and held to the project's rules — least
permissions, `timeout-minutes` on every job, actions pinned to full commit SHAs, no `${{ }}`
expression inside a shell script, checkouts that drop their token unless the job pushes — plus
what each workflow must do and the files and names it relies on from the rest of the
repository. The workflows themselves run on GitHub (image builds, kind e2e); this is what can be
proven here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support.tools import dev_tool

GITHUB_DIR = REPO_ROOT / ".github"
WORKFLOWS_DIR = GITHUB_DIR / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.y*ml"))
EXPECTED = {"ci", "build-app", "build-agent", "train-export", "deploy", "e2e-kind"}
ARGO_ROLLOUTS_COMMIT = "9f8d111d8f8e3e88b6d7f8bbdf62fd3cd863ef9d"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*")


def load(path: Path) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the `on:` key as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS_DIR / f"{name}.yaml")


def jobs(name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow(name)["jobs"]
    return found


def steps(wf: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in wf["jobs"].values() for step in job.get("steps", [])]


def scripts(wf: dict[str, Any]) -> str:
    return "\n".join(step["run"] for step in steps(wf) if "run" in step)


def tool(name: str) -> str:
    found = dev_tool(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is in the dev extra)")
    return found


def test_the_expected_workflows_exist() -> None:
    assert {path.stem for path in WORKFLOWS} == EXPECTED
    assert all(path.suffix == ".yaml" for path in WORKFLOWS)


def test_workflows_match_githubs_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_matches_its_schema() -> None:
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.dependabot",
            GITHUB_DIR / "dependabot.yml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def zizmor_findings(target: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return [f for f in findings if not f.get("ignored")]


def test_zizmor_finds_nothing() -> None:
    findings = zizmor_findings(GITHUB_DIR)
    assert findings == [], [(f["ident"], f["desc"]) for f in findings]


def test_zizmor_flags_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "on: issues\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.issue.title }}\n"
    )
    idents = {f["ident"] for f in zizmor_findings(bad)}
    assert {"template-injection", "unpinned-uses"} <= idents


def test_narrow_zizmor_ignores_are_justified() -> None:
    """Each inline ignore names one audit and sits under a comment saying why."""
    for path in WORKFLOWS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "zizmor: ignore" in line:
                assert re.search(r"zizmor: ignore\[[a-z-]+\]", line), f"{path.name}:{number + 1}"
                assert lines[number - 1].strip().startswith("#"), f"{path.name}:{number + 1}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_permissions(path: Path) -> None:
    wf = load(path)
    assert "permissions" in wf, "set workflow-level permissions (read-only or none)"
    top = wf["permissions"]
    assert top == {} or all(level == "read" for level in top.values()), top
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", top)
        assert perms not in ("write-all", "read-all"), name
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= {"contents", "packages"}, (name, writes)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_timeout(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        timeout = job.get("timeout-minutes")
        assert isinstance(timeout, int) and 0 < timeout <= 360, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commit_shas(path: Path) -> None:
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if match:
            ref, rest = match.groups()
            assert PINNED.match(ref), f"not pinned to a full SHA: {ref}"
            assert VERSION_COMMENT.search(rest), f"say which version the SHA is: {line.strip()}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expressions_inside_shell_scripts(path: Path) -> None:
    """Values reach scripts through `env:`, never spliced into the script text."""
    for step in steps(load(path)):
        assert "${{" not in step.get("run", ""), step.get("name", step["run"][:40])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_drop_their_token_unless_the_job_pushes(path: Path) -> None:
    wf = load(path)
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", wf.get("permissions", {}))
        pushes = perms.get("contents") == "write"
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                persist = step.get("with", {}).get("persist-credentials", True)
                assert persist is pushes, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shell_scripts_parse(path: Path, tmp_path: Path) -> None:
    bash = tool("bash")
    for number, step in enumerate(steps(load(path))):
        if "run" in step:
            script = tmp_path / f"step{number}.sh"
            script.write_text(step["run"])
            result = subprocess.run([bash, "-n", script], capture_output=True, text=True)
            assert result.returncode == 0, (step.get("name"), result.stderr)


def test_helper_scripts_parse_and_are_executable() -> None:
    for script in sorted((GITHUB_DIR / "scripts").glob("*.sh")):
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
        result = subprocess.run([tool("bash"), "-n", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def referenced_repo_paths(text: str) -> set[str]:
    prefixes = r"(?:\.github|helm|rollouts|demo_apps|scenarios|training|models)"
    return set(re.findall(rf"(?<![\w/.-])({prefixes}/[\w./-]*[\w])", text))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_files_the_workflows_use_exist(path: Path) -> None:
    wf = load(path)
    text = scripts(wf) + "\n" + json.dumps([s.get("with", {}) for s in steps(wf)])
    pending = []
    for ref in sorted(referenced_repo_paths(text)):
        if "*" in ref or ref.startswith("runs/"):
            continue
        if ref == "demo_apps/Dockerfile" and not (REPO_ROOT / ref).exists():
            pending.append(ref)  # the demo app's image, built by build-app.yaml
            continue
        assert (REPO_ROOT / ref).exists(), f"{path.name} uses {ref}, which does not exist"
    if pending:
        pytest.skip(f"not in the repository yet: {', '.join(pending)}")


# --- what each workflow must do -------------------------------------------------------------


def test_ci_lints_typechecks_and_runs_make_test() -> None:
    wf = workflow("ci")
    assert {"push", "pull_request"} <= set(wf["on"])
    text = scripts(wf)
    assert "ruff check" in text and "ruff format --check" in text
    assert "make typecheck" in text
    test_job = jobs("ci")["test"]
    assert any(s.get("run", "").strip() == "make test" for s in test_job["steps"])
    assert test_job["env"]["K8S_ROLLOUT_AGENT_REQUIRE_PROMETHEUS"] == "1"
    crds = [s for s in test_job["steps"] if s.get("with", {}).get("repository")]
    (fetch,) = crds
    assert fetch["with"]["repository"] == "argoproj/argo-rollouts"
    assert fetch["with"]["ref"] == "${{ env.ARGO_ROLLOUTS_COMMIT }}"
    assert wf["env"]["ARGO_ROLLOUTS_COMMIT"] == ARGO_ROLLOUTS_COMMIT
    assert fetch["with"]["sparse-checkout"] == "manifests/crds"
    assert test_job["env"]["ARGO_ROLLOUTS_CRDS"].endswith(f"{fetch['with']['path']}/manifests/crds")


def test_ci_pins_the_crds_of_the_shared_copy() -> None:
    source = REPO_ROOT.parent / "shared" / "argo-rollouts" / "SOURCE.md"
    if not source.is_file():
        pytest.skip("../shared/argo-rollouts/SOURCE.md is not beside the repository")
    assert ARGO_ROLLOUTS_COMMIT in source.read_text()


def test_build_app_builds_both_images_and_updates_the_rollout() -> None:
    wf = workflow("build-app")
    paths = wf["on"]["push"]["paths"]
    assert {"demo_apps/app/**", "demo_apps/Dockerfile", "scenarios/**"} <= set(paths)
    build = wf["jobs"]["build"]
    assert build["strategy"]["matrix"]["app_type"] == ["stable", "canary"]
    assert build["permissions"]["packages"] == "write"
    (push,) = [s for s in build["steps"] if s.get("uses", "").startswith("docker/build-push")]
    assert push["with"]["file"] == "demo_apps/Dockerfile"
    assert push["with"]["push"] is True
    assert "APP_TYPE=${{ matrix.app_type }}" in push["with"]["build-args"]
    assert "ghcr.io/" in scripts(wf)
    update = scripts({"jobs": {"u": wf["jobs"]["update-manifests"]}})
    assert "set_image.py kustomization" in update
    assert "rollouts/base/kustomization.yaml" in update and "--name demo-app" in update


def test_build_agent_builds_smoke_tests_and_publishes_the_charts_app_version() -> None:
    """Tests before it pushes; pushes sha-<sha>, latest and, once, the chart's appVersion (the
    tag the chart's empty image.tag means); commits nothing."""
    wf = workflow("build-agent")
    paths = wf["on"]["push"]["paths"]
    assert "decision_service/**" in paths and "models/canary-dqn.onnx" in paths
    build_steps = wf["jobs"]["build"]["steps"]
    builds = [s for s in build_steps if s.get("uses", "").startswith("docker/build-push")]
    assert [b["with"].get("push", False) for b in builds] == [False, True], "test before push"
    assert all(b["with"]["file"] == "Dockerfile" for b in builds)
    smoke = scripts({"jobs": {"b": wf["jobs"]["build"]}})
    assert "import torch" in smoke and "/healthz" in smoke
    assert set(wf["jobs"]) == {"build"}, "no job commits an image tag into the chart"
    assert all(
        job.get("permissions", {}).get("contents", "read") == "read" for job in wf["jobs"].values()
    )
    assert "set_image.py" not in scripts(wf) and "commit_and_push" not in scripts(wf)
    assert "helm/k8s-rollout-agent/Chart.yaml" in smoke and "pyproject.toml" in smoke
    assert "imagetools inspect" in smoke, "a released version tag is never moved"
    assert builds[1]["with"]["tags"] == "${{ steps.tags.outputs.tags }}"


def test_the_image_version_is_the_packages_version() -> None:
    """build-agent.yaml publishes the chart's appVersion and refuses to build when it is not
    the package's version (what rollout_agent_build_info reports)."""
    chart = yaml.safe_load((REPO_ROOT / "helm/k8s-rollout-agent/Chart.yaml").read_text())
    package = re.search(
        r'^version = "([^"]+)"$', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE
    )
    assert package is not None and chart["appVersion"] == package[1]
    values = yaml.safe_load((REPO_ROOT / "helm/k8s-rollout-agent/values.yaml").read_text())
    assert values["image"]["tag"] == ""


def test_the_extraction_build_agent_runs_reads_the_versions(tmp_path: Path) -> None:
    """The sed lines of the "Image name and version" step, run on the real files."""
    (step,) = [s for s in jobs("build-agent")["build"]["steps"] if s.get("id") == "image"]
    lines = [line for line in step["run"].splitlines() if "$(sed -n" in line]
    assert len(lines) == 2
    script = "\n".join([*lines, 'echo "$version $package"'])
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    chart = yaml.safe_load((REPO_ROOT / "helm/k8s-rollout-agent/Chart.yaml").read_text())
    assert result.stdout.split() == [chart["appVersion"]] * 2, result.stderr


def test_train_export_trains_exports_checks_evaluates_and_uploads() -> None:
    wf = workflow("train-export")
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert {"config", "episodes"} <= set(inputs)
    text = scripts(wf)
    order = [
        "python -m training.train",
        "python -m export",
        "OnnxPolicy",
        "python -m training.evaluate --scenarios scenarios --episodes",
    ]
    positions = [text.index(fragment) for fragment in order]
    assert positions == sorted(positions)
    assert "--json" in text
    uploads = [s for s in steps(wf) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and "out/" in uploads[0]["with"]["path"]


def test_deploy_is_manual_with_environment_and_type() -> None:
    wf = workflow("deploy")
    assert set(wf["on"]) == {"workflow_dispatch"}
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["staging", "production"]
    assert inputs["deploy_type"]["options"] == ["all", "app-only", "agent-only"]
    (job,) = wf["jobs"].values()
    assert job["environment"] == "${{ inputs.environment }}"
    (kubeconfig,) = [s for s in job["steps"] if "KUBECONFIG_B64" in s.get("env", {})]
    assert kubeconfig["env"]["KUBECONFIG_B64"] == "${{ secrets.KUBECONFIG }}"
    assert "base64 --decode" in kubeconfig["run"]
    conditions = {s.get("name"): s.get("if") for s in job["steps"]}
    assert conditions["Deploy the decision service (Helm)"] == "inputs.deploy_type != 'app-only'"
    assert (
        conditions["Deploy the demo app's Rollout (kustomize)"]
        == "inputs.deploy_type != 'agent-only'"
    )
    for environment in inputs["environment"]["options"]:
        assert (REPO_ROOT / "helm" / "environments" / f"{environment}.yaml").is_file()
    # The agent's image: build-agent.yaml's repository, the chart's appVersion unless given.
    assert inputs["agent_image_tag"]["default"] == ""
    (helm,) = [s for s in job["steps"] if s.get("name") == "Deploy the decision service (Helm)"]
    assert "image.repository=ghcr.io/${OWNER,,}/canary-agent" in helm["run"]
    assert "image.tag=$AGENT_IMAGE_TAG" in helm["run"]


def test_e2e_aborts_a_buggy_canary_and_promotes_a_healthy_one() -> None:
    wf = workflow("e2e-kind")
    text = scripts(wf)
    assert re.search(r"ARGO_ROLLOUTS_VERSION", text)
    version = wf["env"]["ARGO_ROLLOUTS_VERSION"]
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    assert (major, minor) >= (1, 8), "consecutiveSuccessLimit needs Argo Rollouts >= 1.8"
    assert any(s.get("uses", "").startswith("helm/kind-action@") for s in steps(wf))
    assert "helm upgrade --install" in text and "kubectl apply -k rollouts/" in text
    buggy = text.index('"value": "buggy"')
    healthy = text.index('"value": "healthy"')
    assert buggy < healthy
    # Both waits run the tested script (tests/workflows/test_wait_rollout.py).
    assert "wait_rollout.py" in text[buggy:healthy] and "--expect aborted" in text[buggy:healthy]
    assert "--expect healthy" in text[healthy:] and "--require-new-stable" in text[healthy:]
    for scenario in ("buggy", "healthy"):
        assert (REPO_ROOT / "scenarios" / f"{scenario}.yaml").is_file()


def test_e2e_prometheus_uses_the_projects_scrape_job_at_the_charts_default_url() -> None:
    docs = list(yaml.safe_load_all((GITHUB_DIR / "e2e" / "prometheus.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (config_volume,) = [v for v in pod["volumes"] if "configMap" in v]
    args = pod["containers"][0]["args"]
    config_file = next(a.split("=", 1)[1] for a in args if a.startswith("--config.file="))
    scrape = REPO_ROOT / "rollouts" / "prometheus-scrape-config.yaml"
    if scrape.is_file():
        configmap = yaml.safe_load(scrape.read_text())
        assert configmap["metadata"]["name"] == config_volume["configMap"]["name"]
        assert configmap["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        assert Path(config_file).name in configmap["data"]
    service = next(d for d in docs if d["kind"] == "Service")
    chart_values = yaml.safe_load((REPO_ROOT / "helm/k8s-rollout-agent/values.yaml").read_text())
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
    url += str(service["spec"]["ports"][0]["port"])
    assert chart_values["config"]["prometheus"]["url"] == url


@pytest.mark.parametrize(
    "manifest", sorted((GITHUB_DIR / "e2e").glob("*.yaml")), ids=lambda p: p.name
)
def test_e2e_manifests_are_valid(manifest: Path) -> None:
    for doc in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_e2e_load_goes_through_one_service_that_argo_splits() -> None:
    """No traffic routing in the base Rollout: a weight is a share of pods, so the load must go
    through one Service over every pod (stable and canary), never to each version's Service."""
    docs = list(yaml.safe_load_all((GITHUB_DIR / "e2e" / "loadgen.yaml").read_text()))
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    rollout = yaml.safe_load((REPO_ROOT / "rollouts" / "base" / "rollout.yaml").read_text())
    assert "trafficRouting" not in rollout["spec"]["strategy"]["canary"]
    pod_labels = rollout["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == pod_labels
    assert "rollouts-pod-template-hash" not in service["spec"]["selector"]
    port = rollout["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == port
    program = "\n".join(deployment["spec"]["template"]["spec"]["containers"][0]["command"])
    assert f"http://{service['metadata']['name']}/" in program
    assert "demo-app-stable" not in program and "demo-app-canary" not in program
