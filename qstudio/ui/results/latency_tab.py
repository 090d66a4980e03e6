"""The Latency tab: the chart, a table of medians and speedups per batch size, and a note on how it was timed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QVBoxLayout, QWidget

from qstudio.core.formatting import fmt_ms, fmt_ratio
from qstudio.ui.charts import LatencyChart
from qstudio.ui.results.widgets import fit_table_height, fit_table_width, header_tips, item, make_table

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult
    from qstudio.core.summary import Summary

COLUMNS = ["batch", "FP32", "FP32 TS", "INT8", "speedup", "vs TS"]  # ms; the tooltips say what
TIPS = [
    "Batch size",
    "FP32 eager: median ms per call",
    "FP32 frozen TorchScript: median ms per call",
    "INT8: median ms per call",
    "INT8 speedup over FP32 eager",
    "INT8 speedup over FP32 frozen TorchScript",
]


class LatencyTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        self.chart = LatencyChart()
        v.addWidget(self.chart, 1)
        self.table = make_table(COLUMNS)
        header_tips(self.table, TIPS)
        self.table.setObjectName("latencyTable")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # never narrower than a header
        header.setStretchLastSection(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        fit_table_width(self.table)
        v.addWidget(self.table)
        self.note = QLabel()
        self.note.setObjectName("latencyNote")
        self.note.setStyleSheet("color: #666;")
        self.note.setWordWrap(True)
        v.addWidget(self.note)

    def show_result(self, result: RunResult, summary: Summary) -> None:
        self.chart.set_result(result)
        t = self.table
        t.setRowCount(len(summary.latency))
        for r, row in enumerate(summary.latency):
            b = row.batch_size
            cells = [
                (str(b), None),
                *((fmt_ms(s.median_ms) if s is not None else "—", s) for s in (row.eager, row.script, row.int8)),
                (fmt_ratio(row.int8_vs_eager), None),
                (fmt_ratio(row.int8_vs_script), None),
            ]
            for c, (text, stat) in enumerate(cells):
                cell = item(text)
                if stat is not None:  # the short header keeps the table readable; p90 and the full label on hover
                    cell.setToolTip(
                        f"{stat.label}, batch {b}: median {fmt_ms(stat.median_ms)}, p90 {fmt_ms(stat.p90_ms)}"
                    )
                t.setItem(r, c, cell)
        fit_table_height(t, len(summary.latency))
        fit_table_width(t)
        any_stat = next((s for series in summary.series for s in series.stats), None)
        if any_stat is not None:
            # two short lines under the chart (it needs the height); the whole story on hover
            note = (
                f"Median ms of {any_stat.iters} calls per bar, whisker p90, {any_stat.threads} thread(s); "
                "TS = frozen TorchScript. Compare within this run (hover for why)."
            )
            if getattr(result.timing, "isolated", False):
                why = (
                    "TS = frozen TorchScript, PyTorch's fastest FP32 path. Timed in a fresh process, as a deployment "
                    "runs it, interleaved: the same figures `qstudio quantize` gives for this recipe."
                )
            else:
                why = (
                    "TS = frozen TorchScript, PyTorch's fastest FP32 path. Timed in the window's own process, which "
                    "reads slower than a terminal run on small CPUs: compare bars within this run, and take "
                    "deployment figures from `qstudio quantize` (docs/performance.md)."
                )
            if not result.fp32_deploy:
                note += " No FP32 TorchScript baseline for this model."
                why += " The FP32 TorchScript baseline could not be built for this model."
            self.note.setText(note)
            self.note.setToolTip(why)
