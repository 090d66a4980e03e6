"""The module tree panel: browse the model, edit fusion groups, keep modules in float.

Everything here is presentation.  Fusing, validating and suggesting groups,
and the skip list, are the engine's (``controller.session``); the panel sends
the user's selection there and redraws from the session's tree when the
controller says something changed.

The panel's parts live in :mod:`qstudio.ui.tree`: the filter box and the view
state it keeps (:mod:`~qstudio.ui.tree.tree_filter`) and the fusion editing,
its buttons, group summary and context menu
(:mod:`~qstudio.ui.tree.fusion_editing`).
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeView, QVBoxLayout, QWidget

from qstudio.ui.controller import SessionController
from qstudio.ui.tree.fusion_editing import FusionEditingMixin
from qstudio.ui.tree.tree_filter import TreeFilterMixin, ViewState
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


class ModelTreePanel(FusionEditingMixin, TreeFilterMixin, QWidget):
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
        self._unfiltered_state: ViewState | None = None  # expansion before a filter was typed

        self.model = ModuleTreeModel(self._set_keep_float, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)  # a matching block shows its layers
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterRole(FILTER_ROLE)  # name (Module column) or type (Type column), nothing else
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self._build_filter()

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

        buttons = self._build_fusion_bar()

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

    # -- columns ----------------------------------------------------------------------
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
