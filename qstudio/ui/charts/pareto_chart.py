"""The search's Pareto chart: every finished trial as latency (x) against accuracy or agreement (y).

Trials within the accuracy budget are drawn in the palette's "good" colour,
the others muted; the plain run (the settings as given) is a square; the
frontier (no other trial both faster and better) is a line through its
points; the budget is a dashed line at the lowest quality it allows (FP32's
quality a dotted one), and the best trial is ringed; the plain run and the best are
named beside their points.  The selected trial has a dotted blue ring.  Clicking a point selects that trial
(:attr:`ParetoChart.trialClicked`); hovering names it.  The chart draws what
a :class:`~qstudio.core.search.SearchResult` holds and computes nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QToolTip, QWidget

from qstudio.core.formatting import fmt_ms, fmt_ratio
from qstudio.ui.charts.base_chart import BaseChart
from qstudio.ui.charts.chart_style import GREEN, HIGHLIGHT, TEXT, chart_font

if TYPE_CHECKING:
    from qstudio.core.search import SearchResult, SearchTrial

FRONTIER = "#1d3f66"  # the frontier line and the best trial's ring: dark, so the point colours stay readable
OVER = "#b8bec6"  # a trial over budget: muted, a lighter shade of the palette's grey
BUDGET = "#d63a3a"  # the budget line: the palette's "poor", what lies below it fails the budget


def quality_pct(trial: SearchTrial) -> float:
    return 100.0 * float(trial.quality or 0.0)


def plotted(trial: SearchTrial) -> bool:
    """A trial is a point when it finished with a quality and a latency (pruned and failed trials have no time)."""
    return (
        trial.state == "complete"
        and trial.quality is not None
        and trial.latency_ms is not None
        and math.isfinite(trial.latency_ms)
    )


class ParetoChart(BaseChart):
    """Latency against quality for every finished trial; the frontier, the budget, the best and the plain run."""

    trialClicked = Signal(int)  # the trial's index in SearchResult.trials
    PICK_PX = 12  # a click this close to a point (in pixels) selects it
    MARGIN_PX = 14  # the plot's room around the outermost points (the rings are 13 px in radius)
    LABEL_GAP = 16  # pixels from a point's centre to its "plain run" / "best" label: clear of the rings

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("paretoChart")
        self.setMinimumHeight(100)  # the Search tab is no taller at its least than the other result tabs
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.15)
        self.set_axis_label("bottom", "INT8 latency (ms)", "ms")
        self.set_axis_label("left", "accuracy (%)", "%")
        # no title row: the plot keeps the height (the tab is short on a small screen); the selected trial is ringed
        # and described in the Search tab, the plain run and the best are labelled beside their points
        self.setToolTip("Each finished trial: up (more accurate) and to the left (faster) is better")
        legend = self._legend(3)
        self.frontier = pg.PlotDataItem(pen=pg.mkPen(FRONTIER, width=1.5))
        self.budget = pg.InfiniteLine(
            pos=0.0, angle=0, pen=pg.mkPen(BUDGET, width=1.2, style=Qt.PenStyle.DashLine), movable=False
        )
        self.budget.setVisible(False)
        fp32_pen = pg.mkPen("#888888", width=1.2, style=Qt.PenStyle.DotLine)
        self.fp32 = pg.InfiniteLine(pos=0.0, angle=0, pen=fp32_pen, movable=False)
        self.fp32.setVisible(False)
        self.within = pg.ScatterPlotItem(size=10, pen=pg.mkPen("#1e6b2f", width=1), brush=pg.mkBrush(GREEN))
        self.over = pg.ScatterPlotItem(size=9, pen=pg.mkPen("#7d848c", width=1), brush=pg.mkBrush(OVER))
        self.best_ring = pg.ScatterPlotItem(
            size=20, symbol="o", pen=pg.mkPen(FRONTIER, width=2.2), brush=pg.mkBrush(None)
        )
        self.selected_ring = pg.ScatterPlotItem(
            size=26, symbol="o", pen=pg.mkPen(HIGHLIGHT, width=2, style=Qt.PenStyle.DotLine), brush=pg.mkBrush(None)
        )
        for line in (self.budget, self.fp32):
            self.addItem(line, ignoreBounds=True)
        for it in (self.frontier, self.over, self.within, self.best_ring, self.selected_ring):
            self.addItem(it)
        # the two lines are named at their right ends, on paper so that points behind them do not blur the text
        paper = pg.mkBrush(255, 255, 255, 210)
        self._budget_label = pg.TextItem("", color=BUDGET, anchor=(1.0, 1.0), fill=paper)
        self._fp32_label = pg.TextItem("FP32", color="#666666", anchor=(1.0, 1.0), fill=paper)
        for label in (self._budget_label, self._fp32_label):
            label.setFont(chart_font(8.5))
            self.addItem(label, ignoreBounds=True)
        # the plain run (a square) and the best (ringed) are named beside their points, so the legend keeps one row
        self.plain_label = pg.TextItem("", color=TEXT, anchor=(0.0, 0.5), fill=paper)
        self.best_label = pg.TextItem("", color=FRONTIER, anchor=(0.0, 0.5), fill=paper)
        for label in (self.plain_label, self.best_label):
            label.setFont(chart_font(8.5))
            self.addItem(label, ignoreBounds=True)
        legend.addItem(self.within, "within budget")
        legend.addItem(self.over, "over")  # short: the legend keeps one row on a 1024 px screen
        legend.addItem(self.frontier, "frontier")
        self.result: SearchResult | None = None
        self.points: list[tuple[int, float, float]] = []  # (trial index, latency ms, quality %) of each point drawn
        self.selected: int | None = None
        self.scene().sigMouseClicked.connect(self._on_scene_click)
        self.scene().sigMouseMoved.connect(self._on_scene_move)
        self.clear_result()

    # -- data ------------------------------------------------------------------
    def set_search(self, result: SearchResult) -> None:
        """Draw every finished trial of ``result`` (the search so far, or its end)."""
        self.result = result
        self.set_axis_label("left", f"{result.metric} (%)", "%")
        trials = result.trials
        self.points = [(i, float(t.latency_ms or 0.0), quality_pct(t)) for i, t in enumerate(trials) if plotted(t)]
        within, over = [], []
        for i, x, y in self.points:
            t = trials[i]
            spot = {"pos": (x, y), "data": i, "symbol": "s" if i == 0 else "o"}
            (within if t.within_budget else over).append(spot)
        self.within.setData(spots=within)
        self.over.setData(spots=over)
        front = sorted(
            ((float(trials[i].latency_ms or 0.0), quality_pct(trials[i])) for i in result.pareto if plotted(trials[i])),
        )
        self.frontier.setData([x for x, _ in front], [y for _, y in front])
        best = result.best
        if best is not None and plotted(best):
            self.best_ring.setData([float(best.latency_ms or 0.0)], [quality_pct(best)])
        else:
            self.best_ring.setData([], [])
        plain = trials[0] if trials and plotted(trials[0]) else None
        self._name_point(self.plain_label, plain, "plain run and best" if plain is best else "plain run")
        self._name_point(self.best_label, None if best is plain else best, "best")
        floor = result.budget_floor
        ys = [y for _, _, y in self.points]
        xs = [x for _, x, _ in self.points]
        if floor is not None:
            self.budget.setValue(100.0 * floor)
            self.budget.setVisible(True)
            self.fp32.setValue(100.0 * float(result.fp32_quality or 0.0))
            self.fp32.setVisible(True)
            ys += [100.0 * floor, 100.0 * float(result.fp32_quality or 0.0)]
        else:
            self.budget.setVisible(False)
            self.fp32.setVisible(False)
        self._fit_ranges(xs, ys)
        if floor is not None:
            self._budget_label.setText(f"budget −{result.max_drop:g} pt")
            self._budget_label.setVisible(True)
            self._fp32_label.setVisible(True)
            self._place_edge_labels()
        else:
            self._budget_label.setVisible(False)
            self._fp32_label.setVisible(False)
        self._place_labels()
        self.select(self.selected if self.selected is not None and self.selected < len(trials) else None)

    def _place_edge_labels(self) -> None:
        """ "budget −1 pt" at the right end of its line, "FP32" at the left end of its own."""
        result = self.result
        if result is None or result.budget_floor is None:
            return
        vb = self.getPlotItem().getViewBox()
        (_x0, x1), (y0, y1) = vb.viewRange()
        for label, y in ((self._budget_label, result.budget_floor), (self._fp32_label, result.fp32_quality or 0.0)):
            label.setPos(x1, 100.0 * y)
            room = (y1 - 100.0 * y) / (y1 - y0) * vb.height() if y1 > y0 else 0.0
            label.setAnchor((1.0, 1.0) if room >= label.boundingRect().height() else (1.0, 0.0))

    def _name_point(self, label: pg.TextItem, trial: SearchTrial | None, text: str) -> None:
        if trial is None or not plotted(trial):
            label.setVisible(False)
            return
        label.setText(text)
        label.setPos(float(trial.latency_ms or 0.0), quality_pct(trial))
        label.setVisible(True)

    def _place_labels(self) -> None:
        """Beside their points, LABEL_GAP pixels right of the ring (a view's pixel size changes with the plot's)."""
        if not hasattr(self, "best_label"):  # a resize while the chart is being built
            return
        vb = self.getPlotItem().getViewBox()
        width = vb.width()
        if width <= 0:
            return
        (x0, x1), _ = vb.viewRange()
        per_pixel = (x1 - x0) / width
        for label in (self.plain_label, self.best_label):
            if not label.isVisible() or self.result is None:
                continue
            trial = self.result.trials[0] if label is self.plain_label else self.result.best
            if trial is None:
                continue
            x = float(trial.latency_ms or 0.0) + self.LABEL_GAP * per_pixel
            label.setPos(x, quality_pct(trial))
            # near the right edge the label goes to the point's left instead
            label.setAnchor((1.0, 0.5) if x + label.boundingRect().width() * per_pixel > x1 else (0.0, 0.5))
            if label.anchor.x() == 1.0:
                label.setPos(float(trial.latency_ms or 0.0) - self.LABEL_GAP * per_pixel, quality_pct(trial))
        if self.plain_label.isVisible() and self.best_label.isVisible():  # two names on each other: "best" only
            a, b = self.plain_label.sceneBoundingRect(), self.best_label.sceneBoundingRect()
            self.plain_label.setOpacity(0.0 if a.intersects(b) else 1.0)

    def _on_plot_resized(self) -> None:
        super()._on_plot_resized()
        extent = getattr(self, "_extent", None)
        if extent is not None:  # the margins are in pixels: a taller or wider plot needs less of the axes' range
            self._fit_ranges(*extent)
            self._place_edge_labels()
        self._place_labels()
        for axis in getattr(
            self, "_axis_labels", {}
        ):  # the plot's height changes with the legend's rows: refit "accuracy (%)"
            self._show_axis_label(axis)

    def _fit_ranges(self, xs: list[float], ys: list[float]) -> None:
        """Every point, line and label inside the plot: a margin of at least MARGIN_PX pixels around them."""
        self._extent = (list(xs), list(ys))
        vb = self.getPlotItem().getViewBox()
        if xs:
            lo, hi = min(xs), max(xs)
            span = max(hi - lo, hi * 0.05, 1e-3)
            width = vb.width()
            frac = max(0.08, self.MARGIN_PX / (width - 2 * self.MARGIN_PX)) if width > 4 * self.MARGIN_PX else 0.12
            self.setXRange(max(lo - span * frac, 0.0), hi + span * frac, padding=0)
        else:
            self.setXRange(0.0, 1.0, padding=0)
        if ys:
            lo, hi = min(ys), max(ys)
            span = max(hi - lo, 0.5)
            height = vb.height()
            frac = max(0.1, self.MARGIN_PX / (height - 2 * self.MARGIN_PX)) if height > 4 * self.MARGIN_PX else 0.25
            self.setYRange(lo - span * frac, hi + span * frac, padding=0)
        else:
            self.setYRange(0.0, 100.0, padding=0)

    def clear_result(self) -> None:
        self.result = None
        self.points = []
        self.selected = None
        for scatter in (self.within, self.over, self.best_ring, self.selected_ring):
            scatter.setData([], [])
        self.frontier.setData([], [])
        self.budget.setVisible(False)
        self.fp32.setVisible(False)
        for label in (self._budget_label, self._fp32_label, self.plain_label, self.best_label):
            label.setVisible(False)
        self._fit_ranges([], [])

    # -- selection -----------------------------------------------------------------
    def select(self, index: int | None) -> None:
        """Ring trial ``index`` (None clears; a trial without a point has no ring); emits nothing."""
        point = next((p for p in self.points if p[0] == index), None)
        self.selected = index
        if point is None or self.result is None:
            self.selected_ring.setData([], [])
            return
        _i, x, y = point
        self.selected_ring.setData([x], [y])

    def trial_at(self, x: float, y: float) -> int | None:
        """The trial whose point is nearest data point (x, y), if within :attr:`PICK_PX` pixels of it."""
        vb = self.getPlotItem().getViewBox()
        target = vb.mapViewToScene(QPointF(x, y))
        best, best_d = None, float(self.PICK_PX)
        for i, px, py in self.points:
            p = vb.mapViewToScene(QPointF(px, py))
            d = math.hypot(p.x() - target.x(), p.y() - target.y())
            if d <= best_d:
                best, best_d = i, d
        return best

    def click_at(self, x: float, y: float) -> int | None:
        """What a click at data (x, y) does: select the trial there and emit :attr:`trialClicked`."""
        index = self.trial_at(x, y)
        if index is not None:
            self.select(index)
            self.trialClicked.emit(index)
        return index

    def _on_scene_click(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        p = self._view_point(event.scenePos())
        if p is not None:
            self.click_at(p.x(), p.y())

    def describe(self, index: int) -> str:
        assert self.result is not None
        t = self.result.trials[index]
        change = self.result.points_vs_fp32(t)
        vs = "" if change == "—" else f"{change} points vs FP32, "
        budget = "within budget" if t.within_budget else "over budget"
        return (
            f"trial {t.number} ({t.origin}): {t.describe()}\n"
            f"{quality_pct(t):.2f}% {self.result.metric} ({vs}{budget}) · "
            f"{fmt_ms(t.latency_ms)} ms · {fmt_ratio(t.speedup)} vs FP32 eager"
        )

    def _on_scene_move(self, scene_pos: QPointF) -> None:
        p = self._view_point(scene_pos)
        index = self.trial_at(p.x(), p.y()) if p is not None else None
        if index is None:
            QToolTip.hideText()
            self.setCursor(Qt.CursorShape.ArrowCursor)
            return
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        QToolTip.showText(QCursor.pos(), self.describe(index), self)


__all__ = ["ParetoChart", "plotted", "quality_pct"]
