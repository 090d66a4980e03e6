"""The QAT training curve: loss per batch and per-epoch train/eval accuracy, live during a run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from qstudio.ui.charts.base_chart import BaseChart
from qstudio.ui.charts.chart_style import GRID_ALPHA, QAT_EVAL, QAT_LOSS, QAT_LOSS_EDGE, QAT_TRAIN, TEXT

if TYPE_CHECKING:
    from qstudio.core.flows import EpochStats
    from qstudio.core.progress import Progress


class QatCurve(BaseChart):
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
