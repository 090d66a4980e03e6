"""The module tree's fusion editing: the Fuse/Unfuse/Suggest buttons, the group summary, the context menu.

:class:`FusionEditingMixin` is part of
:class:`qstudio.ui.tree_panel.ModelTreePanel`.  Fusing, validating and
suggesting groups, and the keep-in-float list, are the engine's
(``controller.session``); these only send the selection there and show what
it answers.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QPushButton

from qstudio.core.flows import mode_traits
from qstudio.core.tree import ModuleNode
from qstudio.ui.controller import describe_error

PROBLEM_STYLE = "color: #c62828;"


class FusionEditingMixin:
    """Fusion groups and keep-in-float for the selected modules of the tree panel."""

    def _build_fusion_bar(self) -> QHBoxLayout:
        """The Fuse/Unfuse/Suggest buttons in the row returned, and the labels the panel puts under it.

        Made here: ``fuse_button``, ``unfuse_button``, ``suggest_button``, ``summary_label``,
        ``notes_label`` and ``problems_label``.
        """
        self.fuse_button = QPushButton("Fuse", self)
        self.fuse_button.setObjectName("fuseButton")
        self.fuse_button.setToolTip(
            "Fuse the selected modules into one group (select 2 or 3, e.g. Conv2d + BatchNorm2d + ReLU)"
        )
        self.fuse_button.clicked.connect(self.fuse_selected)
        self.unfuse_button = QPushButton("Unfuse", self)
        self.unfuse_button.setObjectName("unfuseButton")
        self.unfuse_button.setToolTip("Remove the fusion groups of the selected modules (Delete)")
        self.unfuse_button.clicked.connect(self.unfuse_selected)
        self.suggest_button = QPushButton("Suggest", self)
        self.suggest_button.setObjectName("suggestButton")
        self.suggest_button.setToolTip("Replace every group by the ones found in the model's data flow")
        self.suggest_button.clicked.connect(self.suggest)

        self.summary_label = QLabel(self)
        self.summary_label.setObjectName("groupSummary")
        self.summary_label.setWordWrap(True)  # its own line under the buttons; a long summary wraps, never widens
        self.notes_label = QLabel(self)
        self.notes_label.setObjectName("groupNotes")
        self.notes_label.setWordWrap(True)
        font = self.notes_label.font()
        font.setItalic(True)
        self.notes_label.setFont(font)
        self.notes_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problems_label = QLabel(self)
        self.problems_label.setObjectName("fusionProblems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet(PROBLEM_STYLE)
        self.problems_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_label.hide()

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for b in (self.fuse_button, self.unfuse_button, self.suggest_button):
            # as wide as the word needs, not the style's 80 px: the panel stays narrow enough for 1024 px windows
            b.setMinimumWidth(b.fontMetrics().horizontalAdvance(b.text()) + 24)
            buttons.addWidget(b)
        buttons.addStretch(1)
        return buttons

    # -- actions --------------------------------------------------------------------
    def fuse_selected(self) -> None:
        names = self.selected_names()
        if self._busy or not names:
            return
        try:
            problems = self.controller.session.fuse(names)
        except Exception as exc:
            self._report(exc)
            return
        self._show_problems([str(p) for p in problems])

    def unfuse_selected(self) -> None:
        names = self._with_descendants(self.selected_names())
        if self._busy or not names:
            return
        try:
            self.controller.session.unfuse(names)
        except Exception as exc:
            self._report(exc)
            return
        self._show_problems([])

    def suggest(self) -> None:
        if self._busy:
            return
        try:
            self.controller.session.suggest()
        except Exception as exc:
            self._report(exc)
            return
        self._show_problems([])

    def set_keep_float(self, names: list[str], keep: bool) -> None:
        for name in names:
            self._set_keep_float(name, keep)

    def _set_keep_float(self, name: str, keep: bool) -> None:
        self.controller.session.set_skip(name, keep)

    def copy_names(self) -> None:
        names = self.selected_names()
        if names:
            QGuiApplication.clipboard().setText("\n".join(names))

    def _report(self, exc: Exception) -> None:
        self.controller.report_error(*describe_error(exc))

    def _show_problems(self, problems: list[str]) -> None:
        self.problems_label.setText("\n".join(problems))
        self.problems_label.setVisible(bool(problems))

    # -- context menu ----------------------------------------------------------------
    def context_menu(self) -> QMenu:
        """The menu for the current selection (built fresh each time; also used by tests)."""
        names = self.selected_names()
        leaves = [n for n in names if (node := self._node(n)) is not None and not node.children]
        editable = not self._busy and self.controller.session.loaded is not None
        menu = QMenu(self)
        kept = bool(leaves) and all(self._node(n).kept_float for n in leaves)  # type: ignore[union-attr]
        what = "this module" if len(leaves) == 1 else f"{len(leaves)} modules"
        keep = QAction(
            f"Quantize {what}" if kept else ("Keep in float" if len(leaves) <= 1 else f"Keep {what} in float"), menu
        )
        keep.setObjectName("keepFloatAction")
        keep.setEnabled(editable and bool(leaves))
        keep.triggered.connect(lambda: self.set_keep_float(leaves, not kept))
        fuse = QAction("Fuse selected", menu)
        fuse.setObjectName("fuseAction")
        fuse.setEnabled(editable and len(names) >= 2)
        fuse.triggered.connect(self.fuse_selected)
        unfuse = QAction("Unfuse", menu)
        unfuse.setObjectName("unfuseAction")
        unfuse.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        unfuse.setEnabled(editable and self._any_grouped(names))
        unfuse.triggered.connect(self.unfuse_selected)
        copy = QAction("Copy name" if len(names) <= 1 else f"Copy {len(names)} names", menu)
        copy.setObjectName("copyNameAction")
        copy.setEnabled(bool(names))
        copy.triggered.connect(self.copy_names)
        menu.addAction(keep)
        menu.addSeparator()
        menu.addAction(fuse)
        menu.addAction(unfuse)
        menu.addSeparator()
        menu.addAction(copy)
        return menu

    def _show_context_menu(self, pos: QPoint) -> None:
        if not self.view.indexAt(pos).isValid():
            return
        menu = self.context_menu()
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.view.viewport().mapToGlobal(pos))

    # -- helpers ---------------------------------------------------------------------
    def _node(self, name: str) -> ModuleNode | None:
        index = self.model.index_for(name)
        return self.model.node(index) if index.isValid() else None

    def _with_descendants(self, names: list[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            node = self._node(name)
            if node is not None:
                out.extend(n.name for n in node.walk() if n.name not in out)
        return out

    def _any_grouped(self, names: list[str]) -> bool:
        for name in self._with_descendants(names):
            node = self._node(name)
            if node is not None and node.fusion_group is not None:
                return True
        return False

    def _update_buttons(self) -> None:
        loaded = self.controller.session.loaded is not None
        names = self.selected_names()
        editable = loaded and not self._busy
        self.fuse_button.setEnabled(editable and len(names) >= 2)
        self.unfuse_button.setEnabled(editable and self._any_grouped(names))
        self.suggest_button.setEnabled(editable and not self.controller.session.loaded.scripted)  # type: ignore[union-attr]

    def _update_summary(self) -> None:
        session = self.controller.session
        if session.tree is None:
            self.summary_label.setText("No model loaded")
            self.notes_label.hide()
            return
        n = len(session.groups)
        how = "edited" if session.recipe.fusion is not None else session.group_method
        text = f"{n} fusion group{'' if n == 1 else 's'}" + (f" ({how})" if how else "")
        if not mode_traits(session.recipe.mode).fuses:
            text += f", unused in {session.recipe.mode} mode"
        self.summary_label.setText(text)
        self.notes_label.setText("\n".join(session.group_notes))
        self.notes_label.setVisible(bool(session.group_notes))
