"""The module tree panel: browse the model, edit fusion groups, keep modules in float.

Everything here is presentation.  Fusing, validating and suggesting groups,
and the skip list, are the engine's (``controller.session``); the panel sends
the user's selection there and redraws from the session's tree when the
controller says something changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QItemSelectionModel, QPoint, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.tree import ModuleNode
from qstudio.ui.controller import SessionController, describe_error
from qstudio.ui.tree_model import FILTER_ROLE, NAME_ROLE, Column, ModuleTreeModel

#: Columns sized to their contents automatically; the others start fitted but the user may drag them.
_AUTO_COLUMNS = (Column.PARAMS, Column.INT8, Column.WEIGHT_SQNR, Column.ACT_SQNR, Column.STATE)
#: The columns' order on screen once a run has results: what the run found comes right after the module's name
#: and type, so it is in view without scrolling; before a run those columns are empty and stay at the end.
_RESULT_ORDER = (
    Column.MODULE,
    Column.TYPE,
    Column.WEIGHT_SQNR,
    Column.ACT_SQNR,
    Column.STATE,
    Column.INT8,
    Column.GROUP,
    Column.PARAMS,
    Column.SHAPE,
)
_DEFAULT_DEPTH = 1  # QTreeView.expandToDepth(1): top level and the level below are open
_PROBLEM_STYLE = "color: #c62828;"


@dataclass
class _ViewState:
    expanded: set[str] = field(default_factory=set)
    selected: list[str] = field(default_factory=list)
    current: str = ""
    scroll: int = 0


class ModelTreePanel(QWidget):
    """Filter box, module tree, and the fusion buttons.

    Public API: :attr:`selectedNamesChanged` (qualified names of the selected
    rows, in model order), :meth:`select_module`, :meth:`selected_names`,
    :meth:`focus_filter`.
    """

    selectedNamesChanged = Signal(list)

    def __init__(self, controller: SessionController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._busy = controller.busy
        self._last_selection: list[str] = []
        self._unfiltered_state: _ViewState | None = None  # expansion before a filter was typed

        self.model = ModuleTreeModel(self._set_keep_float, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)  # a matching block shows its layers
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterRole(FILTER_ROLE)  # name (Module column) or type (Type column), nothing else
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setObjectName("treeFilter")
        self.filter_edit.setPlaceholderText("Filter modules…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip("Show modules whose name or type contains this text (Ctrl+F; Esc clears)")
        self.filter_edit.textChanged.connect(self._apply_filter)

        self.view = QTreeView(self)
        self.model.contentsChanged.connect(lambda: self.view.viewport().update())
        self.view.setObjectName("modelTree")
        self.view.setModel(self.proxy)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setAlternatingRowColors(True)
        self.view.setUniformRowHeights(True)
        self.view.setAllColumnsShowFocus(True)
        self.view.setIndentation(14)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionsMovable(False)
        for col in Column:
            mode = (
                QHeaderView.ResizeMode.ResizeToContents if col in _AUTO_COLUMNS else QHeaderView.ResizeMode.Interactive
            )
            header.setSectionResizeMode(col, mode)

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
        self.problems_label.setStyleSheet(_PROBLEM_STYLE)
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

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.problems_label)
        layout.addWidget(self.notes_label)

        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self)
        find.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        find.activated.connect(self.focus_filter)
        clear = QShortcut(QKeySequence(Qt.Key.Key_Escape), self.filter_edit)
        clear.setContext(Qt.ShortcutContext.WidgetShortcut)
        clear.activated.connect(self.filter_edit.clear)
        unfuse = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.view)
        unfuse.setContext(Qt.ShortcutContext.WidgetShortcut)
        unfuse.activated.connect(self.unfuse_selected)
        self._shortcuts = (find, clear, unfuse)

        controller.modelChanged.connect(self._on_model_changed)
        controller.groupsChanged.connect(self._on_groups_changed)
        controller.recipeChanged.connect(self._on_recipe_changed)
        controller.resultsChanged.connect(self._on_results_changed)
        controller.busyChanged.connect(self._on_busy_changed)

        if controller.session.tree is not None:
            self._on_model_changed()
        else:
            self._update_summary()
            self._update_buttons()

    # -- public API -------------------------------------------------------------------
    def selected_names(self) -> list[str]:
        """Qualified names of the selected rows, in model order."""
        rows = {self.proxy.mapToSource(i).data(NAME_ROLE) for i in self.view.selectionModel().selectedRows(0)}
        return [n for n in self.model.names() if n in rows]

    def select_module(self, name: str) -> bool:
        """Select the module ``name`` and scroll to it (expanding its parents; clears a filter hiding it)."""
        source = self.model.index_for(name)
        if not source.isValid():
            return False
        index = self.proxy.mapFromSource(source)
        if not index.isValid():
            self.filter_edit.clear()
            index = self.proxy.mapFromSource(source)
            if not index.isValid():
                return False
        parent = index.parent()
        while parent.isValid():
            self.view.expand(parent)
            parent = parent.parent()
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.view.selectionModel().setCurrentIndex(index, flags)
        self.view.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        return True

    def results_width(self) -> int:
        """The panel width that shows the names through the last result column (State) without scrolling."""
        header = self.view.header()
        shown = _RESULT_ORDER[: _RESULT_ORDER.index(Column.STATE) + 1]
        columns = sum(max(header.sectionSize(c), header.sectionSizeHint(c)) for c in shown)
        margins = self.layout().contentsMargins()
        bar = self.view.verticalScrollBar().sizeHint().width()
        return columns + bar + 2 * self.view.frameWidth() + margins.left() + margins.right() + 4

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

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
        if session.recipe.mode == "dynamic":
            text += ", unused in dynamic mode"
        self.summary_label.setText(text)
        self.notes_label.setText("\n".join(session.group_notes))
        self.notes_label.setVisible(bool(session.group_notes))

    # -- view state ------------------------------------------------------------------
    def _capture(self) -> _ViewState:
        state = _ViewState(selected=self.selected_names(), scroll=self.view.verticalScrollBar().value())
        for name in self.model.names():
            index = self.proxy.mapFromSource(self.model.index_for(name))
            if index.isValid() and self.view.isExpanded(index):
                state.expanded.add(name)
        current = self.view.currentIndex()
        state.current = current.data(NAME_ROLE) or "" if current.isValid() else ""
        return state

    def _restore(self, state: _ViewState) -> None:
        for name in state.expanded:
            index = self.proxy.mapFromSource(self.model.index_for(name))
            if index.isValid():
                self.view.expand(index)
        self._select_names(state.selected, state.current)
        self.view.verticalScrollBar().setValue(state.scroll)

    def _select_names(self, names: list[str], current: str = "") -> None:
        selection = self.view.selectionModel()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        selection.clearSelection()
        for name in names:
            index = self.proxy.mapFromSource(self.model.index_for(name))
            if index.isValid():
                selection.select(index, flags)
        if current:
            index = self.proxy.mapFromSource(self.model.index_for(current))
            if index.isValid():
                selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)

    def _set_root_keeping_state(self) -> None:
        state = self._capture()
        self.model.set_root(self.controller.session.tree)
        if self.filter_edit.text():
            self.view.expandAll()
            state.expanded.clear()
        self._restore(state)
        self._selection_maybe_changed()

    def _fit_columns(self) -> None:
        for col in Column:
            if col not in _AUTO_COLUMNS:
                self.view.resizeColumnToContents(col)

    def _order_columns(self) -> None:
        """Result columns next to the names once there are results (see ``_RESULT_ORDER``); model order before."""
        order = _RESULT_ORDER if self.controller.session.results else tuple(Column)
        header = self.view.header()
        for visual, col in enumerate(order):
            if header.visualIndex(col) != visual:
                header.moveSection(header.visualIndex(col), visual)

    # -- controller signals -------------------------------------------------------------
    def _on_model_changed(self) -> None:
        self._show_problems([])
        self._unfiltered_state = None
        self.model.set_root(self.controller.session.tree)
        if self.filter_edit.text():
            self.view.expandAll()
        else:
            self.view.expandToDepth(_DEFAULT_DEPTH)
        self._fit_columns()
        self._order_columns()
        self._update_summary()
        self._selection_maybe_changed()

    def _on_groups_changed(self) -> None:
        self._set_root_keeping_state()
        self.view.resizeColumnToContents(Column.GROUP)
        self._update_summary()

    def _on_recipe_changed(self) -> None:
        if self.controller.session.tree is not self.model.root:  # the mode changed: the tree was rebuilt
            self._set_root_keeping_state()
        else:
            self.model.refresh()
        self._update_summary()
        self._update_buttons()

    def _on_results_changed(self) -> None:
        if self.controller.session.tree is not self.model.root:
            self._set_root_keeping_state()
        else:
            self.model.refresh()
        self._order_columns()

    def _on_busy_changed(self, busy: bool) -> None:
        self._busy = busy
        self.model.set_editable(not busy)
        self._update_buttons()

    # -- view signals -------------------------------------------------------------------
    def _on_selection_changed(self, *_: object) -> None:
        self._selection_maybe_changed()

    def _selection_maybe_changed(self) -> None:
        self._update_buttons()
        names = self.selected_names()
        if names != self._last_selection:
            self._last_selection = names
            self.selectedNamesChanged.emit(names)

    def _apply_filter(self, text: str) -> None:
        if text and self._unfiltered_state is None:
            self._unfiltered_state = self._capture()
        self.proxy.setFilterFixedString(text)
        if text:
            self.view.expandAll()
        elif self._unfiltered_state is not None:
            state, self._unfiltered_state = self._unfiltered_state, None
            self.view.collapseAll()
            state.selected = self.selected_names() or state.selected
            state.current = ""
            self._restore(state)
            index = self.view.currentIndex()
            if index.isValid():
                self.view.scrollTo(index)
        self._selection_maybe_changed()
