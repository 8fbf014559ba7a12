"""The user's ``promote``/``abort`` commands to a paused (or running) local rollout.

``kubectl argo rollouts promote|abort`` in a cluster; here the words arrive on a
:class:`CommandQueue`, fed by stdin (:func:`read_commands`), by a control file
(:func:`watch_control_file`, for a demo without a terminal) or directly by tests, and the
driver (:mod:`demo_apps.local.driver`) waits on the queue while it pauses or between
measurements.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TextIO

Command = Literal["promote", "abort"]
COMMANDS: tuple[Command, ...] = ("promote", "abort")


class CommandQueue:
    """``promote``/``abort`` commands from the user, in arrival order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Command] = queue.Queue()

    def put(self, command: str) -> None:
        word = command.strip().lower()
        for known in COMMANDS:
            if word == known:
                self._queue.put(known)
                return
        raise ValueError(f"unknown command '{command.strip()}': use promote or abort")

    def wait(self, timeout: float | None) -> Command | None:
        """The next command, or ``None`` after ``timeout`` seconds (``None``: forever)."""
        try:
            if timeout is not None and timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


def read_commands(stream: TextIO, commands: CommandQueue, on_error: Callable[[str], None]) -> None:
    """Feed lines of ``stream`` (e.g. stdin) into ``commands`` until it ends (run in a thread)."""
    for line in stream:
        if line.strip():
            try:
                commands.put(line)
            except ValueError as exc:
                on_error(str(exc))


def watch_control_file(
    path: Path,
    commands: CommandQueue,
    stop: threading.Event,
    on_error: Callable[[str], None],
    poll_seconds: float = 0.2,
) -> None:
    """Turn each write of ``promote``/``abort`` to ``path`` into a command (run in a thread).

    The file is removed once read, so ``echo promote > FILE`` works once per write.
    """
    while not stop.wait(poll_seconds):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        path.unlink(missing_ok=True)
        try:
            commands.put(text)
        except ValueError as exc:
            on_error(str(exc))
