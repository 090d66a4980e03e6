"""The Qt face of the engine's Session: signals for views, workers for long work.

Views never call the engine themselves.  They read ``controller.session`` and
listen to the signals here; anything that takes time (loading a model, a
quantization run) goes through :meth:`SessionController.start`, which runs the
engine's progress generator in a worker thread and brings progress, results
and errors back to the GUI thread as signals.  One worker at a time: a second
run while one is going is refused with a message, never raced.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from qstudio.core.errors import Cancelled, QStudioError
from qstudio.core.pipeline import RunResult
from qstudio.core.progress import CancelToken, Progress
from qstudio.core.recipe import DataSource, ModelSource, Recipe
from qstudio.core.session import Session, same_model
from qstudio.core.trust import Grants
from qstudio.ui.worker import GeneratorTask

if TYPE_CHECKING:
    from qstudio.core.search import SearchResult, SearchSettings, SearchTrial

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
    searchStarted = Signal(object)  # SearchSettings
    searchTrial = Signal(object, object)  # SearchTrial, SearchResult so far (copies: the worker goes on)
    searchFinished = Signal(object)  # SearchResult (stopped == "cancelled" after Cancel: the best so far)
    searchFailed = Signal(str)

    def __init__(self, session: Session | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session or Session()
        self.session.subscribe(self._on_session_event)
        self.worker: GeneratorTask | None = None
        self.task = ""
        self.started_at = 0.0
        self._search_cancel: CancelToken | None = None  # set while a search runs: Cancel keeps its best so far
        self.search_recipe: Recipe | None = None  # the recipe the last search started from
        self.search_result: SearchResult | None = None  # the last search's result, once it ended
        self.searchTrial.connect(self._log_trial)

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
        if self.worker is None:
            return
        token = self._search_cancel
        if token is not None:  # a search stops through its token and returns the best configuration so far
            if not token.cancelled:
                self.log.emit(f"{self.task}: stopping after the current batch; the best configuration so far is kept")
                token.cancel()
            return
        self.log.emit(f"{self.task}: cancelling after the current batch")
        self.worker.quit()

    def _release(self) -> None:
        self.worker = None
        self._search_cancel = None
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
        if self._search_cancel is not None:
            self._search_cancel.cancel()
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

    # -- search ------------------------------------------------------------------------
    def search(self, settings: SearchSettings, *, holdout: DataSource | None = None) -> bool:
        """Search configurations of the current recipe in a worker (:meth:`Session.search`).

        Each finished trial arrives as ``searchTrial(trial, result so far)`` on
        the GUI thread; the end as ``searchFinished(result)``, also after Cancel
        (the search then returns the best configuration so far).  The winner's
        result is added to the session, so the History lists it and File >
        Export exports it.
        """
        session = self.session
        if session.loaded is None:
            self.report_error("No model is loaded. Fix: open a model (File > Open) first.", "")
            return False
        token = CancelToken()

        def on_trial(trial: SearchTrial, result: SearchResult) -> None:  # in the worker thread
            mine, snapshot = snapshot_search(trial, result)
            self.searchTrial.emit(mine, snapshot)

        def work() -> Generator[Progress, Any, SearchResult]:
            return (yield from session.search(settings, cancel=token, holdout=holdout, on_trial=on_trial))

        def done(result: SearchResult) -> None:
            self.search_result = result
            ran = sum(t.state != "running" for t in result.trials)
            how = {"time": "the time limit ran out", "cancelled": "cancelled, the best so far is kept"}.get(
                result.stopped, "all trials done"
            )
            self.log.emit(f"search: {ran} trial{'s' if ran != 1 else ''} ran ({how})")
            self.log.emit(f"search: {result.summary()}")
            for warning in result.warnings:
                self.log.emit(f"search WARNING: {warning}")
            for note in result.notes:
                self.log.emit(f"search note: {note}")
            best = result.best
            keep = result.final if result.final is not None else (best.result if best is not None else None)
            if keep is not None and not any(r is keep for r in session.results):
                session.add_result(keep)  # the History gets the winner's row; File > Export exports it
                self.log.emit(f"search: trial {best.number if best else '?'} is now the session's result")
            self.searchFinished.emit(result)

        def failed(message: str) -> None:
            self.searchFailed.emit(message)

        if self.worker is not None:  # refused with start's message, before anything of the last search is let go
            return self.start("search", work, done, failed)
        self.search_recipe = copy.deepcopy(session.recipe)
        self.search_result = None
        self._search_cancel = token  # before start: a Cancel pressed at once already reaches the search
        self.start("search", work, done, failed)
        limit = settings.trial_limit
        self.log.emit(
            f"search: the fastest configuration within {settings.max_drop:g} points of FP32"
            + (f", up to {limit} trials" if limit else "")
            + (f", at most {settings.time_budget / 60:g} min" if settings.time_budget else "")
        )
        self.searchStarted.emit(settings)
        return True

    def _log_trial(self, trial: SearchTrial, result: SearchResult) -> None:
        """``trial 3: within budget · 98.40% accuracy (-0.20 points vs FP32) · 1.85 ms · 2.10x · FX x86, …``."""
        from qstudio.core.formatting import fmt_ms, fmt_ratio

        figures = [trial.state]
        if trial.state == "complete":
            figures = ["within budget" if trial.within_budget else "over budget"]
        if trial.quality is not None:
            change = result.points_vs_fp32(trial)
            vs = "" if change == "—" else f" ({change} points vs FP32)"
            figures.append(f"{100 * trial.quality:.2f}% {result.metric}{vs}")
        if trial.latency_ms is not None:
            figures += [f"{fmt_ms(trial.latency_ms)} ms", fmt_ratio(trial.speedup)]
        best = " · best so far" if result.best is trial else ""
        note = f" ({trial.note})" if trial.note else ""
        self.log.emit(f"trial {trial.number}: {' · '.join(figures)} · {trial.describe()} [{trial.origin}]{note}{best}")

    def use_trial(self, trial: SearchTrial, result: RunResult | None = None) -> bool:
        """Make a trial's result (``result``, else the one it kept) the session's result, for File > Export."""
        if self.busy:
            self.report_error(f"'{self.task}' is still running. Fix: wait for it to finish or press Cancel first.", "")
            return False
        if not self.session.use_trial(trial, result=result):
            self.report_error(
                f"The model of trial {trial.number} was not kept (only the best and the frontier's are). "
                "Fix: press Replay this trial to run its recipe again.",
                "",
            )
            return False
        self.log.emit(
            f"trial {trial.number} ({trial.describe()}) is now the session's result: File > Export INT8 model exports it"
        )
        return True

    def replay_trial(self, trial: SearchTrial) -> bool:
        """Make a trial's recipe the session's recipe and run it (for a trial whose model was not kept)."""
        if self.busy:
            self.report_error(f"'{self.task}' is still running. Fix: wait for it to finish or press Cancel first.", "")
            return False
        loaded = self.session.loaded
        if loaded is None or not same_model(loaded.source, trial.recipe.model):
            self.report_error(
                f"Trial {trial.number} was searched on {trial.recipe.model.spec}, which is not the open model. "
                f"Fix: open {trial.recipe.model.spec} again, then replay the trial.",
                "",
            )
            return False
        recipe = copy.deepcopy(trial.recipe)
        base = self.search_recipe
        if base is not None:  # as the search measured its winner: the user's batch sizes and runtimes
            recipe.benchmark.batch_sizes = list(base.benchmark.batch_sizes)
            recipe.deploy.runtimes = copy.deepcopy(base.deploy.runtimes)
        self.session.update_recipe(recipe)
        self.log.emit(f"replaying trial {trial.number}: {trial.describe()}")
        return self.run()


def snapshot_search(trial: SearchTrial, result: SearchResult) -> tuple[SearchTrial, SearchResult]:
    """Copies of a trial and of the search so far, for the GUI thread while the worker goes on changing its own.

    Shallow: recipes and run results are shared (the search never changes
    them after a trial ends; it only lets go of the models it does not keep).
    """
    trials = [copy.copy(t) for t in result.trials]
    snapshot = copy.copy(result)
    snapshot.trials = trials
    snapshot.notes = list(result.notes)
    snapshot.warnings = list(result.warnings)
    mine = next((t for t in trials if t.number == trial.number), copy.copy(trial))
    return mine, snapshot
