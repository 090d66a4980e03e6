"""The charts' look: colours, the SQNR band colour, fonts and the y headroom shared by every chart.

The colours and SQNR bands are the engine's (:mod:`qstudio.core.summary`), the
same as the report's; only the selection outline and the training curve's own
lines are chosen here.
"""

from __future__ import annotations

from PySide6.QtGui import QFont

from qstudio.core.summary import LATENCY_SERIES, PALETTE, sqnr_band

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


def chart_font(points: float, bold: bool = False) -> QFont:
    f = QFont()
    f.setPointSizeF(points)
    f.setBold(bold)
    return f
