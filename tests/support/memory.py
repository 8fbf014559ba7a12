"""The peak resident memory of a process while something happens to it (Linux /proc)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from demo_apps.local.processes import memory_kib
from tests.support.service_process import reset_peak_rss


@dataclass
class PeakGrowth:
    """Resident memory before, and the peak while the block ran (KiB)."""

    before_kib: int = 0
    peak_kib: int = 0

    @property
    def mib(self) -> float:
        """How far the peak rose above the resident memory before, MiB."""
        return (self.peak_kib - self.before_kib) / 1024


@contextlib.contextmanager
def peak_growth(pid: int, poll_seconds: float = 0.005) -> Iterator[PeakGrowth]:
    """Measure the peak RSS of ``pid`` during the block: the kernel's high-water mark, reset
    first where the kernel allows it (``/proc/PID/clear_refs``), and a poll of ``VmRSS`` as
    well, so the figure is a peak even where the reset is not allowed."""
    reset = reset_peak_rss(pid)
    growth = PeakGrowth(before_kib=memory_kib(pid)["VmRSS"])
    growth.peak_kib = growth.before_kib
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_seconds):
            with contextlib.suppress(OSError, KeyError):
                growth.peak_kib = max(growth.peak_kib, memory_kib(pid)["VmRSS"])

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield growth
    finally:
        stop.set()
        poller.join(timeout=2)
        final = memory_kib(pid)
        growth.peak_kib = max(growth.peak_kib, final["VmRSS"])
        if reset:
            growth.peak_kib = max(growth.peak_kib, final["VmHWM"])
