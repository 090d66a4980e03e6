"""The latency chart: median time per call for each batch size, FP32 eager, FP32 TorchScript and INT8.

Bars are the medians, whiskers reach the p90; the value above each bar is the
median.  The series and their colours are the engine's
(:func:`qstudio.core.summary.latency_series`), the same as the report's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from qstudio.core.formatting import fmt_ms as format_ms
from qstudio.core.summary import latency_series
from qstudio.ui.charts.base_chart import BaseChart
from qstudio.ui.charts.chart_style import SERIES, TEXT, chart_font

if TYPE_CHECKING:
    from qstudio.core.benchmark import LatencyStat
    from qstudio.core.pipeline import RunResult


class LatencyChart(BaseChart):
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
            t.setFont(chart_font(8.5))
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
