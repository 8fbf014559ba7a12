"""scripts/install-prometheus.sh (`make prometheus`): Prometheus on PATH first, else apt (with
sudo when not root; the package's daemon stopped), else the pinned release, downloaded into the
project's cache and unpacked only when its SHA-256 is the published one.

Each case runs a copy of the script with a PATH made here: links to the few real tools it uses,
and stand-ins for prometheus, apt-get, sudo and id that record how they were called. The release
is a small archive of the same name served from a file:// URL, with its own checksum file.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install-prometheus.sh"
CHECKSUMS = REPO_ROOT / "scripts" / "prometheus.sha256sums"
PINNED = re.search(r"^PROMETHEUS_VERSION=(\S+)$", SCRIPT.read_text(), re.M)
assert PINNED is not None, "install-prometheus.sh pins no PROMETHEUS_VERSION"
VERSION = PINNED.group(1)
# The real programs the script runs (everything else is a stand-in or absent).
TOOLS: tuple[str, ...] = ("bash", "env", "uname", "awk", "mkdir", "mktemp", "curl", "sha256sum")
TOOLS += ("cut", "tar", "gzip", "rm", "mv", "ln", "head", "dirname", "cat", "chmod", "basename")
PLATFORMS = {"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"}


def this_platform() -> str:
    os_name = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine()
    )
    if os_name is None or arch is None:
        pytest.skip(f"no Prometheus release for {platform.system()} {platform.machine()}")
    return f"{os_name}-{arch}"


def published_checksums() -> dict[str, str]:
    lines = [ln for ln in CHECKSUMS.read_text().splitlines() if ln and not ln.startswith("#")]
    return {name: digest for digest, name in (line.split("  ") for line in lines)}


def test_the_checksums_pin_the_scripts_release_on_four_platforms() -> None:
    checksums = published_checksums()
    assert set(checksums) == {f"prometheus-{VERSION}.{p}.tar.gz" for p in PLATFORMS}
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in checksums.values())
    assert len(set(checksums.values())) == 4


def stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@dataclass
class Sandbox:
    root: Path  # the project copy: scripts/ and .cache/
    bin: Path  # the whole PATH
    log: Path  # one line per stand-in call
    releases: Path  # served as PROMETHEUS_RELEASES_URL
    archive: str

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "bash"), str(self.root / "scripts" / SCRIPT.name), *args],
            env={
                "PATH": str(self.bin),
                "HOME": str(self.root),
                "PROMETHEUS_RELEASES_URL": self.releases.as_uri(),
                "STUB_LOG": str(self.log),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def publish(self, *, checksum: str | None = None) -> None:
        """The fake release archive, and its checksum (the real one unless given)."""
        name = self.archive.removesuffix(".tar.gz")
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as tar:
            for tool in ("prometheus", "promtool"):
                body = f"#!/bin/sh\necho '{tool}, version {VERSION} (fake)'\n".encode()
                info = tarfile.TarInfo(f"{name}/{tool}")
                info.size, info.mode = len(body), 0o755
                tar.addfile(info, io.BytesIO(body))
        folder = self.releases / f"v{VERSION}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.archive).write_bytes(data.getvalue())
        digest = checksum or hashlib.sha256(data.getvalue()).hexdigest()
        (self.root / "scripts" / CHECKSUMS.name).write_text(f"# test\n{digest}  {self.archive}\n")

    @property
    def cached(self) -> Path:
        return self.root / ".cache" / "prometheus" / "bin" / "prometheus"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / SCRIPT.name)
    shutil.copy(CHECKSUMS, root / "scripts" / CHECKSUMS.name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        os.symlink(found, bin_dir / tool)
    # Root or not is the test's choice, not the machine's.
    stub(bin_dir / "id", 'echo "${STUB_UID:-0}"\n')
    return Sandbox(
        root,
        bin_dir,
        tmp_path / "calls.log",
        tmp_path / "releases",
        f"prometheus-{VERSION}.{this_platform()}.tar.gz",
    )


FAKE_PROMETHEUS = 'echo "prometheus, version 2.0 (on PATH)"\n'
# apt-get that records its arguments and, on `install`, puts a prometheus on PATH.
FAKE_APT = f"""echo "apt-get $*" >> "$STUB_LOG"
[ -n "${{APT_FAILS:-}}" ] && exit 100
case " $* " in *" install "*)
  printf '#!/bin/sh\\n{FAKE_PROMETHEUS}' > "$(dirname "$0")/prometheus"
  chmod 755 "$(dirname "$0")/prometheus" ;;
esac
"""


def test_prometheus_on_path_is_used_as_it_is(sandbox: Sandbox) -> None:
    stub(sandbox.bin / "prometheus", FAKE_PROMETHEUS)
    stub(sandbox.bin / "apt-get", FAKE_APT)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sandbox.bin / "prometheus")
    assert sandbox.calls() == []
    assert sandbox.run("--which").stdout.strip() == str(sandbox.bin / "prometheus")


def test_prometheus_bin_wins_and_must_be_a_program(sandbox: Sandbox, tmp_path: Path) -> None:
    stub(tmp_path / "mine", FAKE_PROMETHEUS)
    assert sandbox.run(PROMETHEUS_BIN=str(tmp_path / "mine")).stdout.strip() == str(
        tmp_path / "mine"
    )
    result = sandbox.run(PROMETHEUS_BIN=str(tmp_path / "missing"))
    assert result.returncode == 1 and "is not an executable" in result.stderr


def test_apt_with_sudo_when_not_root_then_the_daemon_is_stopped(sandbox: Sandbox) -> None:
    stub(sandbox.bin / "apt-get", FAKE_APT)
    stub(sandbox.bin / "sudo", 'echo "sudo $1" >> "$STUB_LOG"; exec "$@"\n')
    stub(sandbox.bin / "systemctl", 'echo "systemctl $*" >> "$STUB_LOG"\n')
    stub(sandbox.bin / "service", 'echo "service $*" >> "$STUB_LOG"\n')
    result = sandbox.run(STUB_UID="1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sandbox.bin / "prometheus")
    calls = sandbox.calls()
    assert calls[:4] == [
        "sudo apt-get",
        "apt-get update -qq",
        "sudo env",
        "apt-get install -y -qq --no-install-recommends prometheus",
    ]
    # The daemon the package starts: whichever init this machine runs, never both.
    if Path("/run/systemd/system").is_dir():
        assert calls[4:] == ["sudo systemctl", "systemctl stop prometheus"]
    elif Path("/etc/init.d/prometheus").exists():
        assert calls[4:] == ["sudo service", "service prometheus stop"]
    else:
        assert calls[4:] == []
    assert not sandbox.cached.exists()


def test_as_root_apt_runs_without_sudo(sandbox: Sandbox) -> None:
    stub(sandbox.bin / "apt-get", FAKE_APT)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert [c for c in sandbox.calls() if c.startswith("apt-get")] == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends prometheus",
    ]
    assert not any(c.startswith("sudo") for c in sandbox.calls())


def test_when_apt_fails_the_release_is_downloaded(sandbox: Sandbox) -> None:
    stub(sandbox.bin / "apt-get", FAKE_APT)
    sandbox.publish()
    result = sandbox.run(APT_FAILS="1")
    assert result.returncode == 0, result.stderr
    assert "downloading the release instead" in result.stderr
    assert result.stdout.strip() == str(sandbox.cached)
    assert subprocess.run([sandbox.cached], capture_output=True, text=True).stdout.startswith(
        f"prometheus, version {VERSION}"
    )
    assert (sandbox.cached.parent / "promtool").exists()


def test_without_apt_the_release_is_downloaded_once(sandbox: Sandbox) -> None:
    sandbox.publish()
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sandbox.cached)
    # `--which` (the Makefile's PROMETHEUS_BIN) finds it; a second run downloads nothing.
    assert sandbox.run("--which").stdout.strip() == str(sandbox.cached)
    shutil.rmtree(sandbox.releases)
    again = sandbox.run()
    assert again.returncode == 0 and "downloading" not in again.stderr
    assert not list((sandbox.root / ".cache" / "prometheus").glob(".download.*"))


def test_a_wrong_checksum_installs_nothing(sandbox: Sandbox) -> None:
    sandbox.publish(checksum="0" * 64)
    result = sandbox.run(PROMETHEUS_NO_APT="1")
    assert result.returncode == 1
    assert "is not the published" in result.stderr and "nothing installed" in result.stderr
    cache = sandbox.root / ".cache" / "prometheus"
    assert not sandbox.cached.exists()
    assert [p.name for p in cache.iterdir()] == []  # not unpacked, the download removed
    assert sandbox.run("--which").stdout == ""


def test_which_installs_nothing_and_prints_nothing_without_prometheus(sandbox: Sandbox) -> None:
    stub(sandbox.bin / "apt-get", FAKE_APT)
    result = sandbox.run("--which")
    assert result.returncode == 0 and result.stdout == ""
    assert sandbox.calls() == []
    assert not (sandbox.root / ".cache").exists()
