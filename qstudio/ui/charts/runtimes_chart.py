"""The runtimes chart: every runtime and precision measured in the run, one horizontal bar each, at batch 1.

Bars are coloured by precision (FP32, BF16, INT8: the engine's
:data:`~qstudio.core.latency_figures.PRECISION_COLOURS`); the value at the end
of each bar is its median and its speedup over the fastest true-FP32 runtime,
which is marked "baseline"; the export target is marked "export".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from qstudio.core.formatting import fmt_ms, fmt_ratio
from qstudio.core.latency_figures import PRECISION_COLOURS, runtime_rows
from qstudio.ui.charts.base_chart import BaseChart
from qstudio.ui.charts.chart_style import TEXT, chart_font

if TYPE_CHECKING:
    from qstudio.core.latency_figures import RuntimeRow
    from qstudio.core.pipeline import RunResult


class RuntimesChart(BaseChart):
    """Median latency at the smallest batch size of every runtime x precision, fastest at the top."""

    BAR_HEIGHT = 0.62

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runtimesChart")
        self.set_axis_label("bottom", "latency (ms)", "ms")
        self.set_title("Batch 1, ms — shorter is faster")
        item = self.getPlotItem()
        item.showGrid(x=True, y=False, alpha=0.15)
        legend = self._legend(len(PRECISION_COLOURS))
        self.bars: dict[str, pg.BarGraphItem] = {}
        for precision, colour in PRECISION_COLOURS.items():
            bar = pg.BarGraphItem(
                x0=np.zeros(0),
                y=np.zeros(0),
                height=self.BAR_HEIGHT,
                width=np.zeros(0),
                brush=colour,
                pen=pg.mkPen("#555555", width=0.5),
                name=precision.upper(),
            )
            self.addItem(bar)
            self.bars[precision] = bar
        del legend
        self._labels: list[pg.TextItem] = []
        self.rows: tuple[RuntimeRow, ...] = ()
        self.clear_result()

    def _label(self, i: int) -> pg.TextItem:
        while len(self._labels) <= i:
            t = pg.TextItem("", color=TEXT, anchor=(0.0, 0.5))
            t.setFont(chart_font(8.5))
            self.addItem(t, ignoreBounds=True)
            self._labels.append(t)
        return self._labels[i]

    def set_result(self, result: RunResult) -> None:
        rows = sorted(
            (r for r in runtime_rows(result) if r.figure.latency_ms), key=lambda r: -(r.figure.latency_ms or 0)
        )
        self.rows = tuple(rows)
        for precision, bar in self.bars.items():
            mine = [(i, r) for i, r in enumerate(rows) if r.figure.precision == precision]
            bar.setOpts(
                x0=np.zeros(len(mine)),
                y=np.array([i for i, _ in mine], dtype=float),
                width=np.array([r.figure.latency_ms for _, r in mine], dtype=float),
                height=self.BAR_HEIGHT,
            )
        top = max((r.figure.latency_ms or 0.0 for r in rows), default=1.0)
        for i, r in enumerate(rows):
            marks = [m for m, on in (("baseline", r.baseline), ("export", r.target)) if on]
            vs = "" if r.baseline or r.vs_fp32_best is None else f"  {fmt_ratio(r.vs_fp32_best)}"
            label = self._label(i)
            label.setText(f"{fmt_ms(r.figure.latency_ms)} ms{vs}{'  ← ' + ', '.join(marks) if marks else ''}")
            label.setPos(float(r.figure.latency_ms or 0.0), float(i))
            label.setVisible(True)
        for label in self._labels[len(rows) :]:
            label.setVisible(False)
        self.getAxis("left").setTicks([[(i, r.figure.label) for i, r in enumerate(rows)]])
        self.setYRange(-0.6, max(len(rows), 1) - 0.4, padding=0)
        self.setXRange(0.0, top * 1.55, padding=0)  # room right of the longest bar for its label

    def clear_result(self) -> None:
        self.rows = ()
        for bar in self.bars.values():
            bar.setOpts(x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0))
        for label in self._labels:
            label.setVisible(False)
        self.getAxis("left").setTicks([[]])

    def widths(self) -> dict[str, float]:
        """The drawn bar lengths by row label (for tests)."""
        found: dict[str, float] = {}
        for precision, bar in self.bars.items():
            ys = np.atleast_1d(bar.opts["y"])
            ws = np.atleast_1d(bar.opts["width"])
            for y, w in zip(ys, ws, strict=True):
                found[self.rows[int(y)].figure.label] = float(w)
            del precision
        return found
