"""The window's actions, menus and toolbar: File, Run, View and Help, and the main toolbar.

:class:`ActionsMixin` is part of :class:`qstudio.ui.main_window.MainWindow`.
Every action has an objectName (``openModelAction``, ``exportAction`` ...):
they are part of the testing surface that docs/ui-testing.md lists.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar

from qstudio.core.recipe import ModelSource


class ActionsMixin:
    """The QActions (``act_open``, ``act_run`` ...), menus (``recent_menu``) and toolbar of the main window."""

    def _action(
        self, text: str, slot, shortcut: QKeySequence | str | None = None, tip: str = "", *, name: str = ""
    ) -> QAction:
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
        self.act_open = self._action(
            "&Open model…",
            self.open_model_dialog,
            QKeySequence.StandardKey.Open,
            "Open a weights file, factory or model file",
            name="openModelAction",
        )
        self.act_open_tv = self._action(
            "Open &torchvision architecture…", self.open_torchvision, "Ctrl+Shift+O", name="openTorchvisionAction"
        )
        self.act_open_demo = self._action(
            "Open the &demo", lambda: self.open_model(ModelSource("demo")), name="openDemoAction"
        )
        self.act_open_recipe = self._action(
            "Open &recipe…", self.open_recipe_dialog, "Ctrl+Shift+R", name="openRecipeAction"
        )
        self.act_save_recipe = self._action(
            "&Save recipe…", self.save_recipe, QKeySequence.StandardKey.Save, name="saveRecipeAction"
        )
        self.act_last_recipe = self._action(
            "Reopen &last recipe",
            self.reopen_last_recipe,
            tip="The recipe in use when qstudio was last closed",
            name="reopenLastRecipeAction",
        )
        self.act_export = self._action(
            "&Export INT8 model…",
            self.export_torchscript,
            "Ctrl+E",
            "Export the INT8 model for any runtime measured in the run (TorchScript, ONNX Runtime, OpenVINO, PT2), "
            "verified by reloading it in that runtime",
            name="exportAction",
        )
        self.act_report = self._action(
            "Export &report…",
            self.export_report,
            "Ctrl+Shift+E",
            "Self-contained HTML report",
            name="exportReportAction",
        )
        self.act_charts = self._action("Export chart &PNGs…", self.export_charts, name="exportChartsAction")
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, name="quitAction")
        self.act_run = self._action("&Run", self.run, "F5", "Quantize with the current settings", name="runAction")
        self.act_run.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        self.act_cancel = self._action(
            "&Cancel", self.controller.cancel, "Esc", "Stop after the current batch", name="cancelAction"
        )
        self.act_search = self._action(
            "&Search for the fastest within budget…",
            self.open_search_dialog,
            "Ctrl+Shift+F",
            "Try configurations and keep the fastest whose accuracy stays within a budget of FP32's",
            name="searchAction",
        )
        self.act_search.setIconText("Search…")  # the toolbar's text

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
        run_menu.addAction(self.act_search)
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
        tb.addAction(self.act_search)
        tb.addAction(self.act_cancel)
        tb.addSeparator()
        for a in (self.act_export, self.act_report, self.act_save_recipe):
            tb.addAction(a)
        self.addToolBar(tb)
