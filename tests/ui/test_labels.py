"""The results' labels that fit their width: FitLabel shrinks its font, ElideLabel elides; both keep the full text."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel

from qstudio.ui.results.widgets import ElideLabel, FitLabel

LONG = "12.3 ms → 4.56 ms (2.70x faster) at batch 1, median of 50"


@pytest.fixture
def fit(qtbot) -> FitLabel:
    label = FitLabel(largest=13.0, smallest=9.5)
    qtbot.addWidget(label)
    label.show()
    return label


def shown(label: QLabel) -> str:
    """What Qt paints: QLabel's own text, not the full text the label keeps."""
    return QLabel.text(label)


def test_fit_label_keeps_its_text_whole_by_shrinking_the_font(qtbot, fit: FitLabel) -> None:
    fit.setText(LONG)
    assert fit.full_text() == LONG
    fit.resize(fit.sizeHint())
    assert shown(fit) == LONG and fit.font().pointSizeF() == 13.0 and fit.toolTip() == ""
    fit.resize(fit.minimumSizeHint())  # the narrowest a layout gives it: smaller font, the text still whole
    assert shown(fit) == LONG and 9.5 <= fit.font().pointSizeF() < 13.0 and fit.toolTip() == ""
    fit.resize(fit.minimumSizeHint().width() // 2, fit.height())  # narrower than any layout gives: elided
    assert shown(fit) != LONG and shown(fit).endswith("…") and fit.toolTip() == LONG
    assert fit.full_text() == LONG  # the shown text never replaces the full one
    fit.resize(fit.sizeHint())
    assert shown(fit) == LONG and fit.font().pointSizeF() == 13.0 and fit.toolTip() == ""


def test_elide_label_elides_each_line_and_gives_the_full_text_as_tooltip(qtbot) -> None:
    label = ElideLabel("short")
    qtbot.addWidget(label)
    label.show()
    assert label.full_text() == "short" and shown(label) == "short"
    text = f"{LONG}\nsecond line"
    label.setText(text)
    label.resize(label.sizeHint())
    assert shown(label) == text and label.toolTip() == ""
    label.resize(label.fontMetrics().horizontalAdvance("12.3 ms →"), label.height())
    first, second = shown(label).split("\n")
    assert first.endswith("…") and second.endswith("…") and label.toolTip() == text
    assert label.full_text() == text
    assert label.minimumSizeHint().width() < label.sizeHint().width()  # it never widens its parent


def test_setting_text_on_a_fitted_label_shows_it_once(qtbot, fit: FitLabel) -> None:
    """The base class shows text through QLabel.setText: an overridden setText is not called again (no recursion)."""
    calls: list[str] = []

    class Counting(ElideLabel):
        def setText(self, text: str) -> None:
            calls.append(text)
            super().setText(text)

    label = Counting("a")
    qtbot.addWidget(label)
    label.show()
    label.setText("b")
    label.resize(5, 20)
    assert calls == ["a", "b"] and label.full_text() == "b"
    fit.setText("")
    assert fit.full_text() == "" and shown(fit) == "" and fit.toolTip() == ""
