"""The module tree's filter box and view state: expansion, selection and scroll kept across rebuilds and filtering.

:class:`TreeFilterMixin` is part of :class:`qstudio.ui.tree_panel.ModelTreePanel`.
Typing a filter expands every match; clearing it brings back the expansion
from before the filter, with the selection made meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QLineEdit

from qstudio.ui.tree_model import NAME_ROLE


@dataclass
class ViewState:
    expanded: set[str] = field(default_factory=set)
    selected: list[str] = field(default_factory=list)
    current: str = ""
    scroll: int = 0


class TreeFilterMixin:
    """The filter box (``filter_edit``) and the tree's view state."""

    def _build_filter(self) -> None:
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setObjectName("treeFilter")
        self.filter_edit.setPlaceholderText("Filter modules…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip("Show modules whose name or type contains this text (Ctrl+F; Esc clears)")
        self.filter_edit.textChanged.connect(self._apply_filter)

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

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

    # -- view state ------------------------------------------------------------------
    def _capture(self) -> ViewState:
        state = ViewState(selected=self.selected_names(), scroll=self.view.verticalScrollBar().value())
        for name in self.model.names():
            index = self.proxy.mapFromSource(self.model.index_for(name))
            if index.isValid() and self.view.isExpanded(index):
                state.expanded.add(name)
        current = self.view.currentIndex()
        state.current = current.data(NAME_ROLE) or "" if current.isValid() else ""
        return state

    def _restore(self, state: ViewState) -> None:
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
