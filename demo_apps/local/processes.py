"""Child processes on loopback: each in its own process group, logging to a file, stopped for sure.

Every local program the project starts — the demo stack's apps, Prometheus and decision service,
the tests' and benchmarks' Prometheus and services — goes through :class:`ManagedProcess` and
:func:`wait_ready`, with ports from :func:`free_port`:

* a child runs in its own session (``start_new_session``), so :meth:`ManagedProcess.stop`
  signals exactly its group (SIGTERM, then SIGKILL after a grace period) and nothing else;
* its output goes to a log file, whose tail every start-up error quotes;
* :meth:`ManagedProcess.pause` and :meth:`ManagedProcess.resume` freeze and thaw its group
  (SIGSTOP/SIGCONT), e.g. to stall Prometheus under load; ``stop()`` ends a paused child too;
* :func:`loopback_env` keeps it off any HTTP proxy for loopback addresses;
* :func:`memory_kib` reads its resident memory (now and peak) from ``/proc``;
* :class:`Lifecycle` makes anything with ``start()``/``stop()`` a context manager, so an
  exception or Ctrl-C between the two still stops it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

LOOPBACK = "127.0.0.1"


class StartError(RuntimeError):
    """A process did not start, or did not become ready in time."""


class Lifecycle(ABC):
    """``with thing:`` starts it and stops it on the way out, whatever happens in between."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: Where :func:`free_port` looks first: below the kernel's ephemeral range (Linux's default
#: starts at 32768), above the ports services usually take.
PORTS_FROM: Final = 20000
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The ports this process handed out lately (not handed out again while a child may still be
#: starting on one).
_handed: collections.deque[int] = collections.deque(maxlen=256)


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (0 where it cannot be read)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago.

    A child binds it a second or so later, and the port must still be free then. A port from
    the kernel's ephemeral range is not: every outgoing connection on the machine (a health
    check, a scrape, a load generator's) takes its source port from that range, and one did take
    a demo app's port in CI. So the port is drawn at random below that range, and not one this
    process handed out lately; only where there is no room below it does the kernel choose."""
    end = _ephemeral_start()
    rng = random.Random()
    for _ in range(200 if end > PORTS_FROM else 0):
        port = rng.randrange(PORTS_FROM, end)
        if port in _handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = int(sock.getsockname()[1])
    _handed.append(port)
    return port


def loopback_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process' environment for a child on loopback: no HTTP proxy, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if k not in ("HTTP_PROXY", "http_proxy")}
    env.update({"NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of ``pid`` in KiB, from ``/proc`` (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(value.split()[0])
    return values


def _threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or gone); ``True`` where /proc is absent."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return True
    for task in tasks.iterdir():
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if state not in ("T", "t", "Z", "X"):
            return False
    return True


class ManagedProcess:
    """One child process in its own process group, logging to a file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _signal_group(self, signum: int) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            # The group is this child's own (start_new_session): nothing else is signalled.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    def pause(self, timeout: float = 5.0) -> None:
        """Freeze the child's group (SIGSTOP): it holds its sockets but answers nothing.

        Returns once every thread of the child has stopped (``/proc``): the kernel stops a
        multi-threaded process only when the thread the signal went to next runs, and on a busy
        machine the other threads go on answering until then.
        """
        self._signal_group(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while self._process is not None and not _threads_stopped(self._process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not stopped {timeout:g} s after SIGSTOP")
            time.sleep(0.005)

    def resume(self) -> None:
        """Thaw a group :meth:`pause` froze (SIGCONT); harmless on a running child."""
        self._signal_group(signal.SIGCONT)

    def stop(self, grace_seconds: float = 5.0) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            self._signal_group(signal.SIGTERM)
            # A paused child acts on the SIGTERM only once continued.
            self._signal_group(signal.SIGCONT)
            try:
                process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_ready(process: ManagedProcess, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartError(f"{process.name} exited during start-up:\n{process.log_tail()}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise StartError(
        f"{process.name} not ready at {url} after {timeout:g} s:\n{process.log_tail()}"
    )
