"""The result charts: latency per batch size, per-layer SQNR and the live QAT curve.

Each chart is a :class:`pyqtgraph.PlotWidget` built once; showing another
result updates the existing items (``setOpts``/``setData``) instead of
rebuilding the plot, so switching between runs is cheap and flicker-free.
The charts only draw what a :class:`~qstudio.core.pipeline.RunResult` already
holds; they compute nothing about quantization.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QCursor, QFont, QFontMetrics
from PySide6.QtWidgets import QToolTip, QWidget

from qstudio.core.formatting import fmt_db as format_db  # the panel and tests use the UI's names
from qstudio.core.formatting import fmt_ms as format_ms
from qstudio.core.summary import LATENCY_SERIES, PALETTE, SQNR_BANDS, latency_series, sqnr_band

if TYPE_CHECKING:
    from qstudio.core.benchmark import LatencyStat
    from qstudio.core.compare import LayerError
    from qstudio.core.flows import EpochStats
    from qstudio.core.pipeline import RunResult
    from qstudio.core.progress import Progress

# -- look: the colours and SQNR bands are the engine's (qstudio.core.summary), the same as the report's --
TEXT = PALETTE["ink"]
MUTED = PALETTE["muted"]
GRID_ALPHA = 0.15
SERIES = tuple((label, PALETTE[key]) for key, label in LATENCY_SERIES)
RED, AMBER, GREEN = PALETTE["poor"], PALETTE["fair"], PALETTE["good"]
FLOAT_GREY = PALETTE["float"]
HIGHLIGHT = "#1f3fbf"  # the selected layer's outline: a selection, not a meaning
# the training curve's own lines (no meaning shared with the other charts)
QAT_LOSS, QAT_LOSS_EDGE, QAT_TRAIN, QAT_EVAL = "#4c78a8", "#1d3f66", "#2a9d8f", "#e07b39"
HEADROOM = 1.12  # y range above the tallest mark, room for the value labels


def sqnr_colour(db: float | None) -> str:
    """The colour of ``db``'s SQNR band (:func:`qstudio.core.summary.sqnr_band`)."""
    return sqnr_band(db)[1]


def _font(points: float, bold: bool = False) -> QFont:
    f = QFont()
    f.setPointSizeF(points)
    f.setBold(bold)
    return f


class _Chart(pg.PlotWidget):
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
            axis.setTickFont(_font(9))
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
        label = QFontMetrics(_font(9)).height() + 4
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
        metrics = QFontMetrics(_font(points, bold=True))
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
        legend = _RowLegend(colCount=columns, labelTextColor=TEXT, labelTextSize="9pt", frame=False, sampleType=_Sample)
        top = item.getAxis("top")
        item.layout.removeItem(top)  # the top axis is never shown; its row holds the legend
        top.hide()
        item.layout.addItem(legend, 1, 1, alignment=Qt.AlignmentFlag.AlignHCenter)
        item.legend = legend  # items added with a name appear in it
        self._row_legend = legend
        return legend

    def fit_legend(self) -> None:
        """Use as many legend columns as fit the widget's width (one row when wide, more rows when narrow)."""
        legend: _RowLegend | None = getattr(self, "_row_legend", None)
        if legend is None or not legend.items:
            return
        # one entry: sample (20), gap (4), text, gap to the next entry
        widths = [24 + label.item.boundingRect().width() + _RowLegend.SPACING for _s, label in legend.items]
        room = self._room() + _RowLegend.SPACING
        columns = len(widths)
        # the widest entry of each column decides its width (entries fill the rows left to right)
        while columns > 1 and sum(max(widths[c::columns]) for c in range(columns)) > room:
            columns -= 1
        legend.setColumnCount(columns)

    def resizeEvent(self, event: Any) -> None:
        self.fit_legend()
        if getattr(self, "_title", ""):
            self._show_title()
        for axis in getattr(self, "_axis_labels", {}):
            self._show_axis_label(axis)
        super().resizeEvent(event)


class _Sample(pg.ItemSample):
    """Legend sample: bars as a plain filled square (the stock one adds a line stub)."""

    def paint(self, p: Any, *args: Any) -> None:
        if isinstance(self.item, pg.BarGraphItem):
            p.setPen(pg.mkPen(self.item.opts["pen"]))
            p.setBrush(pg.mkBrush(self.item.opts["brush"]))
            p.drawRect(2, 3, 16, 16)
            return
        super().paint(p, *args)


class _RowLegend(pg.LegendItem):
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


# -- latency ----------------------------------------------------------------------
class LatencyChart(_Chart):
    """Median latency per batch size for FP32 eager, FP32 TorchScript and INT8 (whisker to p90)."""

    BAR_WIDTH = 0.26

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("latencyChart")
        self.set_axis_label("left", "latency (ms)", "ms")
        self.set_title("Median time per call — lower is better")  # the whisker (p90) is explained under the chart
        legend = self._legend(len(SERIES))
        self.bars: list[pg.BarGraphItem] = []
        self.whiskers: list[pg.ErrorBarItem] = []
        for label, colour in SERIES:
            bar = pg.BarGraphItem(
                x=np.zeros(0),
                height=np.zeros(0),
                width=self.BAR_WIDTH,
                brush=colour,
                pen=pg.mkPen("#555555", width=0.5),
                name=label,
            )
            whisker = pg.ErrorBarItem(
                x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), beam=0.08, pen=pg.mkPen("#333333", width=1.2)
            )
            self.addItem(bar)
            self.addItem(whisker)
            self.bars.append(bar)
            self.whiskers.append(whisker)
        for _sample, label in legend.items:  # "(frozen)" is said under the chart: the legend stays one row
            label.setText(label.text.replace(" (frozen)", ""))
        self._labels: list[pg.TextItem] = []
        self.batch_sizes: list[int] = []
        self.clear_result()

    @staticmethod
    def series_of(result: RunResult) -> list[list[LatencyStat]]:
        """The three series in legend order: FP32 eager, FP32 TorchScript (frozen), INT8."""
        return [list(series.stats) for series in latency_series(result)]

    def _label(self, i: int) -> pg.TextItem:
        while len(self._labels) <= i:
            t = pg.TextItem("", color=TEXT, anchor=(0.5, 1.0))
            t.setFont(_font(8.5))
            self.addItem(t, ignoreBounds=True)
            self._labels.append(t)
        return self._labels[i]

    def set_result(self, result: RunResult) -> None:
        series = self.series_of(result)
        sizes = sorted({s.batch_size for stats in series for s in stats})
        self.batch_sizes = sizes
        slot = {b: i for i, b in enumerate(sizes)}
        n_labels = 0
        top = 0.0
        for k, stats in enumerate(series):
            offset = (k - (len(SERIES) - 1) / 2) * (self.BAR_WIDTH + 0.02)
            stats = sorted(stats, key=lambda s: s.batch_size)
            x = np.array([slot[s.batch_size] + offset for s in stats], dtype=float)
            med = np.array([s.median_ms for s in stats], dtype=float)
            p90 = np.array([max(s.p90_ms, s.median_ms) for s in stats], dtype=float)
            self.bars[k].setOpts(x=x, height=med, width=self.BAR_WIDTH)
            self.whiskers[k].setData(x=x, y=med, top=p90 - med, bottom=np.zeros_like(med), beam=0.08)
            for xi, m, p in zip(x, med, p90, strict=True):
                label = self._label(n_labels)
                label.setText(format_ms(m))
                label.setPos(float(xi), float(p))
                label.setVisible(True)
                n_labels += 1
            if len(stats):
                top = max(top, float(p90.max()))
        for label in self._labels[n_labels:]:
            label.setVisible(False)
        self.getAxis("bottom").setTicks([[(i, f"batch {b}") for i, b in enumerate(sizes)]])
        self.setXRange(-0.6, len(sizes) - 0.4, padding=0)
        self.set_y_span(0.0, top or 1.0)

    def clear_result(self) -> None:
        self.batch_sizes = []
        for bar, whisker in zip(self.bars, self.whiskers, strict=True):
            # stays visible: a hidden item shows a crossed eye in the legend
            bar.setOpts(x=np.zeros(0), height=np.zeros(0))
            whisker.setData(x=np.zeros(0), y=np.zeros(0), top=np.zeros(0), bottom=np.zeros(0))
        for label in self._labels:
            label.setVisible(False)
        self.getAxis("bottom").setTicks([[]])

    def heights(self) -> list[list[float]]:
        """The drawn bar heights per series (for tests and the table)."""
        return [[float(h) for h in np.atleast_1d(bar.opts["height"])] for bar in self.bars]


# -- per-layer SQNR -------------------------------------------------------------------
class LayerErrorChart(_Chart):
    """Activation SQNR per quantized layer, worst first; weight SQNR as markers; float layers hatched at the right."""

    layerClicked = Signal(str)
    BAR_WIDTH = 0.72
    TITLE = "Activation SQNR per layer, worst first — higher is better"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("layerErrorChart")
        self.set_axis_label("left", "SQNR (dB)", "dB")
        self.set_axis_label("bottom", "layer rank (hover for the name, click to select)")
        self.set_title(self.TITLE)
        self.legend = legend = self._legend(5)
        pen = pg.mkPen("#555555", width=0.5)
        self.bars = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=self.BAR_WIDTH, brushes=[], pen=pen)
        self.float_bars = pg.BarGraphItem(
            x=np.zeros(0),
            height=np.zeros(0),
            width=self.BAR_WIDTH,
            brush=QBrush(QColor(FLOAT_GREY), Qt.BrushStyle.BDiagPattern),
            pen=pg.mkPen(FLOAT_GREY),
        )
        self.weights = pg.ScatterPlotItem(symbol="d", size=8, pen=pg.mkPen("#222222"), brush=pg.mkBrush("#ffffff"))
        self.outline = pg.BarGraphItem(
            x=np.zeros(0), height=np.zeros(0), width=self.BAR_WIDTH + 0.16, brush=None, pen=pg.mkPen(HIGHLIGHT, width=3)
        )
        self.outline.setVisible(False)
        for line_db in (band.low for band in SQNR_BANDS[1:]):  # where each band above the lowest begins
            line = pg.InfiniteLine(pos=line_db, angle=0, pen=pg.mkPen("#bbbbbb", width=1, style=Qt.PenStyle.DashLine))
            self.addItem(line, ignoreBounds=True)
        for item in (self.bars, self.float_bars, self.weights, self.outline):
            self.addItem(item)
        # legend samples: not drawn in the plot, only in the legend
        for band in SQNR_BANDS:
            text = html.escape(band.short)
            legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=band.colour, pen=pen), text)
        legend.addItem(self.weights, "weight SQNR")
        self._float_in_legend = False
        self._inf_labels: list[pg.TextItem] = []
        self.layers: list[LayerError] = []
        self.float_layers: list[str] = []
        self.names: list[str] = []  # bar order: quantized layers (worst first), then float layers
        self.values: list[float] = []  # drawn (capped) heights of the quantized bars
        self.selected: str | None = None
        self.scene().sigMouseClicked.connect(self._on_scene_click)
        self.scene().sigMouseMoved.connect(self._on_scene_move)
        self.clear_result()

    # -- data ------------------------------------------------------------------
    @staticmethod
    def bar_value(layer: LayerError) -> float | None:
        """The bar's SQNR: activation, else weight (what the engine ranks by)."""
        for v in (layer.activation_sqnr_db, layer.weight_sqnr_db):
            if v is not None and not math.isnan(v):
                return v
        return None

    def _inf_label(self, i: int) -> pg.TextItem:
        while len(self._inf_labels) <= i:
            t = pg.TextItem("∞", color=TEXT, anchor=(0.5, 1.0))
            t.setFont(_font(10, bold=True))
            self.addItem(t, ignoreBounds=True)
            self._inf_labels.append(t)
        return self._inf_labels[i]

    def set_result(self, result: RunResult) -> None:
        self.set_layers(result.layers, result.coverage.float_layers)

    def set_layers(self, layers: list[LayerError], float_layers: list[str] | None = None) -> None:
        self.layers = list(layers)
        self.float_layers = list(float_layers or [])
        self.names = [e.name for e in self.layers] + self.float_layers
        finite = [
            v for e in self.layers for v in (self.bar_value(e), e.weight_sqnr_db) if v is not None and math.isfinite(v)
        ]
        top_finite = max(finite) if finite else 30.0
        cap = max(top_finite, 0.0) + 10
        values, brushes, inf_at = [], [], []
        for i, e in enumerate(self.layers):
            v = self.bar_value(e)
            brushes.append(sqnr_colour(v))
            if v is None or v == -math.inf:
                values.append(0.0)
                inf_at.append((i, 0.0, "−∞" if v == -math.inf else "?"))
            elif v == math.inf:
                values.append(cap)
                inf_at.append((i, cap, "∞"))
            else:
                values.append(float(v))
        self.values = values
        n = len(self.layers)
        self.bars.setOpts(x=np.arange(n, dtype=float), height=np.array(values, dtype=float), brushes=brushes)
        xs, ys = [], []
        for i, e in enumerate(self.layers):
            w = e.weight_sqnr_db
            if w is None or math.isnan(w):
                continue
            xs.append(float(i))
            ys.append(cap if w == math.inf else max(float(w), 0.0))
        self.weights.setData(x=xs, y=ys)
        nf = len(self.float_layers)
        float_height = cap if n else 10.0
        self.float_bars.setOpts(
            x=np.arange(n, n + nf, dtype=float) + (0.5 if n else 0), height=np.full(nf, float_height)
        )
        if bool(nf) != self._float_in_legend:  # the entry is there only when some layer is float
            if nf:
                self.legend.addItem(self.float_bars, "float")  # hover a hatched bar: "runs in float (not quantized)"
            else:
                self.legend.removeItem(self.float_bars)
            self._float_in_legend = bool(nf)
            self.fit_legend()
        for k, (i, y, text) in enumerate(inf_at):
            label = self._inf_label(k)
            label.setText(text)
            label.setPos(float(i), y)
            label.setVisible(True)
        for label in self._inf_labels[len(inf_at) :]:
            label.setVisible(False)
        total = n + nf
        step = max(1, math.ceil(total / 20))
        major = [(self._x(i), str(i + 1)) for i in range(0, total, step)]
        minor = [(self._x(i), "") for i in range(total) if i % step]
        self.getAxis("bottom").setTicks([major, minor])
        top = max([*values, *ys, float_height if nf else 0.0, 1.0])
        self.setXRange(-0.7, self._x(total - 1) + 0.7 if total else 1, padding=0)
        self.set_y_span(min(0.0, *values) if values else 0.0, top)
        self.highlight(self.selected if self.selected in self.names else None)

    def clear_result(self) -> None:
        self.set_layers([], [])

    # -- geometry ---------------------------------------------------------------
    def _x(self, index: int) -> float:
        """Bar centre for position ``index`` in :attr:`names` (float layers sit after a small gap)."""
        return float(index) + (0.5 if index >= len(self.layers) and self.layers else 0.0)

    def bar_x(self, name: str) -> float:
        return self._x(self.names.index(name))

    def index_at(self, x: float) -> int | None:
        """The bar under data coordinate ``x``, or None between bars."""
        for i in range(len(self.names)):
            if abs(x - self._x(i)) <= self.BAR_WIDTH / 2 + 0.1:
                return i
        return None

    def name_at(self, x: float) -> str | None:
        i = self.index_at(x)
        return self.names[i] if i is not None else None

    def click_at(self, x: float) -> str | None:
        """What a mouse click at data x does: select that bar and emit :attr:`layerClicked`."""
        name = self.name_at(x)
        if name is not None:
            self.highlight(name)
            self.layerClicked.emit(name)
        return name

    def _view_point(self, scene_pos: QPointF) -> QPointF | None:
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        return vb.mapSceneToView(scene_pos)

    def _on_scene_click(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        p = self._view_point(event.scenePos())
        if p is not None:
            self.click_at(p.x())

    def describe(self, name: str) -> str:
        i = self.names.index(name)
        if i >= len(self.layers):
            return f"{name}\nruns in float (not quantized, no quantization error)"
        e = self.layers[i]
        return f"#{i + 1} {e.name} ({e.type})\nactivation SQNR {format_db(e.activation_sqnr_db)} dB · weight SQNR {format_db(e.weight_sqnr_db)} dB"

    def _on_scene_move(self, scene_pos: QPointF) -> None:
        p = self._view_point(scene_pos)
        name = self.name_at(p.x()) if p is not None else None
        if name is None:
            QToolTip.hideText()
            self.setCursor(Qt.CursorShape.ArrowCursor)
            return
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        QToolTip.showText(QCursor.pos(), self.describe(name), self)

    # -- selection --------------------------------------------------------------
    def highlight(self, name: str | None) -> None:
        """Outline ``name``'s bar and show its full name in the title (None clears)."""
        if name is None or name not in self.names:
            self.selected = None
            self.outline.setVisible(False)
            self.set_title(self.TITLE)
            return
        self.selected = name
        i = self.names.index(name)
        height = self.values[i] if i < len(self.layers) else float(np.atleast_1d(self.float_bars.opts["height"])[0])
        self.outline.setOpts(x=np.array([self._x(i)]), height=np.array([height]))
        self.outline.setVisible(True)
        if i < len(self.layers):
            e = self.layers[i]
            self.set_title(
                f"#{i + 1} <b>{e.name}</b> ({e.type}): activation {format_db(e.activation_sqnr_db)} dB, weight {format_db(e.weight_sqnr_db)} dB"
            )
        else:
            self.set_title(f"<b>{name}</b>: runs in float (not quantized)")

    def heights(self) -> list[float]:
        return [float(h) for h in np.atleast_1d(self.bars.opts["height"])]


# -- QAT ------------------------------------------------------------------------------
class QatCurve(_Chart):
    """Training loss per batch (left axis) and per-epoch accuracy (right axis, %).

    Live: feed :meth:`add_progress` the ``train`` steps of a QAT run.  For a
    finished run without live data, :meth:`set_history` plots the epoch table.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("qatCurve")
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=GRID_ALPHA)
        self.set_axis_label("left", "loss")
        self.set_title("Quantization-aware training")
        legend = self._legend(4)
        self.loss = item.plot([], [], pen=pg.mkPen(QAT_LOSS, width=1.5), name="loss per batch")
        self.epoch_loss = pg.ScatterPlotItem(
            symbol="s", size=8, pen=pg.mkPen(QAT_LOSS_EDGE), brush=pg.mkBrush(QAT_LOSS)
        )
        item.addItem(self.epoch_loss)
        legend.addItem(self.epoch_loss, "epoch loss")
        # accuracy on a second view box sharing x, drawn against the right axis
        self.acc_view = pg.ViewBox()
        self.acc_view.setMouseEnabled(x=False, y=False)
        item.showAxis("right")
        item.scene().addItem(self.acc_view)
        item.getAxis("right").linkToView(self.acc_view)
        self.acc_view.setXLink(item)
        item.getAxis("right").setLabel("accuracy (%)", color=TEXT, **{"font-size": "10pt"})
        self.train_acc = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(QAT_TRAIN, width=1, style=Qt.PenStyle.DashLine),
            symbol="o",
            symbolSize=8,
            symbolBrush=QAT_TRAIN,
        )
        self.eval_acc = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(QAT_EVAL, width=1, style=Qt.PenStyle.DashLine),
            symbol="t",
            symbolSize=9,
            symbolBrush=QAT_EVAL,
        )
        self.acc_view.addItem(self.train_acc)
        self.acc_view.addItem(self.eval_acc)
        legend.addItem(self.train_acc, "train accuracy")
        legend.addItem(self.eval_acc, "eval accuracy")
        item.getViewBox().sigResized.connect(self._sync_views)
        self.reset()

    def _sync_views(self) -> None:
        vb = self.getPlotItem().getViewBox()
        self.acc_view.setGeometry(vb.sceneBoundingRect())
        self.acc_view.linkedViewChanged(vb, self.acc_view.XAxis)

    def reset(self) -> None:
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.epochs: list[tuple[float, float, float, float | None]] = []  # x, epoch loss, train acc, eval acc
        self.x_unit = "training step"
        self._redraw()

    def add_progress(self, progress: Progress) -> bool:
        """Take one Progress step; True if it added a point (only ``train`` steps with metrics do)."""
        if progress.stage != "train":
            return False
        if progress.done == 0 and (self.steps or self.epochs):
            self.reset()
        metrics = progress.metrics or {}
        if self.x_unit != "training step":
            self.reset()
        if "epoch" in metrics:
            self.epochs.append(
                (
                    float(progress.done),
                    float(metrics.get("loss", math.nan)),
                    float(metrics.get("train_accuracy", math.nan)),
                    metrics.get("eval_accuracy"),
                )
            )
        elif "loss" in metrics:
            self.steps.append(float(progress.done))
            self.losses.append(float(metrics["loss"]))
        else:
            return False
        self._redraw()
        return True

    def set_history(self, history: list[EpochStats]) -> None:
        """Plot a finished run's per-epoch table (x = epoch)."""
        self.reset()
        self.x_unit = "epoch"
        self.epochs = [(float(h.epoch), h.loss, h.train_accuracy, h.eval_accuracy) for h in history]
        self._redraw()

    def snapshot(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "losses": list(self.losses),
            "epochs": list(self.epochs),
            "x_unit": self.x_unit,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.steps, self.losses = list(state["steps"]), list(state["losses"])
        self.epochs, self.x_unit = list(state["epochs"]), state["x_unit"]
        self._redraw()

    def _redraw(self) -> None:
        self.loss.setData(self.steps, self.losses)
        ex = [e[0] for e in self.epochs]
        self.epoch_loss.setData(x=ex, y=[e[1] for e in self.epochs])
        self.train_acc.setData(ex, [e[2] * 100 for e in self.epochs])
        evals = [(e[0], e[3] * 100) for e in self.epochs if e[3] is not None]
        self.eval_acc.setData([p[0] for p in evals], [p[1] for p in evals])
        accs = [e[2] * 100 for e in self.epochs if not math.isnan(e[2])] + [p[1] for p in evals]
        low = max(0.0, math.floor((min(accs) - 2) / 5) * 5) if accs else 0.0
        self.acc_view.setYRange(low, 100, padding=0.03)
        self.set_axis_label("bottom", self.x_unit)
        self.getPlotItem().enableAutoRange(axis="xy")
        if self.epochs and not self.steps:
            self.getAxis("bottom").setTicks([[(e[0], str(int(e[0]))) for e in self.epochs]])
        else:
            self.getAxis("bottom").setTicks(None)

    @property
    def points(self) -> int:
        return len(self.losses) + len(self.epochs)


# -- export ---------------------------------------------------------------------------
def render_png(widget: pg.PlotWidget, width: int | None = None) -> bytes:
    """``widget``'s plot as PNG bytes, rendered in memory; raises ExportError if Qt produced no image."""
    from qstudio.core.errors import ExportError

    exporter = pyqtgraph.exporters.ImageExporter(widget.getPlotItem())
    if width:
        exporter.parameters()["width"] = int(width)
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = image is not None and not image.isNull() and image.save(buffer, "PNG")
    buffer.close()
    png = bytes(data.data())
    if not ok or not png:
        name = widget.objectName() or "chart"
        raise ExportError(f"the chart {name} could not be rendered as a PNG", "resize the window and export again")
    return png


def export_png(widget: pg.PlotWidget, path: str | Path, width: int | None = None) -> Path:
    """Save ``widget``'s plot as a PNG (the window's "Export chart PNG" action).

    The image is rendered to memory and written atomically, so a full or
    read-only disk is an :class:`~qstudio.core.errors.ExportError` (never a
    0-byte file) and an earlier PNG at ``path`` is kept.
    """
    from qstudio.core.fileio import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    atomic_write_bytes(path, render_png(widget, width), "chart PNG")
    return path
