"""The Training tab: the QAT curve (live during a run, or a finished run's epochs) and its epoch table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QVBoxLayout, QWidget

from qstudio.core.formatting import fmt_pct
from qstudio.ui.charts import QatCurve
from qstudio.ui.results.widgets import fit_table_height, fit_table_width, header_tips, item, make_table

if TYPE_CHECKING:
    from qstudio.core.flows import EpochStats
    from qstudio.core.progress import Progress

EpochRow = tuple[float, float, float, "float | None"]  # epoch, loss, train accuracy, eval accuracy


class TrainingTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        self.curve = QatCurve()
        v.addWidget(self.curve, 1)
        self.table = make_table(["epoch", "loss", "train acc.", "eval acc."])
        header_tips(self.table, ["", "Mean training loss", "Training accuracy", "Evaluation accuracy"])
        self.table.setObjectName("trainingTable")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        fit_table_width(self.table)
        v.addWidget(self.table)

    def add_progress(self, progress: Progress) -> None:
        """One live ``train`` step: a point on the curve; an epoch's end also fills the table."""
        if self.curve.add_progress(progress) and progress.metrics and "epoch" in progress.metrics:
            self.fill_table([(i + 1, e[1], e[2], e[3]) for i, e in enumerate(self.curve.epochs)])

    def show_history(self, history: list[EpochStats], snapshot: dict | None, live: bool) -> None:
        """A finished run: its live curve when one was captured (``snapshot``), else its epochs; ``live`` keeps the curve."""
        if snapshot is not None:
            self.curve.restore(snapshot)
        elif history:
            self.curve.set_history(history)
        elif not live:
            self.curve.reset()
        self.fill_table([(h.epoch, h.loss, h.train_accuracy, h.eval_accuracy) for h in history])

    def fill_table(self, rows: list[EpochRow]) -> None:
        """Epoch, loss, train accuracy, eval accuracy; sized to its rows (at most 5 visible)."""
        t = self.table
        t.setRowCount(len(rows))
        for r, (epoch, loss, train_acc, eval_acc) in enumerate(rows):
            values = [str(int(epoch)), f"{loss:.4f}", fmt_pct(train_acc), fmt_pct(eval_acc)]
            for c, text in enumerate(values):
                t.setItem(r, c, item(text))
        fit_table_height(t, min(max(len(rows), 1), 5))
        fit_table_width(t)
