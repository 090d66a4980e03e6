"""The Runtimes tab: every runtime and precision measured in the run, as a chart and a table, and what was skipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QVBoxLayout, QWidget

from qstudio.core.formatting import fmt_ms, fmt_pct, fmt_ratio
from qstudio.core.latency_figures import runtime_batch_sizes, runtime_rows
from qstudio.ui.charts.runtimes_chart import RuntimesChart
from qstudio.ui.results.widgets import ROW_HEIGHT, header_tips, item, make_table

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult


class RuntimesTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runtimesTab")
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        self.chart = RuntimesChart()
        v.addWidget(self.chart, 3)
        self.table = make_table(["runtime"])
        self.table.setObjectName("runtimesTable")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        v.addWidget(self.table, 2)
        self.note = QLabel()
        self.note.setObjectName("runtimesNote")
        self.note.setStyleSheet("color: #666;")
        self.note.setWordWrap(True)
        v.addWidget(self.note)

    def show_result(self, result: RunResult) -> None:
        self.chart.set_result(result)
        rows = runtime_rows(result)
        sizes = runtime_batch_sizes(result)
        labelled = any(r.figure.accuracy is not None for r in rows)
        columns = [
            "runtime",
            *(f"ms b{b}" for b in sizes),
            "vs FP32 best",
            "size MB",
            "top-1" if labelled else "agree",
            "cosine",
        ]
        tips = [
            "Runtime and precision (BF16 is never called FP32)",
            *(f"Median ms per call at batch {b}" for b in sizes),
            "Speedup over the fastest true-FP32 runtime measured (marked baseline); below 1x is slower",
            "Size of the deployment file(s)",
            "Top-1 accuracy on the eval data" if labelled else "Top-1 agreement with FP32 eager",
            "Mean cosine of the outputs to FP32 eager's",
        ]
        t = self.table
        t.clear()
        t.setColumnCount(len(columns))
        t.setHorizontalHeaderLabels(columns)
        header_tips(t, tips)
        t.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        for r, row in enumerate(rows):
            f = row.figure
            marks = [m for m, on in (("baseline", row.baseline), ("export", row.target)) if on]
            cells = [
                f.label + (f"  ({', '.join(marks)})" if marks else ""),
                *(fmt_ms(s.median_ms) if (s := row.latency_at(b)) else "—" for b in sizes),
                "—" if row.vs_fp32_best is None else fmt_ratio(row.vs_fp32_best),
                "—" if f.size_mb is None or f.size_mb != f.size_mb else f"{f.size_mb:.2f}",
                fmt_pct(f.accuracy if labelled else f.agreement),
                "—" if f.cosine is None else f"{f.cosine:.4f}",
            ]
            for c, text in enumerate(cells):
                cell = item(text)
                if marks:
                    cell.setFont(bold)
                if c == 0 and f.notes:
                    cell.setToolTip("\n".join(f.notes))
                t.setItem(r, c, cell)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        # all rows when there is room, else three and a scroll bar: a long table must never grow the window
        full = t.horizontalHeader().sizeHint().height() + ROW_HEIGHT * len(rows) + 2 * t.frameWidth() + 2
        t.setMaximumHeight(full)
        t.setMinimumHeight(min(full, t.horizontalHeader().sizeHint().height() + ROW_HEIGHT * 3 + 2 * t.frameWidth()))
        t.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        lines = []
        best = result.fp32_best
        if best is not None:
            lines.append(f"Baseline: {best.label}, the fastest true-FP32 runtime measured.")
        if result.target_note:
            lines.append(result.target_note[0].upper() + result.target_note[1:] + ".")
        lines += result.runtime_notes
        if len(rows) <= 3 and not result.runtime_notes:
            lines.append("Only torch's own runtimes were measured (deploy.runtimes / --runtimes; QSTUDIO_RUNTIMES).")
        self.note.setText(" ".join(lines[:2]))
        self.note.setToolTip("\n".join(lines))

    def clear_result(self) -> None:
        self.chart.clear_result()
        self.table.setRowCount(0)
        self.note.setText("")
