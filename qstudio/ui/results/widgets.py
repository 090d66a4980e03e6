"""Labels that fit and the tables the results tabs share."""

from __future__ import annotations

import math

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QLabel, QSizePolicy, QTableWidget, QTableWidgetItem

ROW_HEIGHT = 22


class SortItem(QTableWidgetItem):
    """A cell that shows text but sorts by a number."""

    def __init__(self, text: str, key: float) -> None:
        super().__init__(text)
        self.key = key
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, SortItem):
            return self.key < other.key
        return super().__lt__(other)


def sort_key(db: float | None) -> float:
    if db is None or math.isnan(db):
        return math.inf
    return db


def make_table(columns: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setHighlightSections(False)
    return t


def item(text: str) -> QTableWidgetItem:
    return QTableWidgetItem(text)


def header_tips(table: QTableWidget, tips: list[str]) -> None:
    for c, tip in enumerate(tips):
        cell = table.horizontalHeaderItem(c)
        if cell is not None and tip:
            cell.setToolTip(tip)


def fit_table_width(table: QTableWidget) -> None:
    """The table is never narrower than its columns need (headers included), so no header is cut."""
    header = table.horizontalHeader()
    need = sum(
        max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
        for c in range(table.columnCount())
        if not header.isSectionHidden(c)
    )
    table.setMinimumWidth(need + 2 * table.frameWidth() + 2)


def fit_table_height(table: QTableWidget, rows: int) -> None:
    """Exactly ``rows`` rows tall under the header: no empty space, no scroll bar."""
    header = table.horizontalHeader().sizeHint().height()
    table.setFixedHeight(header + ROW_HEIGHT * rows + 2 * table.frameWidth())


# -- labels that fit --------------------------------------------------------------------------
class _FittedLabel(QLabel):
    """A label that keeps the text it was given and shows a fitted form of it.

    ``setText`` stores the full text and refits; a resize refits.  Subclasses
    decide in :meth:`_fit` how the text fits the width and call :meth:`_show`,
    which sets what is shown through ``QLabel.setText`` itself: calling
    ``self.setText`` or ``super().setText`` there would store the fitted text as
    the full one and fit again, forever.
    """

    def __init__(self) -> None:
        super().__init__()
        self._full = ""

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self.updateGeometry()
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        self._show(self._full)

    def _show(self, text: str) -> None:
        """Show ``text``; when it is not the whole text, the whole text is the tooltip."""
        QLabel.setText(self, text)
        self.setToolTip(self._full if text != self._full else "")


class FitLabel(_FittedLabel):
    """One line of figures that is never cut: its font shrinks to fit the width.

    From ``largest`` down to ``smallest`` points; only below that (a width
    smaller than the minimum size hint, which a layout never gives) is the
    text elided, with the full text in the tooltip.  :meth:`full_text` is what
    was set.
    """

    def __init__(self, largest: float = 13.0, smallest: float = 9.5, bold: bool = True) -> None:
        super().__init__()
        self._largest, self._smallest, self._bold = largest, smallest, bold
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        super().setFont(self._font(largest))

    def _font(self, points: float) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(points)
        font.setBold(self._bold)
        return font

    def _width_at(self, points: float) -> int:
        return QFontMetrics(self._font(points)).horizontalAdvance(self._full) + 2

    def sizeHint(self) -> QSize:
        m = self.contentsMargins()
        return QSize(
            self._width_at(self._largest) + m.left() + m.right(), QFontMetrics(self._font(self._largest)).height()
        )

    def minimumSizeHint(self) -> QSize:
        m = self.contentsMargins()
        return QSize(
            self._width_at(self._smallest) + m.left() + m.right(), QFontMetrics(self._font(self._largest)).height()
        )

    def _fit(self) -> None:
        room = self.contentsRect().width()
        points = self._largest
        while points > self._smallest and self._width_at(points) > room:
            points -= 0.5
        font = self._font(points)
        text = self._full
        if self._width_at(points) > room:
            text = QFontMetrics(font).elidedText(self._full, Qt.TextElideMode.ElideRight, max(room - 2, 0))
        if font != self.font():
            super().setFont(font)
        self._show(text)


class ElideLabel(_FittedLabel):
    """Text whose lines are elided (…) when the label is narrower than they are; the full text is then its tooltip.

    It never widens its parent: the minimum width is a few characters.
    """

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.setText(text)

    def sizeHint(self) -> QSize:
        fm, m = self.fontMetrics(), self.contentsMargins()
        lines = self._full.split("\n")
        width = max((fm.horizontalAdvance(line) for line in lines), default=0) + 2
        return QSize(width + m.left() + m.right(), fm.lineSpacing() * len(lines) + m.top() + m.bottom())

    def minimumSizeHint(self) -> QSize:
        hint = self.sizeHint()
        return QSize(min(hint.width(), self.fontMetrics().horizontalAdvance("Mmmm…")), hint.height())

    def _fit(self) -> None:
        room, fm = self.contentsRect().width(), self.fontMetrics()
        lines = [
            fm.elidedText(line, Qt.TextElideMode.ElideRight, room) if room > 0 else line
            for line in self._full.split("\n")
        ]
        self._show("\n".join(lines))
