"""The window's run dock and status bar: Run/Cancel/Export buttons, the progress bar with its ETA, the log.

:class:`RunDockMixin` is part of :class:`qstudio.ui.main_window.MainWindow`:
it builds the dock (``run_button``, ``cancel_button``, ``export_button``,
``progress_bar``, ``eta_label``, ``log_view``) and the status bar labels, and
follows the controller's busy state and progress.  One bar covers the whole
run; the engine's plan (:class:`~qstudio.core.progress.RunProgress`) maps each
stage's batches to its share.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.progress import Progress, RunProgress


class RunDockMixin:
    """The run dock, status bar, log and progress of :class:`~qstudio.ui.main_window.MainWindow`."""

    PROGRESS_STEPS = 1000  # the progress bar's range: 0.1 % steps

    def _build_run_dock(self) -> None:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        lay.setContentsMargins(6, 4, 6, 4)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("runButton")
        self.run_button.setToolTip("Quantize with the current settings (F5)")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop after the current batch (Esc)")
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.export_button = QPushButton("Export model…")
        self.export_button.setObjectName("exportButton")
        self.export_button.clicked.connect(self.export_torchscript)
        # one bar for the whole run (0-100 %, the stage named in it) and the time left for the whole run beside it
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setRange(0, self.PROGRESS_STEPS)
        self.progress_bar.setFormat("idle")
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("etaLabel")
        self.eta_label.setMinimumWidth(
            self.eta_label.fontMetrics().horizontalAdvance("about 59 min left (whole run)") + 8
        )
        for w in (self.run_button, self.cancel_button):
            row.addWidget(w)
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.eta_label)
        row.addWidget(self.export_button)
        lay.addLayout(row)
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("logView")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMinimumHeight(48)  # three lines: a 700 px high window keeps its height for the results
        self.log_view.setPlaceholderText("Log: what was loaded, run, exported, and every warning.")
        lay.addWidget(self.log_view)
        dock = QDockWidget("Run", self)
        dock.setObjectName("runDock")
        dock.setWidget(panel)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [112], Qt.Orientation.Vertical)
        self.run_dock = dock
        self.run_progress = RunProgress()

    def _build_status(self) -> None:
        self.model_label = QLabel("No model loaded")
        self.model_label.setObjectName("modelStatus")
        self.task_label = QLabel("")
        self.task_label.setObjectName("taskStatus")
        self.statusBar().addWidget(self.model_label, 1)
        self.statusBar().addPermanentWidget(self.task_label)

    def log_line(self, text: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _update_status(self) -> None:
        s = self.controller.session
        if s.loaded is None:
            self.model_label.setText("No model loaded")
        else:
            params = s.tree.params if s.tree else 0
            shape = s.recipe.input_shape or s.loaded.input_shape
            self.model_label.setText(
                f"{s.loaded.name} ({s.tree.type if s.tree else s.loaded.kind}, {params / 1e6:.2f}M params, input {shape})"
                f"  ·  mode {s.recipe.mode}, backend {s.recipe.settings.backend}"
                + (f"  ·  {len(s.results)} run(s)" if s.results else "")
            )
        self.export_button.setEnabled(not self.controller.busy and s.last is not None)
        self.act_export.setEnabled(self.export_button.isEnabled())
        self.act_report.setEnabled(not self.controller.busy and s.last is not None)

    def _on_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.act_run.setEnabled(not busy)
        self.act_search.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.act_cancel.setEnabled(busy)
        for a in (self.act_open, self.act_open_tv, self.act_open_demo, self.act_open_recipe):
            a.setEnabled(not busy)
        self.recent_menu.setEnabled(not busy and bool(self.recent()))
        if busy:
            self.run_progress = RunProgress()
            self._last_search_message = ""
            self.task_label.setText(f"running: {self.controller.task}")
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat(f"{self.controller.task} · starting")
            self.eta_label.setText("")
        else:
            self.task_label.setText("")
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("idle")
            self.eta_label.setText("")
        self._update_status()

    def _on_progress(self, step: Progress) -> None:
        """One bar over the whole run: the engine's plan maps each stage's batches to a share of it (RunProgress)."""
        tracker = self.run_progress
        tracker.update(step)
        if step.stage == "search":
            self._on_search_progress(step)
            return
        if step.plan is not None:  # the run's first step: what is to come, and a note if the data holds less
            if step.message:
                self.log_line(f"note: {step.message}")
            return
        self.progress_bar.setValue(round(tracker.fraction * self.PROGRESS_STEPS))
        self.progress_bar.setFormat(tracker.describe())  # "Calibrating · 42%" (only %p, %v, %m are placeholders)
        self.progress_bar.setToolTip(f"{step.stage}: {step.done} of {step.total}")
        self.eta_label.setText(tracker.describe_eta())  # "about 35 s left (whole run)"
        self.task_label.setText(f"running: {self.controller.task} · {step.stage} {step.done}/{step.total}")
        if step.message and step.done == 0:
            self.log_line(f"{step.stage}: {step.message}")
        if step.metrics and "epoch" in step.metrics:
            m = step.metrics
            acc = f", eval accuracy {m['eval_accuracy']:.2%}" if "eval_accuracy" in m else ""
            self.log_line(
                f"epoch {m['epoch']:.0f}: loss {m['loss']:.4f}, train accuracy {m['train_accuracy']:.2%}{acc}"
            )

    def _on_search_progress(self, step: Progress) -> None:
        """A search's step: the bar is its share of trials (or of the time limit); the trial in the status bar."""
        tracker = self.run_progress
        self.progress_bar.setValue(round(tracker.fraction * self.PROGRESS_STEPS))
        trials = int((step.metrics or {}).get("trials", 0))
        self.progress_bar.setFormat(f"Searching · {trials} trial{'s' if trials != 1 else ''} done · %p%")
        self.progress_bar.setToolTip(step.message)
        self.eta_label.setText(tracker.describe_eta())
        # trials are numbered from 0 (the plain run), as the Search tab and the log number them: the one running
        # now is the next after those done
        running = f"trial {trials}" if step.message.startswith("trial") else "the winner again"
        self.task_label.setText(f"running: search · {running}")
        message = step.message
        if (
            message
            and not message.startswith("trial")
            and " · " not in message
            and message != self._last_search_message
        ):
            self._last_search_message = message
            self.log_line(f"search: {message}")  # "measuring the winner again beside every runtime"

    _last_search_message = ""
