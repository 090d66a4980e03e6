"""Progress reporting and cooperative cancellation for long work.

Long engine functions are generators: they ``yield Progress(...)`` between
batches and ``return`` their result.  The CLI drives them with a progress bar,
the window runs them in a worker thread (the shape of superqt's generator
workers), and tests call :func:`run` to get the result.  Cancelling is done
between yields, so work always stops at a batch boundary with nothing half
written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
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

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


Work = Generator[Progress, None, T]


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
