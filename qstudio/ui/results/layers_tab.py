"""The Per-layer error tab: SQNR per layer (chart and sortable table) and "keep the worst k in float"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from qstudio.core import compare
from qstudio.core.formatting import fmt_db
from qstudio.core.summary import sqnr_band
from qstudio.ui.charts import LayerErrorChart
from qstudio.ui.results.widgets import ElideLabel, SortItem, header_tips, item, make_table, sort_key

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult

COLUMNS = ["#", "layer", "type", "weight dB", "act. dB"]  # SQNR; short headers leave room for names
TIPS = ["Rank, worst first", "Layer", "Module type", "Weight SQNR (dB)", "Activation SQNR (dB)"]


def _sqnr_item(db: float | None) -> SortItem:
    """An SQNR cell: the figure in its band's colour (the chart's, the report's), sorted by value."""
    cell = SortItem(fmt_db(db), sort_key(db))
    band, colour = sqnr_band(db)
    cell.setForeground(QBrush(QColor(colour)))
    cell.setToolTip(f"{fmt_db(db)} dB: {band}")
    return cell


class LayersTab(QWidget):
    layerClicked = Signal(str)  # a bar or a row was clicked
    keepWorstInFloat = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: RunResult | None = None
        self.busy = False
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        split = QSplitter(Qt.Orientation.Vertical)
        self.chart = LayerErrorChart()
        self.chart.layerClicked.connect(self._on_chart_layer)
        split.addWidget(self.chart)
        self.table = make_table(COLUMNS)
        self.table.setObjectName("layerTable")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header_tips(self.table, TIPS)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long names keep their ends; the tooltip has all
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the names get what the others leave
        header.setMinimumSectionSize(header.fontMetrics().horizontalAdvance("layer") + 16)  # its header stays whole
        self.table.setMinimumHeight(56)  # the header and a row: the chart above keeps its height in a short window
        self.table.itemSelectionChanged.connect(self._on_row)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        v.addWidget(split, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("k"))
        self.skip_spin = QSpinBox()
        self.skip_spin.setObjectName("skipWorstSpin")
        self.skip_spin.setRange(1, 1)
        self.skip_spin.setToolTip("How many of the worst layers (lowest SQNR) to keep in float")
        row.addWidget(self.skip_spin)
        self.skip_button = QPushButton("Keep worst k in float")
        self.skip_button.setObjectName("skipWorstButton")
        self.skip_button.setToolTip("Add the k worst layers to the skip list and run again")
        self.skip_button.clicked.connect(self._on_keep_worst)
        row.addWidget(self.skip_button)
        self.skip_preview = ElideLabel()
        self.skip_preview.setStyleSheet("color: #555;")
        row.addWidget(self.skip_preview, 1)
        self.skip_spin.valueChanged.connect(self._update_skip_preview)
        v.addLayout(row)

    # -- showing a result ----------------------------------------------------------------------
    def show_result(self, result: RunResult) -> None:
        self.result = result
        self.chart.set_result(result)
        t = self.table
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(len(result.layers))
        for r, e in enumerate(result.layers):
            name = item(e.name)
            name.setData(Qt.ItemDataRole.UserRole, e.name)
            name.setToolTip(e.name)
            t.setItem(r, 0, SortItem(str(r + 1), r))
            t.setItem(r, 1, name)
            t.setItem(r, 2, item(e.type))
            t.setItem(r, 3, _sqnr_item(e.weight_sqnr_db))
            t.setItem(r, 4, _sqnr_item(e.activation_sqnr_db))
        t.setSortingEnabled(True)
        t.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        t.blockSignals(False)
        self.select_row(self.chart.selected)
        self.update_skip_controls()

    def highlight(self, name: str | None) -> None:
        """Outline ``name`` in the chart and select its table row (no signal emitted)."""
        self.chart.highlight(name)
        self.select_row(name)

    # -- interaction -----------------------------------------------------------------------------
    def _on_chart_layer(self, name: str) -> None:
        self.select_row(name)
        self.layerClicked.emit(name)

    def _on_row(self) -> None:
        rows = self.table.selectionModel().selectedRows(1)
        if not rows:
            return
        name = rows[0].data(Qt.ItemDataRole.UserRole)
        self.chart.highlight(name)
        self.layerClicked.emit(name)

    def select_row(self, name: str | None) -> None:
        t = self.table
        t.blockSignals(True)
        t.clearSelection()
        for r in range(t.rowCount()):
            cell = t.item(r, 1)
            if name is not None and cell is not None and cell.data(Qt.ItemDataRole.UserRole) == name:
                t.selectRow(r)
                t.scrollToItem(cell)
                break
        t.blockSignals(False)

    def worst_layers(self, k: int | None = None) -> list[str]:
        """The k (default: the spin box's value) worst layers of the shown result."""
        if self.result is None:
            return []
        return compare.worst_layers(self.result.layers, self.skip_spin.value() if k is None else k)

    def _on_keep_worst(self) -> None:
        names = self.worst_layers()
        if names:
            self.keepWorstInFloat.emit(names)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.update_skip_controls()

    def update_skip_controls(self) -> None:
        n = len(self.result.layers) if self.result is not None else 0
        self.skip_spin.setRange(1, max(1, n))
        self.skip_spin.setEnabled(n > 0)
        self.skip_button.setEnabled(n > 0 and not self.busy)
        self.skip_button.setToolTip(
            "Wait for the current run to finish"
            if self.busy
            else "Add the k worst layers to the skip list and run again"
        )
        self._update_skip_preview()

    def _update_skip_preview(self) -> None:
        names = self.worst_layers()
        text = ", ".join(names[:4]) + (f" … (+{len(names) - 4})" if len(names) > 4 else "")
        self.skip_preview.setText(text)
        self.skip_preview.setToolTip("\n".join(names))
