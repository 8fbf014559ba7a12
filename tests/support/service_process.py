"""The decision service as users run it: ``python -m decision_service`` in a subprocess.

``ServiceProcess(env)`` starts it on a free loopback port with the worktree's code first on
``PYTHONPATH`` and only the environment a test gives it (no API token from the caller's
shell), waits until ``/healthz`` answers, and reads its memory from ``/proc``: the fault tests
measure what a request does to the real process, not to an app inside the test's interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.prometheus import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_INHERITED_SECRETS = {"API_TOKEN", "API_TOKEN_FILE"}


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of ``pid`` in KiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(value.split()[0])
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0: ``echo 5 > /proc/PID/clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class ServiceProcess:
    """``python -m decision_service`` on a loopback port (see the module docstring)."""

    def __init__(self, env: dict[str, str], *, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        base = {k: v for k, v in os.environ.items() if k not in _INHERITED_SECRETS}
        self._env = base | {"PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "INFO"} | env
        self._start_timeout = start_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="decision-service-"))
        self.log_path = self._dir / "service.log"
        self._log: Any = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "decision_service",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
            ],
            cwd=REPO_ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the service exited early:\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not answer /healthz in {self._start_timeout}s")

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
