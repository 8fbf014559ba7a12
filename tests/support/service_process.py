"""The decision service as users run it: ``python -m decision_service`` in a subprocess.

``ServiceProcess(env)`` starts it on a free loopback port with the worktree's code first on
``PYTHONPATH`` and only the environment a test gives it (no API token from the caller's
shell), waits until ``/healthz`` answers, and reads its memory from ``/proc``: the fault tests
measure what a request does to the real process, not to an app inside the test's interpreter.
The process itself is a :class:`~demo_apps.local.processes.ManagedProcess` (its own process
group, its output in a log file), as in the demo stack and the benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from demo_apps.local.processes import (
    LOOPBACK,
    Lifecycle,
    ManagedProcess,
    StartError,
    free_port,
    loopback_env,
    memory_kib,
    wait_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
_INHERITED_SECRETS = {"API_TOKEN", "API_TOKEN_FILE"}


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0: ``echo 5 > /proc/PID/clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class ServiceProcess(Lifecycle):
    """``python -m decision_service`` on a loopback port (see the module docstring)."""

    def __init__(self, env: dict[str, str], *, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        base = loopback_env({"PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "INFO"})
        environment = {k: v for k, v in base.items() if k not in _INHERITED_SECRETS} | env
        self._start_timeout = start_timeout
        self.log_path = Path(tempfile.mkdtemp(prefix="decision-service-")) / "service.log"
        argv = [sys.executable, "-m", "decision_service", "--host", LOOPBACK]
        self._process = ManagedProcess(
            "decision-service", [*argv, "--port", str(self.port)], environment, self.log_path
        )

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None, "not started"
        return pid

    def start(self) -> ServiceProcess:
        self._process.start()
        try:
            wait_ready(self._process, f"{self.url}/healthz", self._start_timeout)
        except StartError:
            self.stop()
            raise
        return self

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
        self._process.stop(grace_seconds=15)
