"""The studio window: panels around one SessionController, a toolbar, menus, progress and log.

Layout (left to right): settings | module tree | results, with the run
progress and log along the bottom.  The window holds no quantization logic:
buttons call the controller, panels observe it.

The window's parts live in :mod:`qstudio.ui.window`: the run dock and status
bar (:mod:`~qstudio.ui.window.run_dock`), the actions, menus and toolbar
(:mod:`~qstudio.ui.window.actions`), the exports
(:mod:`~qstudio.ui.window.exports`) and what it remembers between sessions
(:mod:`~qstudio.ui.window.window_state`).  Opening models and recipes, asking
first about code they would run, is here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon
from PySide6.QtWidgets import QFileDialog, QMainWindow, QSplitter

from qstudio.core.errors import QStudioError
from qstudio.core.flows import mode_traits
from qstudio.core.paths import resources_dir
from qstudio.core.recipe import ModelSource, Recipe
from qstudio.core.trust import Grants
from qstudio.ui.controller import SessionController
from qstudio.ui.errors import ErrorReporter
from qstudio.ui.open_dialog import OpenModelDialog, pick_torchvision
from qstudio.ui.results_panel import ResultsPanel
from qstudio.ui.settings_panel import SettingsPanel
from qstudio.ui.tree_panel import ModelTreePanel
from qstudio.ui.trust_prompt import ask_before_loading
from qstudio.ui.window.actions import ActionsMixin
from qstudio.ui.window.exports import ExportsMixin
from qstudio.ui.window.run_dock import RunDockMixin
from qstudio.ui.window.window_state import MAX_RECENT, WindowStateMixin, open_settings

__all__ = ["MAX_RECENT", "MainWindow", "app_icon", "open_settings"]

log = logging.getLogger(__name__)


def app_icon() -> QIcon:
    return QIcon(str(resources_dir() / "icons" / "qstudio.svg"))


class MainWindow(RunDockMixin, ActionsMixin, ExportsMixin, WindowStateMixin, QMainWindow):
    """The studio window; see the module docstring for where each part is built."""

    runFinished = Signal(object)  # RunResult
    runFailed = Signal(str)

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
        self.tree_panel.selectedNamesChanged.connect(
            lambda names: names and self.results_panel.highlight_layer(names[0])
        )
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

    # -- opening models and recipes, running -------------------------------------
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
            self.errors.report(
                "No recipe was saved from an earlier session yet. Fix: run and close qstudio once first.", ""
            )
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
            recipe.fusion = self.controller.session.groups if mode_traits(recipe.mode).fuses else None
            recipe.save(path)
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        self.log_line(f"recipe saved to {path} (replay with: qstudio run {path})")

    def run(self) -> None:
        self.controller.run()

    def open_search_dialog(self) -> None:
        """Run > Search for the fastest within budget…: the dialog, then the search on the current settings."""
        from qstudio.ui.search_dialog import SearchDialog

        if self.controller.busy:  # refused by the controller, with its message
            self.controller.report_error(
                f"'{self.controller.task}' is still running. Fix: wait for it to finish or press Cancel first.", ""
            )
            return
        if self.controller.session.loaded is None:
            self.errors.report("No model is loaded. Fix: open a model (File > Open) first.", "")
            return
        dialog = SearchDialog(self)
        try:
            if not dialog.exec():
                return
            settings = dialog.settings()
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        finally:
            dialog.deleteLater()
        self.controller.search(settings)

    def keep_in_float_and_rerun(self, names: list[str]) -> None:
        for name in names:
            self.controller.session.set_skip(name, True)
        self.log_line(f"keeping in float: {', '.join(names)}; re-running")
        self.controller.run()

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
