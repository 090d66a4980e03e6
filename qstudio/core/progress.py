"""Progress reporting and cooperative cancellation for long work.

Long engine functions are generators: they ``yield Progress(...)`` between
batches and ``return`` their result.  The CLI drives them with a progress bar,
the window runs them in a worker thread (the shape of superqt's generator
workers), and tests call :func:`run` to get the result.  Cancelling is done
between yields, so work always stops at a batch boundary with nothing half
written.

A run has several stages (prepare, calibrate, evaluate, benchmark ...), each
counting its own ``done``/``total``.  :class:`RunProgress` turns them into one
fraction for the whole run and one time estimate, from a plan the run
announces first: a ``Progress(PLAN, 0, 0, plan=...)`` step listing its stages
in order with the work each is expected to take.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qstudio.core.errors import Cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of long work: ``done`` of ``total`` units in ``stage``."""

    stage: str
    done: int
    total: int
    message: str = ""
    # Optional figures a view may plot live (for example QAT loss per epoch).
    metrics: dict[str, float] | None = None
    # Only on a run's first step (stage PLAN): the stages to come, in order, with their expected work.
    plan: tuple[tuple[str, float], ...] | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


Work = Generator[Progress, None, T]

#: The stage of the step that announces a run's plan (``Progress.plan``); it does no work itself.
PLAN = "plan"

STAGE_LABELS = {
    "load": "Loading",
    "plan": "Starting",
    "prepare": "Preparing",
    "calibrate": "Calibrating",
    "convert": "Converting",
    "quantize": "Quantizing",
    "train": "Training",
    "evaluate": "Evaluating",
    "compare layers": "Comparing layers",
    "script": "Scripting",
    "runtimes": "Building runtimes",
    "benchmark": "Benchmarking",
    "export": "Exporting",
}


def stage_label(stage: str) -> str:
    """``"calibrate"`` -> ``"Calibrating"``: the word a progress bar shows beside the percentage."""
    if stage in STAGE_LABELS:
        return STAGE_LABELS[stage]
    if stage.startswith("benchmark"):
        return "Benchmarking"
    return stage[:1].upper() + stage[1:]


class RunProgress:
    """One fraction (0 to 1, never going back) and one time estimate for a run of several stages.

    Feed it every step with :meth:`update`.  With a plan (the run's first
    step, stage :data:`PLAN`), a stage counts for its share of the planned
    work, so the fraction moves once from 0 to 1 across the whole run.  A stage
    that runs twice (a re-quantization after keeping the worst layers in float)
    takes the next planned entry of that name or, past the plan's last one (a
    benchmark measuring again), as much work again; a stage the plan lacks
    adds no progress and takes none away.  Without a plan (a single-stage task such as
    loading a model) the fraction is the current stage's own.

    The estimate of the time left is ``elapsed * (1 - f) / f``, blended over a
    few seconds with the previous estimate counted down, so it neither jumps
    with every batch nor stalls while a slow stage runs.
    """

    SMOOTHING_S = 3.0  # time constant of the blend between the fresh and the counted-down estimate
    MIN_FRACTION = 0.005  # below this, or before MIN_ELAPSED, an estimate is a guess from almost nothing: none is given
    MIN_ELAPSED_S = 1.0

    def __init__(
        self, plan: Sequence[tuple[str, float]] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.started = clock()
        self._since = self.started  # what the estimate counts from: the run's start (or the stage's, unplanned)
        self.stage = ""
        self.step: Progress | None = None
        self._fraction = 0.0
        self._eta: float | None = None
        self._eta_at = self.started
        self._plan: list[tuple[str, float]] = []
        self._total = 0.0
        self._index = -1  # the plan entry running now
        self._entry_done = 0  # its last ``done``: a smaller one means the stage started again
        if plan:
            self.set_plan(plan)

    # -- input -----------------------------------------------------------------
    def set_plan(self, plan: Sequence[tuple[str, float]]) -> None:
        self._plan = [(str(stage), max(float(work), 0.0)) for stage, work in plan]
        self._total = sum(work for _, work in self._plan)
        self._index, self._entry_done = -1, 0

    @property
    def planned(self) -> bool:
        """True when the fraction is of the whole run (a plan was given), not of one stage."""
        return self._total > 0

    def update(self, step: Progress) -> float:
        """Take one step; returns the overall fraction."""
        now = self._clock()
        self.step = step
        if step.plan is not None:
            self.set_plan(step.plan)
            self.stage = step.stage
            return self._fraction
        stage_fraction = min(max(step.done / step.total, 0.0), 1.0) if step.total > 0 else 0.0
        if self.planned:
            matched = self._follow(step)
            fraction = self._planned_fraction(stage_fraction if matched else 0.0)
        else:
            fraction = stage_fraction
            if step.stage != self.stage:  # without a plan each stage has its own bar and its own estimate
                self._fraction, self._eta, self._since = 0.0, None, now
        self.stage = step.stage
        self._fraction = max(self._fraction, fraction)
        self._estimate(now)
        return self._fraction

    def finish(self) -> None:
        """The run ended well: the whole bar, nothing left."""
        self._fraction = 1.0
        self._eta = 0.0
        self._eta_at = self._clock()

    def _follow(self, step: Progress) -> bool:
        """Move to the plan entry ``step`` belongs to; False if it belongs to none (it then adds nothing)."""
        current = self._plan[self._index][0] if 0 <= self._index < len(self._plan) else None
        restarted = step.done < self._entry_done or (step.done == 0 and self._entry_done > 0)
        if current == step.stage and not restarted:
            self._entry_done = step.done
            return True
        for j in range(self._index + 1, len(self._plan)):
            if self._plan[j][0] == step.stage:
                self._index, self._entry_done = j, step.done
                return True
        if current == step.stage:  # the stage runs again unplanned (a benchmark measuring twice): as much work again
            work = self._plan[self._index][1]
            self._plan.insert(self._index + 1, (step.stage, work))
            self._total += work  # the bar waits (it never goes back) until the run catches up with the longer plan
            self._index, self._entry_done = self._index + 1, step.done
            return True
        return False  # not planned: keep the place

    def _planned_fraction(self, stage_fraction: float) -> float:
        if self._index < 0:
            return 0.0
        before = sum(work for _, work in self._plan[: self._index])
        return min((before + self._plan[self._index][1] * stage_fraction) / self._total, 1.0)

    def _estimate(self, now: float) -> None:
        f, elapsed = self._fraction, now - self._since
        if f < self.MIN_FRACTION or elapsed < self.MIN_ELAPSED_S:
            return
        fresh = elapsed * (1.0 - f) / f
        if self._eta is None:
            self._eta = fresh
        else:
            counted_down = max(self._eta - (now - self._eta_at), 0.0)
            weight = 1.0 - math.exp(-(now - self._eta_at) / self.SMOOTHING_S)
            self._eta = weight * fresh + (1.0 - weight) * counted_down
        self._eta_at = now

    # -- output ----------------------------------------------------------------
    @property
    def fraction(self) -> float:
        return self._fraction

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def eta(self) -> float | None:
        """Seconds left for the whole run (for the current stage without a plan); None until there is a basis."""
        if self._eta is None:
            return None
        return max(self._eta - (self._clock() - self._eta_at), 0.0)

    @property
    def label(self) -> str:
        return stage_label(self.stage) if self.stage else ""

    def describe(self) -> str:
        """``"Calibrating · 42%"``."""
        return f"{self.label} · {self._fraction * 100:.0f}%" if self.stage else f"{self._fraction * 100:.0f}%"

    def describe_eta(self) -> str:
        """``"about 35 s left (whole run)"``, ``"about 2 min left ..."``, or ``"estimating time left…"``."""
        eta = self.eta
        scope = " (whole run)" if self.planned else ""
        if eta is None:
            return "estimating time left…"
        return f"{format_duration(eta)} left{scope}"


def format_duration(seconds: float) -> str:
    """``"about 35 s"``, ``"about 4 min"``, ``"about 1 h 5 min"``; ``"a few seconds"`` under 5 s."""
    if seconds < 5:
        return "a few seconds"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class CancelToken:
    """A thread-safe flag the UI sets and the worker checks between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def run(
    work: Generator[Progress, Any, T],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> T:
    """Drive a progress generator to completion and return its result.

    Cancellation is checked after every yielded step; on cancel the generator
    is closed (its ``finally`` blocks run) and :class:`Cancelled` is raised.
    """
    try:
        while True:
            step = next(work)
            if on_progress is not None:
                on_progress(step)
            if cancel is not None and cancel.cancelled:
                work.close()
                raise Cancelled("cancelled by the user")
    except StopIteration as stop:
        return stop.value
