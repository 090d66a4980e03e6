"""The studio window: panels around one SessionController, a toolbar, menus, progress and log.

Layout (left to right): settings | module tree | results, with the run
progress and log along the bottom.  The window holds no quantization logic:
buttons call the controller, panels observe it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.errors import QStudioError
from qstudio.core.paths import resources_dir
from qstudio.core.pipeline import RunResult, export_result
from qstudio.core.progress import Progress, RunProgress
from qstudio.core.recipe import ModelSource, Recipe
from qstudio.core.trust import Grants
from qstudio.ui.controller import SessionController, describe_error
from qstudio.ui.errors import ErrorReporter
from qstudio.ui.open_dialog import OpenModelDialog, pick_torchvision
from qstudio.ui.results_panel import ResultsPanel
from qstudio.ui.settings_panel import SettingsPanel
from qstudio.ui.tree_panel import ModelTreePanel
from qstudio.ui.trust_prompt import ask_before_loading

log = logging.getLogger(__name__)

MAX_RECENT = 8


def app_icon() -> QIcon:
    return QIcon(str(resources_dir() / "icons" / "qstudio.svg"))


def open_settings() -> tuple[QSettings, str | None]:
    """The window's QSettings, and a warning if the stored file was unreadable (it is then reset)."""
    settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "qstudio", "qstudio")
    settings.allKeys()  # QSettings reads its file lazily: status() reports a corrupt file only after a read
    if settings.status() != QSettings.Status.NoError:
        path = settings.fileName()
        warning = f"The settings file {path} could not be read and was reset to defaults."
        with contextlib.suppress(OSError):
            Path(path).unlink()
        settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "qstudio", "qstudio")
        return settings, warning
    return settings, None


class MainWindow(QMainWindow):
    runFinished = Signal(object)  # RunResult
    runFailed = Signal(str)
    PROGRESS_STEPS = 1000  # the progress bar's range: 0.1 % steps

    def __init__(self, controller: SessionController | None = None) -> None:
        super().__init__()
        self.controller = controller or SessionController(parent=self)
        self.setWindowTitle("qstudio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self.qsettings, warning = open_settings()
        self.errors = ErrorReporter(self)
        self.controller.errorDetails.connect(self.errors.report)
        self.controller.runFinished.connect(self.runFinished.emit)
        self.controller.runFailed.connect(self.runFailed.emit)

        # panels
        self.settings_panel = SettingsPanel(self.controller)
        self.tree_panel = ModelTreePanel(self.controller)
        self.results_panel = ResultsPanel(self.controller)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.settings_panel)
        splitter.addWidget(self.tree_panel)
        splitter.addWidget(self.results_panel)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 4)
        splitter.setSizes([320, 560, 400])  # the tree needs room for its SQNR columns; results widen after a run
        self.splitter = splitter
        self.setCentralWidget(splitter)
        self.results_panel.layerClicked.connect(self.tree_panel.select_module)
        self.tree_panel.selectedNamesChanged.connect(lambda names: names and self.results_panel.highlight_layer(names[0]))
        self.results_panel.keepWorstInFloat.connect(self.keep_in_float_and_rerun)

        self._build_run_dock()
        self._build_actions()
        self._build_status()
        self.controller.progress.connect(self._on_progress)
        self.controller.busyChanged.connect(self._on_busy)
        self.controller.log.connect(self.log_line)
        self.controller.modelChanged.connect(self._update_status)
        self.controller.recipeChanged.connect(self._update_status)
        self.controller.resultsChanged.connect(self._update_status)
        self.controller.resultsChanged.connect(self._widen_results_once)
        self._on_busy(False)

        self._restore_state()
        if warning:
            self.log_line(f"warning: {warning}")
            self.statusBar().showMessage(warning, 10000)

    # -- construction ------------------------------------------------------------
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
        self.export_button = QPushButton("Export TorchScript…")
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
        self.eta_label.setMinimumWidth(self.eta_label.fontMetrics().horizontalAdvance("about 59 min left (whole run)") + 8)
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
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [112], Qt.Orientation.Vertical)
        self.run_dock = dock
        self.run_progress = RunProgress()

    def _action(self, text: str, slot, shortcut: QKeySequence | str | None = None, tip: str = "", *, name: str = "") -> QAction:
        act = QAction(text, self)
        act.setObjectName(name)  # part of the testing surface: docs/ui-testing.md lists them
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        self.act_open = self._action("&Open model…", self.open_model_dialog, QKeySequence.StandardKey.Open, "Open a weights file, factory or model file", name="openModelAction")
        self.act_open_tv = self._action("Open &torchvision architecture…", self.open_torchvision, "Ctrl+Shift+O", name="openTorchvisionAction")
        self.act_open_demo = self._action("Open the &demo", lambda: self.open_model(ModelSource("demo")), name="openDemoAction")
        self.act_open_recipe = self._action("Open &recipe…", self.open_recipe_dialog, "Ctrl+Shift+R", name="openRecipeAction")
        self.act_save_recipe = self._action("&Save recipe…", self.save_recipe, QKeySequence.StandardKey.Save, name="saveRecipeAction")
        self.act_last_recipe = self._action("Reopen &last recipe", self.reopen_last_recipe, tip="The recipe in use when qstudio was last closed", name="reopenLastRecipeAction")
        self.act_export = self._action("&Export TorchScript…", self.export_torchscript, "Ctrl+E", "Export the INT8 model, verified by reload", name="exportAction")
        self.act_report = self._action("Export &report…", self.export_report, "Ctrl+Shift+E", "Self-contained HTML report", name="exportReportAction")
        self.act_charts = self._action("Export chart &PNGs…", self.export_charts, name="exportChartsAction")
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, name="quitAction")
        self.act_run = self._action("&Run", self.run, "F5", "Quantize with the current settings", name="runAction")
        self.act_run.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        self.act_cancel = self._action("&Cancel", self.controller.cancel, "Esc", "Stop after the current batch", name="cancelAction")

        menu = self.menuBar().addMenu("&File")
        for a in (self.act_open, self.act_open_tv, self.act_open_demo):
            menu.addAction(a)
        self.recent_menu = QMenu("Open r&ecent", self)
        self.recent_menu.setObjectName("recentMenu")
        menu.addMenu(self.recent_menu)
        menu.addSeparator()
        for a in (self.act_open_recipe, self.act_last_recipe, self.act_save_recipe):
            menu.addAction(a)
        menu.addSeparator()
        for a in (self.act_export, self.act_report, self.act_charts):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.act_quit)
        run_menu = self.menuBar().addMenu("&Run")
        run_menu.addAction(self.act_run)
        run_menu.addAction(self.act_cancel)
        view = self.menuBar().addMenu("&View")
        view.addAction(self.run_dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("&About qstudio", self.about))

        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for a in (self.act_open, self.act_open_tv):
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.act_run)
        tb.addAction(self.act_cancel)
        tb.addSeparator()
        for a in (self.act_export, self.act_report, self.act_save_recipe):
            tb.addAction(a)
        self.addToolBar(tb)

    def _build_status(self) -> None:
        self.model_label = QLabel("No model loaded")
        self.model_label.setObjectName("modelStatus")
        self.task_label = QLabel("")
        self.task_label.setObjectName("taskStatus")
        self.statusBar().addWidget(self.model_label, 1)
        self.statusBar().addPermanentWidget(self.task_label)

    # -- state -------------------------------------------------------------------
    def _restore_state(self) -> None:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = self.qsettings.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        self._rebuild_recent()

    def _save_state(self) -> None:
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        self.qsettings.setValue("window/splitter", self.splitter.saveState())
        self.qsettings.setValue("recipe/last", self.controller.session.recipe.to_toml())
        self.qsettings.sync()

    def recent(self) -> list[dict[str, str]]:
        value = self.qsettings.value("recent/models", [])
        items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        out = []
        for item in items:
            spec, _, factory = str(item).partition("\t")
            if spec:
                out.append({"spec": spec, "factory": factory})
        return out

    def remember_model(self, source: ModelSource) -> None:
        """Put ``source`` first in *File > Open recent* (kept in the window's settings)."""
        entry = f"{source.spec}\t{source.factory or ''}"
        items = [f"{r['spec']}\t{r['factory']}" for r in self.recent() if f"{r['spec']}\t{r['factory']}" != entry]
        self.qsettings.setValue("recent/models", [entry, *items][:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        entries = self.recent()
        for r in entries:
            label = r["spec"] + (f"  (factory {Path(r['factory'].split(':')[0]).name})" if r["factory"] else "")
            act = self.recent_menu.addAction(label)
            act.triggered.connect(lambda _=False, r=r: self.open_model(ModelSource(r["spec"], r["factory"] or None)))
        self.recent_menu.setEnabled(bool(entries))

    # -- status/progress -----------------------------------------------------------
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

    def _widen_results_once(self) -> None:
        """After the first result the charts deserve the larger share; later the user's split is kept."""
        if getattr(self, "_widened", False):
            return
        self._widened = True
        sizes = self.splitter.sizes()
        total = sum(sizes)
        settings = max(sizes[0], self.settings_panel.minimumSizeHint().width())
        rest = total - settings
        # the tree as wide as its names and result columns (SQNR, State), if the results keep room for the cards,
        # charts and tables at full size; on a narrow screen the tree scrolls sideways instead
        results_least = max(430, self.results_panel.minimumSizeHint().width())
        tree = min(self.tree_panel.results_width(), rest - results_least, rest // 2)
        tree = max(tree, self.tree_panel.minimumSizeHint().width())
        self.splitter.setSizes([settings, tree, rest - tree])

    def _on_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.act_run.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.act_cancel.setEnabled(busy)
        for a in (self.act_open, self.act_open_tv, self.act_open_demo, self.act_open_recipe):
            a.setEnabled(not busy)
        self.recent_menu.setEnabled(not busy and bool(self.recent()))
        if busy:
            self.run_progress = RunProgress()
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
            self.log_line(f"epoch {m['epoch']:.0f}: loss {m['loss']:.4f}, train accuracy {m['train_accuracy']:.2%}{acc}")

    # -- actions -------------------------------------------------------------------
    def open_model(self, source: ModelSource, *, on_failed: Callable[[str], None] | None = None) -> bool:
        """Open a model the user chose: ask first about any file it would run (qstudio.ui.trust_prompt), then load.

        False if nothing was started (the user declined, or another task is running).
        """
        if self.controller.busy:  # refused by the controller, with its message: nothing is asked or loaded
            return self._load(source, Grants(), on_failed)
        grants = ask_before_loading(self, self.qsettings, source, log=self.log_line)
        if grants is None:
            if on_failed:
                on_failed("no trust given")
            return False
        return self._load(source, grants, on_failed)

    def _load(self, source: ModelSource, grants: Grants, on_failed: Callable[[str], None] | None = None) -> bool:
        """Load in a worker with what the user granted; the loader refuses any file changed since the question."""
        return self.controller.open_model(
            source, grants=grants, on_done=lambda _l: self.remember_model(source), on_failed=on_failed
        )

    def open_model_dialog(self) -> None:
        dialog = OpenModelDialog(self)
        if dialog.exec():
            source = dialog.source()
            if source.spec:
                self.open_model(source)  # a factory picked here is the user's own choice: no prompt

    def open_torchvision(self) -> None:
        source = pick_torchvision(self)
        if source is not None:
            self.open_model(source)

    def open_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe", "", "Recipes (*.toml);;All files (*)")
        if path:
            self.open_recipe(path)

    def open_recipe(self, path: str) -> None:
        try:
            recipe = Recipe.load(path)
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        self._apply_recipe_with_model(recipe, f"recipe {path}")

    def reopen_last_recipe(self) -> None:
        text = self.qsettings.value("recipe/last", "")
        if not isinstance(text, str) or not text:
            self.errors.report("No recipe was saved from an earlier session yet. Fix: run and close qstudio once first.", "")
            return
        try:
            recipe = Recipe.from_toml(text)
        except QStudioError as exc:
            self.errors.report(f"The last recipe could not be read: {exc}", "")
            return
        self._apply_recipe_with_model(recipe, "the last recipe")

    def _apply_recipe_with_model(self, recipe: Recipe, what: str) -> None:
        """Use ``recipe`` and load its model, asking first about code it names; if the model cannot be loaded,
        the earlier settings come back."""
        if self.controller.busy:  # refused by the controller, with its message: nothing is asked, applied or loaded
            self._load(recipe.model, Grants())
            return
        grants = ask_before_loading(self, self.qsettings, recipe, recipe=what, log=self.log_line)
        if grants is None:
            return
        session = self.controller.session
        previous = session.recipe
        session.apply_recipe(recipe)  # loading the model adjusts this recipe to it (Session.prepare_load)

        def restore(_message: str) -> None:
            session.apply_recipe(previous)
            self.log_line(f"{what} was not applied: its model could not be opened; your earlier settings are kept")

        self.log_line(f"{what} opened; loading its model {recipe.model.spec}")
        if not self._load(recipe.model, grants, on_failed=restore):
            session.apply_recipe(previous)

    def save_recipe(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save recipe", "recipe.toml", "Recipes (*.toml)")
        if not path:
            return
        try:
            recipe = self.controller.session.recipe
            recipe.fusion = self.controller.session.groups if recipe.mode != "dynamic" else None
            recipe.save(path)
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        self.log_line(f"recipe saved to {path} (replay with: qstudio run {path})")

    def run(self) -> None:
        self.controller.run()

    def keep_in_float_and_rerun(self, names: list[str]) -> None:
        for name in names:
            self.controller.session.set_skip(name, True)
        self.log_line(f"keeping in float: {', '.join(names)}; re-running")
        self.controller.run()

    def _last_result(self) -> RunResult | None:
        result = self.controller.session.last
        if result is None:
            self.errors.report("There is no result to export yet. Fix: run a quantization first.", "")
        return result

    def export_torchscript(self) -> None:
        result = self._last_result()
        if result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export INT8 TorchScript", "model_int8.pt", "TorchScript (*.pt)")
        if not path:
            return

        def work():
            yield Progress("export", 0, 1, f"writing {path}")
            info = export_result(result, path)
            yield Progress("export", 1, 1)
            return info

        def done(info) -> None:
            self.log_line(f"exported {info.path} ({info.size_mb:.2f} MB, {info.method}, reloaded and verified: max diff {info.max_abs_diff:.2g})")
            self.statusBar().showMessage(f"Exported {info.path}", 8000)

        self.controller.start("export TorchScript", work, done)

    def export_report(self) -> None:
        result = self._last_result()
        if result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export report", "qstudio-report.html", "HTML (*.html)")
        if not path:
            return
        from qstudio.core.report import write_report

        try:
            write_report(result, path)
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        self.log_line(f"report written to {path}")

    def export_charts(self) -> None:
        if self._last_result() is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for chart PNGs")
        if not folder:
            return
        from qstudio.core.fileio import atomic_write_bytes
        from qstudio.ui.charts import render_png

        try:
            # both images are rendered in memory first: a chart that cannot be drawn writes nothing at all
            charts = self.results_panel.latency_chart, self.results_panel.layer_chart
            images = [(Path(folder) / f"{w.objectName()}.png", render_png(w)) for w in charts]
            for out, png in images:
                atomic_write_bytes(out, png, "chart PNG")  # ExportError on a full disk; an earlier PNG is kept
                self.log_line(f"chart saved to {out} ({len(png) / 1e3:.0f} KB)")
        except Exception as exc:
            self.errors.report(*describe_error(exc))

    def about(self) -> None:
        import torch

        import qstudio

        self.errors.box = None
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.about(
            self,
            "About qstudio",
            f"qstudio {qstudio.__version__}\nA quantization studio for PyTorch.\ntorch {torch.__version__}",
        )

    # -- drag and drop / close ------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            return
        path = urls[0]
        if path.endswith(".toml"):
            self.open_recipe(path)
        else:
            self.open_model(ModelSource(path))
        event.acceptProposedAction()

    def closeEvent(self, event) -> None:
        if self.controller.busy:
            self.log_line("closing: stopping the running task")
        self.controller.wait(30000)
        self._save_state()
        self.errors.uninstall_hooks()
        super().closeEvent(event)
