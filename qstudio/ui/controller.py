"""The Qt face of the engine's Session: signals for views, workers for long work.

Views never call the engine themselves.  They read ``controller.session`` and
listen to the signals here; anything that takes time (loading a model, a
quantization run) goes through :meth:`SessionController.start`, which runs the
engine's progress generator in a worker thread and brings progress, results
and errors back to the GUI thread as signals.  One worker at a time: a second
run while one is going is refused with a message, never raced.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from qstudio.core.errors import Cancelled, QStudioError
from qstudio.core.pipeline import RunResult
from qstudio.core.progress import Progress
from qstudio.core.recipe import ModelSource, Recipe
from qstudio.core.session import Session
from qstudio.core.trust import Grants
from qstudio.ui.worker import GeneratorTask

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(message, details): a user-facing line and the full traceback for the details pane."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, QStudioError):
        return str(exc), (exc.details + "\n" + details).strip()
    if isinstance(exc, MemoryError):
        return (
            "Ran out of memory. Fix: lower the batch size or the number of calibration batches, or close other programs.",
            details,
        )
    from qstudio.core.graph import first_line, user_frame

    kind = type(exc).__name__
    text = first_line(exc)
    where = user_frame(exc)
    if where is not None:  # the deepest frame outside qstudio and torch: the user's own code raised it
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return (
                f"The model's code stopped the work with {kind}({text}) at {where}. "
                "Fix: a model must not exit or interrupt the program; remove that call and run again.",
                details,
            )
        return (
            f"The model's code raised {kind} at {where}: {text}. "
            "Fix: correct that line of the model, or check that the data fits the model (shape, dtype, range).",
            details,
        )
    return (
        f"Unexpected error: {kind}: {text}. This is an internal error in qstudio. "
        "Fix: please report it with the details below (qstudio's issue tracker); your model and earlier results are kept.",
        details,
    )


class SessionController(QObject):
    modelChanged = Signal()
    recipeChanged = Signal()
    groupsChanged = Signal()
    resultsChanged = Signal()
    busyChanged = Signal(bool)
    progress = Signal(object)  # core.progress.Progress
    log = Signal(str)
    runFinished = Signal(object)  # RunResult
    runFailed = Signal(str)
    errorDetails = Signal(str, str)  # message, details (for the error dialog)
    settingProblem = Signal(str, str)  # recipe key at fault (calib, eval, train, input_shape, ...), message

    def __init__(self, session: Session | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session or Session()
        self.session.subscribe(self._on_session_event)
        self.worker: GeneratorTask | None = None
        self.task = ""
        self.started_at = 0.0

    # -- session events -> signals ---------------------------------------------
    def _on_session_event(self, event: str) -> None:
        {
            "model": self.modelChanged,
            "recipe": self.recipeChanged,
            "groups": self.groupsChanged,
            "results": self.resultsChanged,
        }[event].emit()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    # -- workers -------------------------------------------------------------------
    def start(
        self,
        task: str,
        work: Callable[[], Generator[Progress, Any, Any]],
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None] | None = None,
    ) -> bool:
        """Run ``work()`` (a progress generator) in a worker; False if another task is running."""
        if self.worker is not None:
            self.report_error(f"'{self.task}' is still running. Fix: wait for it to finish or press Cancel first.", "")
            return False

        worker = GeneratorTask(work)
        self.worker, self.task, self.started_at = worker, task, time.monotonic()
        signals = worker.signals
        signals.yielded.connect(self.progress.emit)
        signals.returned.connect(lambda value: self._finish(on_done, value))
        signals.errored.connect(lambda exc: self._fail(exc, on_error))
        # the worker has closed the work generator (its finally blocks ran) before it emits aborted
        signals.aborted.connect(lambda: self._fail(Cancelled("cancelled by the user"), on_error))
        self.busyChanged.emit(True)
        self.log.emit(f"{task}: started")
        worker.start()
        return True

    def cancel(self) -> None:
        if self.worker is not None:
            self.log.emit(f"{self.task}: cancelling after the current batch")
            self.worker.quit()

    def _release(self) -> None:
        self.worker = None
        self.busyChanged.emit(False)

    def _finish(self, on_done: Callable[[Any], None], value: Any) -> None:
        task, seconds = self.task, time.monotonic() - self.started_at
        self._release()
        self.log.emit(f"{task}: done in {seconds:.1f} s")
        try:
            on_done(value)
        except Exception as exc:  # committing a result must not kill the window
            self._fail(exc, None)

    def _fail(self, exc: BaseException, on_error: Callable[[str], None] | None) -> None:
        task = self.task
        if self.worker is not None:
            self._release()
        self.task = task
        if isinstance(exc, Cancelled):
            message = f"{task} was cancelled; nothing was changed."
            self.log.emit(message)
            if on_error:
                on_error(message)
            return
        message, details = describe_error(exc)
        self.log.emit(f"{task} failed: {message}")
        if isinstance(exc, QStudioError) and exc.key:
            self.settingProblem.emit(exc.key, message)  # views mark the setting the error concerns
        if on_error:
            on_error(message)
        self.report_error(message, details)

    def report_error(self, message: str, details: str) -> None:
        self.errorDetails.emit(message, details)

    def wait(self, msecs: int = 30000) -> bool:
        """Ask a running worker to stop and wait for the thread pool (used on close)."""
        if self.worker is not None:
            self.worker.quit()
        return QThreadPool.globalInstance().waitForDone(msecs)

    # -- actions ---------------------------------------------------------------------
    def open_model(
        self,
        source: ModelSource,
        *,
        grants: Grants | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
    ) -> bool:
        """Load in a worker with ``grants``: the SHA-256s of the files the user agreed to run.

        The window asks before it calls this (qstudio.ui.trust_prompt); a file
        not covered, e.g. one changed since the question, fails like any other
        load error, with nothing of it run.
        """

        def work() -> Generator[Progress, Any, Any]:
            yield Progress("load", 0, 1, f"loading {source.spec}")
            prepared = self.session.prepare_load(source, grants=grants)
            yield Progress("load", 1, 1)
            return prepared

        def done(prepared: Any) -> None:
            loaded = self.session.commit_load(prepared)  # on the GUI thread: views never see half a model
            self.log.emit(f"loaded {loaded.name} ({loaded.kind})")
            for note in prepared.settings_notes:
                self.log.emit(f"settings follow {loaded.name}: {note}")
            for w in loaded.warnings:
                self.log.emit(f"note: {w}")
            if on_done:
                on_done(loaded)

        return self.start(f"open {source.spec}", work, done, on_failed)

    def run(self, *, export: str | None = None) -> bool:
        if self.session.loaded is None:
            self.report_error("No model is loaded. Fix: open a model (File > Open) first.", "")
            return False

        def done(result: RunResult) -> None:
            self.session.add_result(result)
            for w in result.warnings:
                self.log.emit(f"warning: {w}")
            self.runFinished.emit(result)

        return self.start(
            f"{self.session.recipe.mode} run", lambda: self.session.run(export=export), done, self.runFailed.emit
        )

    def update_recipe(self, recipe: Recipe) -> None:
        self.session.update_recipe(recipe)
