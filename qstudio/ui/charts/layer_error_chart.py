"""The per-layer error chart: activation SQNR per quantized layer, worst first, coloured by SQNR band.

Weight SQNR is a marker on each bar, layers kept in float are hatched bars at
the right; hovering names a bar, clicking one selects that layer (in the module
tree too, through :attr:`LayerErrorChart.layerClicked`).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QCursor
from PySide6.QtWidgets import QToolTip, QWidget

from qstudio.core.formatting import fmt_db as format_db
from qstudio.core.summary import SQNR_BANDS
from qstudio.ui.charts.base_chart import BaseChart
from qstudio.ui.charts.chart_style import FLOAT_GREY, HIGHLIGHT, TEXT, chart_font, sqnr_colour

if TYPE_CHECKING:
    from qstudio.core.compare import LayerError
    from qstudio.core.pipeline import RunResult


class LayerErrorChart(BaseChart):
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
            t.setFont(chart_font(10, bold=True))
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
