"""Run an engine progress generator in a thread-pool thread; every way it can end reaches the GUI thread.

superqt's GeneratorWorker was used here before.  When the work raised a
``RuntimeError`` it only printed a warning (it takes that to mean a deleted
Qt object) and emitted neither ``errored`` nor ``returned``, and a
``BaseException`` such as ``SystemExit`` raised inside a user's model escaped
its handler: either way the window stayed "running" forever.  This worker is
small enough to own: it catches *everything* the generator raises, closes a
cancelled generator on the thread that ran it (so its ``finally`` blocks run
at once), and always emits exactly one of ``returned``/``errored``/``aborted``
followed by ``finished``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class WorkerSignals(QObject):
    """Created on the GUI thread, so signals emitted from the worker arrive there as queued calls."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception, any BaseException
    aborted = Signal()
    finished = Signal()


class GeneratorTask(QRunnable):
    """``make()`` returns a generator; its yields become ``yielded``, its return ``returned``."""

    def __init__(self, make: Callable[[], Generator[Any, Any, Any]]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the controller holds it until ``finished``
        self.signals = WorkerSignals()
        self._make = make
        self._abort = threading.Event()

    def quit(self) -> None:
        """Stop before the next step; the generator is closed and ``aborted`` is emitted."""
        self._abort.set()

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    def start(self, pool: QThreadPool | None = None) -> None:
        (pool or QThreadPool.globalInstance()).start(self)

    def run(self) -> None:  # called by Qt on a pool thread
        signals = self.signals
        try:
            self._drive()
        finally:
            signals.finished.emit()

    def _drive(self) -> None:
        signals = self.signals
        steps: Generator[Any, Any, Any] | None = None
        try:
            steps = self._make()
            while True:
                if self._abort.is_set():
                    self._close(steps)
                    signals.aborted.emit()
                    return
                step = next(steps)
                signals.yielded.emit(step)
        except StopIteration as stop:
            if self._abort.is_set():
                signals.aborted.emit()
            else:
                signals.returned.emit(stop.value)
        except BaseException as exc:  # SystemExit/KeyboardInterrupt from a model are failures too
            if steps is not None:
                self._close(steps)
            signals.errored.emit(exc)

    @staticmethod
    def _close(steps: Generator[Any, Any, Any]) -> None:
        try:
            steps.close()
        except BaseException:  # a close that fails must not hide how the work ended
            log.exception("closing a stopped task failed")
