"""The engine's words for a run's figures: "4.8x faster", "3.9x smaller", "PTQ FX".

Shared by the headline and cards (:mod:`qstudio.core.summary`, which exports
them too) and the HTML report (:mod:`qstudio.core.report`).

Qt-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qstudio.core.flows import known_modes, mode_traits
from qstudio.core.formatting import fmt_ratio

if TYPE_CHECKING:
    from qstudio.core.run_result import RunResult

MODE_LABELS = {mode: mode_traits(mode).label for mode in known_modes()}


def speed_phrase(ratio: float) -> str:
    """'4.8x faster' when ``ratio`` (baseline / INT8 time) is at least 1, else '1.35x slower'."""
    if ratio >= 1:
        return f"{fmt_ratio(ratio)} faster"
    return f"{fmt_ratio(1 / ratio)} slower"


def size_phrase(ratio: float) -> str:
    """'3.9x smaller' when ``ratio`` (FP32 size / INT8 size) is at least 1, else '1.10x larger'."""
    if ratio >= 1:
        return f"{fmt_ratio(ratio)} smaller"
    return f"{fmt_ratio(1 / ratio)} larger"


def mode_label(result: RunResult) -> str:
    return mode_traits(result.recipe.mode).label_for(result.recipe)
