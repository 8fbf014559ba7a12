"""A canary's life kept between decisions, so a decision reads and judges only its new windows.

Every decision needs the shield's evidence over the canary's whole life and the life's totals.
Rebuilt from Prometheus at every decision, their cost grew with the canary's age (55 ms of the
service's processing at 3 hours, ``benchmarks/bench_canary_age.py``). So
:class:`PrometheusSource` keeps, per canary, a :class:`Life`: the evidence
(:class:`~decision_service.shield.Evidence`, which accumulates window by window, as in the
simulator), the life's totals per version and the canary's share of each window, over the
windows read so far. A decision then asks Prometheus only for the windows after them and adds
those: its processing no longer grows with the canary's age.

**The windows are a fixed grid per canary.** The range query's windows end every analysis window,
counted back from the moment asked. A kept life's windows end on the grid of the decision that
built it; a later decision reads the grid point nearest below the moment it is asked (at most
:data:`LEAD_SECONDS` after it), so it may read windows that end a little before that moment.
When that lag would be more than a sixth of a window (:func:`grid_point`), the life is rebuilt
from Prometheus on the moment asked, as every decision did before. Argo takes a measurement an
interval after the previous one *finished* (``FinishedAt.Add(interval)`` in its
``analysis/analysis.go``), so at an interval equal to the window (or a whole multiple of it)
each moment comes later on the grid by what the previous measurement took, tens of
milliseconds: the lag reaches a sixth of a window only after a hundred or more measurements, and
the life is rebuilt then. A replay (:mod:`decision_service.replay`) asks at whole windows
apart: it always reads the grid, exactly the windows a rebuild would.

**Only settled windows are kept.** A window is added to the kept life once it ended
:data:`SETTLE_SECONDS` before the moment read: by then every scrape that began inside it has
been appended (a scrape's timeout is at most its interval). The newer windows are read again at
every decision and added to a copy, so a sample that arrives late is never missed for good.

**Keyed by all that shapes it**: the rendered query (the target, its versions and the window),
the canary's start, the tolerance and the shield's settings (a request's overrides get their own
life). At most :data:`MAX_LIVES` are kept, least recently used first out; one that is evicted,
lost in a restart or held by another replica is rebuilt from Prometheus, at the cost of one
full read. A rebuild reads at most :data:`~decision_service.prometheus_source.MAX_WINDOWS` of
the life (3 hours at 30 s windows); a kept life goes on adding windows past that. A kept life
is never changed: a decision adds the windows that settled since to a copy and puts it in its
place, so decisions on one canary at once read the same life, and the last to finish keeps
its copy (the same windows either way).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final

from decision_service.prometheus_answers import Totals, WindowMatrix
from decision_service.shield import Evidence, VersionWindow, windows_at_last_share
from decision_service.snapshot import MetricsSnapshot

#: A window is kept once it ended this long before the moment read (see the module docstring).
SETTLE_SECONDS: Final = 60.0
#: How far past the moment asked a decision may read: a moment a little early on the grid (a
#: caller's timer, a finish time stored to the second) still reads it.
LEAD_SECONDS: Final = 1.0
#: The most lives kept (each about 20 kB at 10 minutes of life and 70 kB at 3 hours, measured
#: with tracemalloc: at most about 18 MB in all).
MAX_LIVES: Final = 256

_Pair = tuple[VersionWindow, VersionWindow]


def grid_point(kept_end: float, step: float, at: float) -> float | None:
    """The latest window end on the grid through ``kept_end`` at most ``min(LEAD_SECONDS,
    step / 6)`` after ``at``, if it is after ``kept_end`` and at most ``step / 6`` before
    ``at``; None otherwise (the life is rebuilt on ``at``). Rounded to the millisecond, as
    Prometheus keeps it."""
    lead = min(LEAD_SECONDS, step / 6)
    k = math.floor((at + lead - kept_end) / step)
    if k < 1:
        return None
    point = round(kept_end + k * step, 3)
    return point if at - point <= step / 6 else None


@dataclass
class Life:
    """A canary's windows so far, summed (see the module docstring): everything a decision
    needs from the windows that :attr:`kept_end` closes."""

    start: float  # the canary's start: windows ending by half a window after it are stable's
    step: float
    kept_end: float  # the last window end added (the grid goes on every ``step`` from it)
    evidence: Evidence
    canary: Totals  # the life's windows, per version
    stable: Totals
    shares: list[float]  # the canary's share of each life window with traffic
    lived: bool = False  # whether a window of the life (even a broken one) has been read

    @classmethod
    def empty(cls, start: float, step: float, before: float, evidence: Evidence) -> Life:
        """No window yet; the first one to add ends ``step`` after ``before``."""
        return cls(start, step, before, evidence, Totals(), Totals(), [])

    def copy(self) -> Life:
        return Life(
            self.start,
            self.step,
            self.kept_end,
            self.evidence.copy(),
            self.canary.copy(),
            self.stable.copy(),
            list(self.shares),
            self.lived,
        )

    def add(self, matrix: WindowMatrix, windows: dict[float, _Pair], ends: Iterable[float]) -> None:
        """The windows of ``matrix`` ending at ``ends`` (in order, after :attr:`kept_end`).

        As :func:`~decision_service.prometheus_source.readings_from` reads them: a window that
        ends by half a window after the start is stable's baseline (if stable served in it), a
        later one the canary's life; a broken window is left out (``windows`` has none)."""
        half = self.start + 0.5 * self.step
        for t in ends:
            pair = windows.get(t)
            if t <= half:
                if pair is not None and pair[1].requests > 0:
                    self.evidence.add_baseline(pair[1])
                continue
            self.lived = True
            self.canary.add(matrix, t, "canary")
            self.stable.add(matrix, t, "stable")
            if pair is not None:
                canary, stable = pair
                self.evidence.add(canary, stable)
                total = canary.requests + stable.requests
                if total > 0:
                    self.shares.append(canary.requests / total)

    def snapshot(self, matrix: WindowMatrix, at: float, step_weight: float) -> MetricsSnapshot:
        """The decision's snapshot: its last window is ``matrix``'s at ``at``, its life the
        windows added (the last window while there are none), with the evidence's summary."""
        end = matrix.end_near(at)
        last = () if end is None else (end,)
        canary, stable = matrix.metrics(last, "canary"), matrix.metrics(last, "stable")
        return MetricsSnapshot(
            step_weight=step_weight,
            canary=canary,
            stable=stable,
            canary_cumulative=self.canary.metrics(matrix.scale) if self.lived else canary,
            stable_cumulative=self.stable.metrics(matrix.scale) if self.lived else stable,
            evidence=self.evidence.summary(),
        )

    def windows_at_share(self) -> int:
        """:func:`~decision_service.shield.windows_at_current_share` of the life."""
        return windows_at_last_share(self.shares)


class Lives:
    """The kept lives, least recently used first out; thread-safe. A kept life is shared by the
    decisions that read it and never changed: one with windows to add puts a new life in its
    place (so a failed decision changes nothing)."""

    def __init__(self, capacity: int = MAX_LIVES) -> None:
        self._lives: OrderedDict[Hashable, Life] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def get(self, key: Hashable) -> Life | None:
        with self._lock:
            life = self._lives.get(key)
            if life is not None:
                self._lives.move_to_end(key)
            return life

    def put(self, key: Hashable, life: Life) -> None:
        with self._lock:
            self._lives[key] = life
            self._lives.move_to_end(key)
            while len(self._lives) > self._capacity:
                self._lives.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lives)
