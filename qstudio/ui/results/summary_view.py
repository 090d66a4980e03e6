"""The top of the results panel: the four summary cards and the warnings banner.

Both show a :class:`~qstudio.core.summary.Summary`: the cards its ``cards``,
the banner its ``notices`` (critical ones first, red and bold).  Nothing here
decides what a figure means.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFrame, QSizePolicy, QVBoxLayout

from qstudio.core.summary import CRITICAL, PALETTE, WARNING, Card, Notice, summarize
from qstudio.ui.results.widgets import ElideLabel, FitLabel

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult

#: The cards' objectNames, one per :attr:`Summary.cards <qstudio.core.summary.Summary.cards>` key, in order.
CARD_NAMES = ("accuracyCard", "latencyCard", "sizeCard", "coverageCard")

STYLE = f"""
QFrame[card="true"] {{ background: #f7f8fa; border: 1px solid #d9dce1; border-radius: 6px; }}
QFrame[card="true"][warn="true"] {{ background: #fff6e0; border: 1px solid {PALETTE[WARNING]}; }}
QFrame[card="true"][severity="critical"] {{ background: #fdecec; border: 1px solid {PALETTE[CRITICAL]}; }}
QFrame[card="true"] QLabel {{ background: transparent; border: none; }}
QLabel[role="cardTitle"] {{ color: #555; font-size: 9pt; }}
QLabel[role="cardValue"] {{ color: #111; }}
QLabel[role="cardDetail"] {{ color: #444; font-size: 9pt; }}
QLabel#warningsBanner {{ background: #fff3cd; color: #5c4400; border: 1px solid {PALETTE[WARNING]}; border-radius: 4px; padding: 6px; }}
QScrollArea#warningsScroll, QScrollArea#warningsScroll > QWidget > QWidget {{ background: transparent; }}
QLabel#emptyState {{ color: #666; font-size: 12pt; }}
"""
BANNER_TOP = 7  # the banner's border and padding above its first line (see STYLE)


def card_name(card: Card) -> str:
    """The objectName of the widget showing ``card``: ``accuracyCard`` for the ``accuracy`` card."""
    return f"{card.key}Card"


class CardWidget(QFrame):
    """One summary card: title, figure (never cut) and a two-line detail; ``warn`` and ``severity`` properties."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self.setProperty("card", True)
        self.setProperty("warn", False)
        self.setProperty("severity", "")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(1)
        # the figure is never cut (its font shrinks to fit); title and detail are elided, the card's tooltip has them
        self.title = ElideLabel(" ")
        self.value = FitLabel()
        self.value.setText("—")
        self.detail = ElideLabel("\n")  # always two lines, so every card (and every result) has the same height
        for label, role in ((self.title, "cardTitle"), (self.value, "cardValue"), (self.detail, "cardDetail")):
            label.setProperty("role", role)
            label.setObjectName(f"{name}{role[4:]}")  # accuracyCardTitle, accuracyCardValue, accuracyCardDetail
            layout.addWidget(label)

    def show_card(self, card: Card) -> None:
        self.title.setText(card.title)
        self.value.setText(card.value)
        self.detail.setText(card.detail if "\n" in card.detail else card.detail + "\n")
        self.setToolTip(card.tooltip)
        if self.property("warn") != card.flagged or self.property("severity") != card.severity:
            self.setProperty("warn", card.flagged)
            self.setProperty("severity", card.severity)
            self.style().unpolish(self)
            self.style().polish(self)


def banner_html(notices: Sequence[Notice]) -> str:
    """The banner's text: plain, or rich text with the critical notices (slowdown, collapse ...) first, red and bold."""
    if not any(n.severity == CRITICAL for n in notices):
        return "⚠ " + "\n⚠ ".join(n.text for n in notices) if notices else ""
    loud = [
        f'<b style="color:{n.colour}">⚠ {html.escape(n.text, quote=False)}</b>'
        for n in notices
        if n.severity == CRITICAL
    ]
    rest = [f"⚠ {html.escape(n.text, quote=False)}" for n in notices if n.severity != CRITICAL]
    return "<br>".join(loud + rest)


def result_warnings(result: RunResult) -> list[str]:
    """Everything the banner lists: the summary's notices, each once, loudest first."""
    return [n.text for n in summarize(result).notices]


def banner_text(result: RunResult, warnings: Iterable[str] | None = None) -> str:
    """The banner for ``result`` (only the notices among ``warnings``, when given)."""
    notices = summarize(result).notices
    if warnings is not None:
        wanted = set(warnings)
        notices = tuple(n for n in notices if n.text in wanted)
    return banner_html(notices)
