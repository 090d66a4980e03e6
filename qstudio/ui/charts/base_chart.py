"""What every chart shares: a white, static plot with elided title and axis labels and a one-row legend.

:class:`BaseChart` is the :class:`pyqtgraph.PlotWidget` the latency, per-layer
SQNR and QAT charts build on; :class:`RowLegend` and :class:`BarSample` are
its legend, placed between the title and the plot so it never covers data.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QWidget

from qstudio.ui.charts.chart_style import GRID_ALPHA, HEADROOM, TEXT, chart_font


class BaseChart(pg.PlotWidget):
    """A white, static (no pan/zoom) plot with readable axes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setMouseEnabled(x=False, y=False)
        item.showGrid(x=False, y=True, alpha=GRID_ALPHA)
        for name in ("left", "bottom", "right"):
            axis = item.getAxis(name)
            axis.enableAutoSIPrefix(False)
            axis.setPen(pg.mkPen("#888888"))
            axis.setTextPen(pg.mkPen(TEXT))
            axis.setTickFont(chart_font(9))
        self.setMinimumHeight(150)  # title, legend row, axis and still a plot area tall enough for the bars
        self._title = ""
        self._axis_labels: dict[str, tuple[str, str]] = {}
        self._y_span: tuple[float, float] | None = None
        item.getViewBox().sigResized.connect(self._on_plot_resized)

    def _on_plot_resized(self) -> None:
        """The plot area changed (the window, the splitter, or the axes' widths): refit the legend and the labels."""
        self.fit_legend()
        self._apply_y_range()

    def set_y_span(self, low: float, top: float) -> None:
        """Show ``low`` to ``top`` plus headroom for the value labels above the marks (see :meth:`_apply_y_range`)."""
        self._y_span = (low, top)
        self._apply_y_range()

    def _apply_y_range(self) -> None:
        """HEADROOM, or more in a short plot: a label is so many pixels tall, whatever the plot's height."""
        if self._y_span is None:
            return
        low, top = self._y_span
        pixels = self.getPlotItem().getViewBox().height()
        label = QFontMetrics(chart_font(9)).height() + 4
        factor = max(HEADROOM, pixels / (pixels - label)) if pixels > 2 * label else HEADROOM
        self.setYRange(low, low + (top - low) * factor, padding=0)

    # Title and axis labels are elided (…) to the room the chart has: pyqtgraph would otherwise widen the
    # plot's column to the whole text, pushing the last bars past the widget's edge.
    def set_axis_label(self, axis: str, text: str, short: str = "") -> None:
        """``short`` (e.g. just the unit) is shown instead of an elided ``text`` when the axis is too short for it."""
        self._axis_labels[axis] = (text, short)
        self._show_axis_label(axis)

    def set_title(self, text: str) -> None:
        """``text`` may hold simple HTML (``<b>``); when it must be elided it is shown plain."""
        self._title = text
        self._show_title()

    @property
    def title_text(self) -> str:
        """The full title, as set (what the chart shows may be elided)."""
        return self._title

    def _room(self, vertical: bool = False) -> int:
        """Pixels the plot area has across (or, for a vertical axis label, down), roughly, before layout."""
        if vertical:  # the view box's height once laid out; before, the widget's less title, legend and axis
            box = self.getPlotItem().getViewBox().height()
            return int(box) if box > 0 else self.height() - 110
        item = self.getPlotItem()
        axes = sum(item.getAxis(name).width() for name in ("left", "right") if item.getAxis(name).isVisible())
        return self.width() - int(axes) - 16

    @staticmethod
    def _fit(text: str, points: float, room: int) -> str:
        """``text`` (simple HTML) as is when it fits ``room`` pixels in bold, else elided plain text."""
        plain = html.unescape(re.sub(r"<[^>]+>", "", text))
        metrics = QFontMetrics(chart_font(points, bold=True))
        if room < 60 or metrics.horizontalAdvance(plain) <= room:  # not laid out yet: nothing to fit
            return text
        return html.escape(metrics.elidedText(plain, Qt.TextElideMode.ElideRight, room))

    def _show_title(self) -> None:
        self.getPlotItem().setTitle(self._fit(self._title, 10, self._room()), color=TEXT, size="10pt")

    COMPACT_HEIGHT = 240  # below this the bottom axis shows its ticks only: its label's row goes to the bars

    def _show_axis_label(self, axis: str) -> None:
        text, short = self._axis_labels[axis]
        if axis == "bottom" and 0 < self.height() < self.COMPACT_HEIGHT:
            self.getPlotItem().getAxis("bottom").showLabel(False)
            return
        room = self._room(vertical=axis in ("left", "right"))
        shown = self._fit(text, 10, room)
        if short and shown != text:
            shown = self._fit(short, 10, room)
        self.getPlotItem().setLabel(axis, shown, color=TEXT, **{"font-size": "10pt"})

    def _legend(self, columns: int) -> pg.LegendItem:
        """A one-row legend between the title and the plot, so it never covers data."""
        item = self.getPlotItem()
        legend = RowLegend(
            colCount=columns, labelTextColor=TEXT, labelTextSize="9pt", frame=False, sampleType=BarSample
        )
        top = item.getAxis("top")
        item.layout.removeItem(top)  # the top axis is never shown; its row holds the legend
        top.hide()
        item.layout.addItem(legend, 1, 1, alignment=Qt.AlignmentFlag.AlignHCenter)
        item.legend = legend  # items added with a name appear in it
        self._row_legend = legend
        return legend

    def fit_legend(self) -> None:
        """Use as many legend columns as fit the widget's width (one row when wide, more rows when narrow)."""
        legend: RowLegend | None = getattr(self, "_row_legend", None)
        if legend is None or not legend.items:
            return
        # one entry: sample (20), gap (4), text, gap to the next entry
        widths = [24 + label.item.boundingRect().width() + RowLegend.SPACING for _s, label in legend.items]
        room = self._room() + RowLegend.SPACING
        columns = len(widths)
        # the widest entry of each column decides its width (entries fill the rows left to right)
        while columns > 1 and sum(max(widths[c::columns]) for c in range(columns)) > room:
            columns -= 1
        legend.setColumnCount(columns)

    def _view_point(self, scene_pos: Any) -> Any:
        """The data point under a scene position (a mouse event's), or None outside the plot area."""
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        return vb.mapSceneToView(scene_pos)

    def resizeEvent(self, event: Any) -> None:
        self.fit_legend()
        if getattr(self, "_title", ""):
            self._show_title()
        for axis in getattr(self, "_axis_labels", {}):
            self._show_axis_label(axis)
        super().resizeEvent(event)


class BarSample(pg.ItemSample):
    """Legend sample: bars as a plain filled square (the stock one adds a line stub)."""

    def paint(self, p: Any, *args: Any) -> None:
        if isinstance(self.item, pg.BarGraphItem):
            p.setPen(pg.mkPen(self.item.opts["pen"]))
            p.setBrush(pg.mkBrush(self.item.opts["brush"]))
            p.drawRect(2, 3, 16, 16)
            return
        super().paint(p, *args)


class RowLegend(pg.LegendItem):
    """A legend placed by its parent's layout instead of by an offset in the view box.

    Entries fill the rows left to right, ``columnCount`` to a row; pyqtgraph's
    own re-layout after a change of column count leaves holes and extra rows.
    """

    SPACING = 10  # between one entry's label and the next entry's sample

    def updateSize(self) -> None:
        self.updateGeometry()

    def setColumnCount(self, columnCount: int) -> None:  # pyqtgraph's names
        self.columnCount = max(1, columnCount)
        self._relayout()

    def addItem(self, item: Any, name: str) -> None:
        super().addItem(item, name)
        self._relayout()

    def removeItem(self, item: Any) -> None:
        super().removeItem(item)
        self._relayout()

    def _relayout(self) -> None:
        layout = self.layout
        while layout.count():
            layout.removeAt(layout.count() - 1)
        columns = self.columnCount
        for i, (sample, label) in enumerate(self.items):
            row, col = divmod(i, columns)
            layout.addItem(sample, row, 2 * col, alignment=Qt.AlignmentFlag.AlignVCenter)
            layout.addItem(label, row, 2 * col + 1)
        for col in range(layout.columnCount()):  # a gap before every entry but the first
            layout.setColumnSpacing(col, self.SPACING if col % 2 else 4)
        self.rowCount = math.ceil(len(self.items) / columns) if self.items else 0
        self.updateSize()
