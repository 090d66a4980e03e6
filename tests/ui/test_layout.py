"""The real window fits 1024x700 and 1280x800 screens: measured facts, in every mode, before and after a run.

What users saw: card values cut, a latency chart without bars,
table headers reading "P32 m", the settings cut mid-word and the window
growing wider than the screen in Dynamic mode, the tree's result columns
off-screen and the per-layer chart's last bar pushed off its edge when a
layer was selected.  Each test here measures one of those in the window the
``qstudio`` command builds.
"""

from __future__ import annotations

import dataclasses

import dialogs
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QHeaderView,
    QLabel,
    QStyle,
    QTableWidget,
    QWidget,
)

from qstudio.core.recipe import DataSource
from qstudio.ui import create_main_window
from qstudio.ui.results_panel import (
    CARD_NAMES,
    TAB_HISTORY,
    TAB_LATENCY,
    TAB_LAYERS,
    TAB_RUNTIMES,
    TAB_TRAINING,
    FitLabel,
)
from qstudio.ui.tree_model import Column

FAST = ["--calib-batches", "2", "--iters", "3"]
SIZES = [(1024, 700), (1280, 800)]
MODES = ["fx", "eager", "qat", "dynamic"]
RESULT_COLUMNS = (Column.WEIGHT_SQNR, Column.ACT_SQNR, Column.STATE)


@pytest.fixture(params=SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def window(request, qtbot):
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.resize(*request.param)
    w.show()
    qtbot.waitExposed(w)
    w.target = request.param
    settle()
    yield w
    w.controller.wait(30000)


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def set_mode(window, mode: str) -> None:
    dialogs.set_mode(window, mode)
    settle()


def quick_qat(window) -> None:
    """One epoch over a slice of the demo's training split: the layout, not the training, is under test."""
    session = window.controller.session
    recipe = dataclasses.replace(
        session.recipe,
        train=DataSource(kind="demo", split="train", limit=64),
        eval=DataSource(kind="demo", split="eval", limit=64),
        qat=dataclasses.replace(session.recipe.qat, epochs=1),
    )
    window.controller.update_recipe(recipe)


def run(qtbot, window):
    with qtbot.waitSignal(window.controller.runFinished, timeout=240_000) as blocker:
        window.run()
    settle()
    return blocker.args[0]


# -- measurements ------------------------------------------------------------------------------
def assert_fits_the_screen(window) -> None:
    width, height = window.target
    assert window.width() <= width, f"the window grew to {window.width()} px on a {width} px screen"
    assert window.height() <= height, f"the window grew to {window.height()} px on a {height} px screen"
    assert window.minimumSizeHint().width() <= width
    assert window.minimumSizeHint().height() <= height


def squeezed(root: QWidget) -> list[str]:
    """Visible one-line labels, buttons and combo boxes narrower than their text needs (cut mid-word)."""
    out = []
    for w in root.findChildren(QWidget):
        if not w.isVisibleTo(root) or w.width() <= 0:
            continue
        if isinstance(w, QLabel) and not w.wordWrap() and w.text() and "\n" not in w.text():
            if w.fontMetrics().horizontalAdvance(w.text()) > w.contentsRect().width() + 1:
                out.append(f"label {w.objectName() or w.text()!r}: {w.width()} px")
        elif isinstance(w, (QAbstractButton, QComboBox)) and w.width() < w.minimumSizeHint().width():
            out.append(f"{type(w).__name__} {w.objectName() or getattr(w, 'text', lambda: '')()!r}: {w.width()} px")
    return out


def assert_cards_readable(window) -> None:
    panel = window.results_panel
    for name in CARD_NAMES:
        card = panel.cards[name]
        assert card.isVisible()
        value = card.value
        assert isinstance(value, FitLabel)
        assert value.text() == value.full_text(), f"{name}: the value is elided: {value.text()!r}"
        assert value.fontMetrics().horizontalAdvance(value.text()) <= value.contentsRect().width(), name
        assert value.font().pointSizeF() >= 9.5, f"{name}: the value shrank to {value.font().pointSizeF()} pt"
        for label in (card.title, card.detail):
            full = label.full_text()
            for line in label.text().split("\n"):
                assert label.fontMetrics().horizontalAdvance(line) <= label.contentsRect().width() + 1, (name, line)
            assert label.text() == full or label.toolTip() == full, f"{name}: {label.text()!r} elided without a tooltip"


def bar_rects(chart, bar) -> list[tuple[float, float, float, float]]:
    """Each bar of a BarGraphItem as (left, top, right, bottom) in the chart widget's pixels."""
    vb = chart.getPlotItem().getViewBox()
    xs = [float(x) for x in bar.opts["x"]]
    heights = [float(h) for h in bar.opts["height"]]
    width = float(bar.opts["width"])
    rects = []
    for x, h in zip(xs, heights, strict=True):
        a = chart.mapFromScene(vb.mapViewToScene(QPointF(x - width / 2, h)))
        b = chart.mapFromScene(vb.mapViewToScene(QPointF(x + width / 2, 0.0)))
        rects.append((a.x(), a.y(), b.x(), b.y()))
    return rects


def assert_bars_in_view(chart, bars) -> None:
    vb_rect = chart.mapFromScene(chart.getPlotItem().getViewBox().sceneBoundingRect()).boundingRect()
    assert vb_rect.height() >= 40, f"{chart.objectName()}: the plot area is {vb_rect.height()} px tall"
    drawn = 0
    for bar in bars:
        for left, top, right, bottom in bar_rects(chart, bar):
            assert right - left >= 3, f"{chart.objectName()}: a bar {right - left:.1f} px wide"
            assert left >= vb_rect.left() - 1 and right <= vb_rect.right() + 1, (
                f"{chart.objectName()}: a bar off the edge"
            )
            assert top >= vb_rect.top() - 1, f"{chart.objectName()}: a bar above the plot"
            drawn += bottom - top >= 1
    assert drawn, f"{chart.objectName()}: no bar is drawn"
    title = chart.getPlotItem().titleLabel
    assert title.item.boundingRect().width() <= chart.width(), (
        f"{chart.objectName()}: the title is wider than the chart"
    )


def assert_headers_whole(table: QTableWidget) -> None:
    header = table.horizontalHeader()
    style = header.style()
    margin = style.pixelMetric(QStyle.PixelMetric.PM_HeaderMargin, None, header)
    mark = style.pixelMetric(QStyle.PixelMetric.PM_HeaderMarkSize, None, header)
    assert header.length() <= table.viewport().width() + 1 or table.horizontalScrollBar().maximum() > 0
    for c in range(table.columnCount()):
        if header.isSectionHidden(c):
            continue
        text = table.horizontalHeaderItem(c).text()
        need = header.fontMetrics().horizontalAdvance(text) + 2 * margin
        if header.isSortIndicatorShown() and header.sortIndicatorSection() == c:
            need += mark
        assert header.sectionSize(c) >= need, (
            f"{table.objectName()}: header {text!r} has {header.sectionSize(c)} of {need} px"
        )


def assert_result_columns_reachable(window, visible: bool) -> None:
    view = window.tree_panel.view
    header: QHeaderView = view.header()
    room = view.viewport().width()
    bar = view.horizontalScrollBar()
    for col in RESULT_COLUMNS:
        start = header.sectionPosition(col)  # from the left edge of the unscrolled tree
        end = start + header.sectionSize(col)
        if visible:
            assert end - bar.value() <= room, f"{col.name} ends at {end} px, the tree shows {room} px"
        assert end <= room + bar.maximum(), f"{col.name} cannot be scrolled to"


def check_results(window) -> None:
    panel = window.results_panel
    assert_fits_the_screen(window)
    assert_cards_readable(window)
    tabs = panel.tabs
    for index in (TAB_LATENCY, TAB_RUNTIMES, TAB_LAYERS, TAB_TRAINING, TAB_HISTORY):
        if not tabs.isTabEnabled(index):
            continue
        tabs.setCurrentIndex(index)
        settle()
        page = tabs.widget(index)
        assert not squeezed(page), squeezed(page)
        for table in page.findChildren(QTableWidget):
            assert_headers_whole(table)
        if index == TAB_LATENCY:
            assert_bars_in_view(panel.latency_chart, panel.latency_chart.bars)
        if index == TAB_LAYERS:
            assert_bars_in_view(panel.layer_chart, [panel.layer_chart.bars])
    assert not squeezed(window), squeezed(window)

    # a layer selected in the tree: the chart names it in its title and still shows every bar
    tabs.setCurrentIndex(TAB_LAYERS)
    last = window.controller.session.last.layers[-1].name
    assert window.tree_panel.select_module(last)
    settle()
    assert panel.layer_chart.selected == last
    assert_bars_in_view(panel.layer_chart, [panel.layer_chart.bars, panel.layer_chart.outline])
    tabs.setCurrentIndex(TAB_LATENCY)
    assert_result_columns_reachable(window, visible=window.target[0] >= 1280)


# -- tests ---------------------------------------------------------------------------------------
def test_every_mode_fits_before_a_run(window):
    for mode in MODES:
        set_mode(window, mode)
        assert_fits_the_screen(window)
        form = window.settings_panel.form
        assert form.width() >= form.minimumSizeHint().width(), f"{mode}: the settings are cut"
        assert not squeezed(window), (mode, squeezed(window))


def test_results_fit_in_every_mode_that_runs_on_the_demo(qtbot, window):
    """fx, dynamic and QAT runs; eager mode refuses the demo's residual additions (test_window covers that)."""
    for mode in ("fx", "dynamic", "qat"):
        set_mode(window, mode)
        if mode == "qat":
            quick_qat(window)
        run(qtbot, window)
        check_results(window)


def test_one_progress_bar_for_the_whole_run(qtbot, window):
    bar, eta = window.progress_bar, window.eta_label
    seen: list[tuple[int, str, str]] = []
    # connected after the window's own slot, so each record is what the user sees for that step
    window.controller.progress.connect(lambda _step: seen.append((bar.value(), bar.text(), eta.text())))
    run(qtbot, window)
    values = [v for v, _, _ in seen]
    assert values == sorted(values), "the bar went backwards"
    assert values[0] <= 0.05 * bar.maximum() and values[-1] >= 0.95 * bar.maximum()
    stages = {text.split(" · ")[0] for _, text, _ in seen if " · " in text}
    assert {"Calibrating", "Evaluating", "Benchmarking"} <= stages
    assert all(text.endswith("%") for _, text, _ in seen[1:])
    assert any("left (whole run)" in e for _, _, e in seen)
    assert bar.text() == "idle" and eta.text() == ""
