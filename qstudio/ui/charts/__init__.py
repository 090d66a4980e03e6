"""The result charts: latency per batch size, per-layer SQNR and the live QAT curve.

Each chart is a :class:`pyqtgraph.PlotWidget` built once; showing another
result updates the existing items (``setOpts``/``setData``) instead of
rebuilding the plot, so switching between runs is cheap and flicker-free.
The charts only draw what a :class:`~qstudio.core.pipeline.RunResult` already
holds; they compute nothing about quantization.

One module per chart: :mod:`.latency_chart`, :mod:`.layer_error_chart` (per-layer
SQNR), :mod:`.qat_curve` and :mod:`.pareto_chart` (a search's trials); what they share is in :mod:`.base_chart` (the plot,
its elided labels and legend) and :mod:`.chart_style` (colours, fonts); PNG
export is :mod:`.chart_export`.  Everything is importable from here.
"""

from __future__ import annotations

from qstudio.core.formatting import fmt_db as format_db  # the panel and tests use the UI's names
from qstudio.core.formatting import fmt_ms as format_ms
from qstudio.ui.charts.chart_export import export_png, render_png
from qstudio.ui.charts.chart_style import (
    AMBER,
    FLOAT_GREY,
    GREEN,
    GRID_ALPHA,
    HEADROOM,
    HIGHLIGHT,
    MUTED,
    QAT_EVAL,
    QAT_LOSS,
    QAT_LOSS_EDGE,
    QAT_TRAIN,
    RED,
    SERIES,
    TEXT,
    sqnr_colour,
)
from qstudio.ui.charts.latency_chart import LatencyChart
from qstudio.ui.charts.layer_error_chart import LayerErrorChart
from qstudio.ui.charts.pareto_chart import ParetoChart
from qstudio.ui.charts.qat_curve import QatCurve

__all__ = [
    "AMBER",
    "FLOAT_GREY",
    "GREEN",
    "GRID_ALPHA",
    "HEADROOM",
    "HIGHLIGHT",
    "MUTED",
    "QAT_EVAL",
    "QAT_LOSS",
    "QAT_LOSS_EDGE",
    "QAT_TRAIN",
    "RED",
    "SERIES",
    "TEXT",
    "LatencyChart",
    "LayerErrorChart",
    "ParetoChart",
    "QatCurve",
    "export_png",
    "format_db",
    "format_ms",
    "render_png",
    "sqnr_colour",
]
