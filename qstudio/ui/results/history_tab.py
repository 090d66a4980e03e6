"""The History tab: one row per run of the session, and two selected runs side by side.

The rows and the comparison are the runs' :class:`~qstudio.core.summary.Summary`
figures, the same texts the cards and the report use.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QVBoxLayout, QWidget

from qstudio.core.formatting import fmt_ms
from qstudio.core.summary import summarize
from qstudio.ui.results.widgets import item, make_table

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult

HISTORY_COLUMNS = ["#", "mode", "backend", "accuracy / agreement", "INT8 ms", "speedup", "INT8 size", "skipped"]
_ROW_FIGURES = ("mode", "backend", "quality", None, "speedup", "int8_size", "skipped")  # None: INT8 ms, a bare number
COMPARED = (
    "mode",
    "backend",
    "int8_accuracy",
    "agreement",
    "output_sqnr",
    "int8_latency",
    "speedup",
    "speedup_vs_script",
    "int8_size",
    "coverage",
    "kept_float",
    "random_data",
)
HINT = "Select a run to show its charts; select two (Ctrl+click) to compare them side by side."


def history_row(index: int, result: RunResult) -> list[str]:
    """One History-table row: #, mode, backend, accuracy/agreement, INT8 ms, speedup, size, skipped."""
    s = summarize(result)
    ms = result.int8.latency_ms
    return [str(index + 1), *(s.figure(key) if key else fmt_ms(ms) for key in _ROW_FIGURES)]


def comparison_html(a: RunResult, ia: int, b: RunResult, ib: int) -> str:
    """A side-by-side table of two runs."""
    sa, sb = summarize(a), summarize(b)
    labels = {f.key: f.label for f in sa.figures}
    cells = "".join(
        f"<tr><td style='color:#555;padding-right:12px'>{html.escape(labels[key])}</td>"
        f"<td style='padding-right:16px'>{html.escape(sa.figure(key))}</td><td>{html.escape(sb.figure(key))}</td></tr>"
        for key in COMPARED
    )
    head = f"<tr><th></th><th align='left'>run #{ia + 1}</th><th align='left'>run #{ib + 1}</th></tr>"
    return f"<table cellspacing='0' cellpadding='2'>{head}{cells}</table>"


class HistoryTab(QWidget):
    runSelected = Signal(int)  # the user selected rows: show this run (the current row, else the last selected)

    def __init__(self, results: Callable[[], list[RunResult]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._results = results
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        self.table = make_table(HISTORY_COLUMNS)
        self.table.setObjectName("historyTable")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._on_selection)
        v.addWidget(self.table, 1)
        self.comparison = QLabel(HINT)
        self.comparison.setObjectName("historyComparison")
        self.comparison.setWordWrap(True)
        self.comparison.setTextFormat(Qt.TextFormat.RichText)
        self.comparison.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.comparison.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        v.addWidget(self.comparison, 1)

    def fill(self) -> None:
        t = self.table
        t.blockSignals(True)
        results = self._results()
        t.setRowCount(len(results))
        for r, result in enumerate(results):
            notices = summarize(result).notices
            for c, text in enumerate(history_row(r, result)):
                cell = item(text)
                if c not in (1, 2):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if notices:
                    cell.setToolTip("; ".join(n.text for n in notices))
                t.setItem(r, c, cell)
        t.blockSignals(False)

    def select_rows(self, rows: list[int]) -> None:
        t = self.table
        t.blockSignals(True)
        t.clearSelection()
        model, sel = t.model(), t.selectionModel()
        for r in rows:
            sel.select(model.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        t.blockSignals(False)
        self.show_comparison(rows)

    def selected_rows(self) -> list[int]:
        return sorted(i.row() for i in self.table.selectionModel().selectedRows())

    def _on_selection(self) -> None:
        rows = self.selected_rows()
        if rows:
            current = self.table.currentRow()
            self.runSelected.emit(current if current in rows else rows[-1])
        self.show_comparison(rows)

    def show_comparison(self, rows: list[int]) -> None:
        results = self._results()
        if len(rows) == 2:
            a, b = rows
            self.comparison.setText(comparison_html(results[a], a, results[b], b))
        elif len(rows) > 2:
            self.comparison.setText("Select exactly two runs to compare them side by side.")
        else:
            self.comparison.setText(HINT)
