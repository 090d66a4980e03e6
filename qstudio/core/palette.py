"""The engine's colours and SQNR bands: one :data:`PALETTE` and one :func:`sqnr_band` for every view.

The HTML report (CSS and SVG charts), the window (charts, cards, banner, the
module tree) and the CLI all colour a run's figures with these, so a layer at
25 dB is "fair" and amber everywhere.  :func:`qstudio.core.summary.summarize`
uses them for its cards and notices (and :mod:`qstudio.core.summary` exports
them too).

Qt-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from qstudio.core.verdicts import CRITICAL, INFO, WARNING

#: A card whose figures are fine; notices only take :data:`SEVERITIES` (critical, warning, info).
OK = "ok"

# -- one palette ------------------------------------------------------------------------------
#: Every colour that carries meaning, for the report (CSS and SVG), the window (charts, cards, banner) and the CLI.
PALETTE = MappingProxyType(
    {
        # the three latency series, and layers kept in float
        "fp32_eager": "#8c939d",
        "fp32_script": "#3d6fb4",
        "int8": "#e07a1f",
        "float": "#9e9e9e",
        # the runtimes chart: one colour per precision (FP32 as the TorchScript series, INT8 as INT8)
        "bf16": "#8a5cc2",
        # SQNR bands (see sqnr_band)
        "poor": "#d63a3a",
        "fair": "#e0a100",
        "good": "#2f9e44",
        # severities of notices and cards
        CRITICAL: "#b00020",
        WARNING: "#e0a100",
        INFO: "#666666",
        OK: "#2f9e44",
        # text
        "ink": "#222222",
        "muted": "#666666",
    }
)

# -- one set of SQNR bands ----------------------------------------------------------------------
#: Below this a layer (or the output) is poor: it usually hurts accuracy.
SQNR_POOR_BELOW = 20.0
#: From this up (30 dB itself included) it is good: it rarely hurts accuracy.  Between the two: fair.
SQNR_GOOD_FROM = 30.0


@dataclass(frozen=True)
class Band:
    name: str  # "poor", "fair", "good"
    colour: str
    low: float  # inclusive
    high: float  # exclusive
    label: str  # for a legend with room: "below 20 dB: poor"
    short: str  # for a one-row legend: "< 20 dB"


SQNR_BANDS = (
    Band("poor", PALETTE["poor"], -math.inf, SQNR_POOR_BELOW, "below 20 dB: poor", "< 20 dB"),
    Band("fair", PALETTE["fair"], SQNR_POOR_BELOW, SQNR_GOOD_FROM, "20–30 dB: fair", "20–30 dB"),
    Band("good", PALETTE["good"], SQNR_GOOD_FROM, math.inf, "30 dB and up: good", "≥ 30 dB"),
)
UNKNOWN_BAND = "unknown"


def sqnr_band(db: float | None) -> tuple[str, str]:
    """``(name, colour)`` of an SQNR figure: poor below 20 dB, fair from 20 to below 30, good from 30 dB (∞ too).

    A missing figure (None, NaN) is ``("unknown", PALETTE["muted"])``.
    """
    if db is None or (isinstance(db, float) and math.isnan(db)):
        return UNKNOWN_BAND, PALETTE["muted"]
    for band in SQNR_BANDS:
        if band.low <= db < band.high:
            return band.name, band.colour
    return SQNR_BANDS[-1].name, SQNR_BANDS[-1].colour  # +inf: no error at all
