"""The search in the window: Run > Search for the fastest within budget…, live trials, pick one, export it.

Each test starts the window as the ``qstudio`` command does (the demo, quick
benchmark options), opens the search dialog through its action, fills it in
as a user does and presses Search; trials are real runs of the demo model
(real quantization, real timing, TorchScript only: ``runtimes`` unchecked).
The Pareto chart, the trials table and the summary are read from the window;
a trial is picked with the method a click on its point calls, "Use this one"
is pressed, and the session's result is exported through the Export button.
Cancel mid-search keeps the best trial so far and leaves the window usable.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import torch
from dialogs import DialogAnswerer, close_error, idle, run_to_end
from PySide6.QtCore import QPointF
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
)

from qstudio.core.formatting import headline
from qstudio.ui import create_main_window
from qstudio.ui.charts.pareto_chart import ParetoChart
from qstudio.ui.results_panel import TAB_HISTORY, TAB_SEARCH

QUICK = ["--calib-batches", "4", "--iters", "8"]  # the window's options: a trial of the demo in a few seconds
SEARCH_TIMEOUT = 600_000


@pytest.fixture
def window(qtbot):
    w = create_main_window(QUICK)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.controller.wait(60_000)


def search_through_dialog(window, *, trials: int, max_drop: float = 1.0) -> dict:
    """Run > Search for the fastest within budget…: fill in the real dialog and press Search."""
    seen: dict = {}

    def fill(dialog) -> None:
        seen["metric_items"] = dialog.findChild(QComboBox, "searchMetric").count()
        seen["max_drop_default"] = dialog.findChild(QDoubleSpinBox, "searchMaxDrop").value()
        seen["trials_default"] = dialog.findChild(QSpinBox, "searchTrials").value()
        dialog.findChild(QDoubleSpinBox, "searchMaxDrop").setValue(max_drop)
        dialog.findChild(QSpinBox, "searchTrials").setValue(trials)
        dialog.findChild(QDoubleSpinBox, "searchTimeBudget").setValue(0.0)
        dialog.findChild(QComboBox, "searchMetric").setCurrentIndex(0)  # auto
        dialog.findChild(QCheckBox, "searchRuntimes").setChecked(False)  # TorchScript only: quick trials
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()

    answer = DialogAnswerer("searchDialog", fill)
    try:
        action = window.findChild(QAction, "searchAction")
        assert action is not None and action.isEnabled()
        action.trigger()
    finally:
        answer.stop()
    assert answer.seen, "the search dialog never showed"
    return seen


def test_search_pick_a_trial_use_it_and_export(qtbot, window, tmp_path, monkeypatch):
    controller, panel = window.controller, window.results_panel
    trials_seen, bar_texts = [], []
    controller.searchTrial.connect(lambda trial, _result: trials_seen.append(trial.number))
    controller.progress.connect(lambda step: bar_texts.append(window.progress_bar.text()))

    with qtbot.waitSignal(controller.searchFinished, timeout=SEARCH_TIMEOUT) as blocker:
        seen = search_through_dialog(window, trials=4, max_drop=1.0)
        assert controller.busy and panel.tabs.currentIndex() == TAB_SEARCH
    result = blocker.args[0]
    idle(qtbot, window)
    assert seen["max_drop_default"] == 1.0 and seen["trials_default"] == 16 and seen["metric_items"] == 3
    assert window.errors.box is None or not window.errors.box.isVisible(), window.errors.box.text()

    # the search ran 4 real trials, each reported live, and the progress bar followed it
    assert result.stopped == "trials" and len(result.trials) == 4, result.summary()
    assert trials_seen == [0, 1, 2, 3]
    assert any(text.startswith("Searching · ") for text in bar_texts), bar_texts[-3:]
    assert window.progress_bar.text() == "idle"
    log = window.log_view.toPlainText()
    assert "search: 4 trials ran" in log
    assert all(f"trial {n}: " in log for n in range(4)), log[-2000:]

    # the Search tab: the chart has a point per finished trial, the table a row per trial, the summary the best
    tab = panel.search_tab
    assert window.findChild(type(tab), "searchTab") is tab
    chart = window.findChild(ParetoChart, "paretoChart")
    table = window.findChild(QTableWidget, "searchTable")
    summary = window.findChild(QLabel, "searchSummary")
    complete = [i for i, t in enumerate(result.trials) if t.state == "complete"]
    assert complete and sorted(i for i, _x, _y in chart.points) == complete
    assert len(chart.within.data) + len(chart.over.data) == len(complete)
    assert len(chart.frontier.xData) == len(result.pareto)
    assert chart.budget.isVisible() and chart.budget.value() == pytest.approx(100 * result.budget_floor)
    assert table.rowCount() == 4
    assert [table.item(r, 0).text() for r in range(4)] == ["0", "1", "2", "3"]
    best = result.best
    assert best is not None, result.summary()  # the demo's plain run is within one point
    assert f"best is trial {best.number}" in summary.text()
    # the notes that must be seen (unstable speeds, a budget no trial met...) above it in red, the rest in its tooltip
    text = summary.text()
    if result.warnings:
        shown = [text.index(html.escape(headline(w), quote=False)) for w in result.warnings]
        assert shown == sorted(shown) and shown[-1] < text.index("best is trial"), text
        assert text.count("⚠") == len(result.warnings)
        assert all(w in summary.toolTip() for w in result.warnings)  # each whole, where its headline points
    else:
        assert text == result.summary()
    assert all(note in summary.toolTip() for note in result.notes)
    assert table.item(best.number, 0).font().bold()
    assert "best" in table.item(best.number, 7).text()
    assert len(chart.best_ring.data) == 1

    # the winner, measured again, is the session's result: the History lists it
    assert result.final is not None
    assert controller.session.last is result.final
    assert panel.history_table.rowCount() == 1
    assert panel.tabs.isTabEnabled(TAB_HISTORY)
    assert tab.selected == best.number  # the best is selected when the search ends
    assert panel.result is result.final  # its run in the cards and charts

    # a click on another kept trial's point selects it: figures, recipe, and its run in the result views
    other = next((i for i in [*result.pareto, 0] if i != best.number and result.trials[i].result is not None), None)
    if other is None:  # the best is the only point kept: it is then also trial 0 (the plain run)
        other = best.number
    _i, x, y = next(p for p in chart.points if p[0] == other)
    assert chart.click_at(x, y) == other
    assert tab.selected == other and chart.selected == other
    trial = result.trials[other]
    assert table.selectionModel().selectedRows()[0].row() == other
    recipe_view = window.findChild(QPlainTextEdit, "trialRecipe")
    assert recipe_view.isReadOnly() and recipe_view.toPlainText() == trial.recipe.to_toml()
    assert trial.describe() in window.findChild(QLabel, "trialDetails").text()
    shown = tab.result_for(trial)
    assert panel.result is shown

    # the method a click calls selects too (by index); then Use this one makes it the session's result
    tab.select_trial(other)
    button = window.findChild(QPushButton, "useTrialButton")
    assert button.isEnabled() and button.text() == "Use this one"
    button.click()
    assert controller.session.last is shown
    assert panel.history_table.rowCount() == (1 if shown is result.final else 2)
    assert f"trial {other} (" in window.log_view.toPlainText()

    # File > Export INT8 model exports it (through the window's export button)
    out = tmp_path / "searched_int8.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    export = window.findChild(QPushButton, "exportButton")
    assert export.isEnabled()
    export.click()
    qtbot.waitUntil(lambda: out.exists() and not controller.busy, timeout=120_000)
    assert window.errors.box is None or not window.errors.box.isVisible()
    reloaded = torch.jit.load(str(out))
    x_in = shown.check_input
    assert torch.equal(reloaded(x_in), shown.quantized.module(x_in))


@pytest.mark.slow  # a search and then a run: CI's fast set keeps the other search journeys
def test_replay_a_trial_whose_model_was_not_kept(qtbot, window):
    """A dominated trial's model is let go: its button replays the recipe as a normal run."""
    controller, tab = window.controller, window.results_panel.search_tab
    with qtbot.waitSignal(controller.searchFinished, timeout=SEARCH_TIMEOUT) as blocker:
        search_through_dialog(window, trials=5, max_drop=1.0)
    result = blocker.args[0]
    idle(qtbot, window)
    dropped = [i for i, t in enumerate(result.trials) if t.state == "complete" and tab.result_for(t) is None]
    if not dropped:
        pytest.skip(f"every trial of this search was kept (all on the frontier): {result.summary()}")
    index = dropped[0]
    trial = result.trials[index]
    tab.select_trial(index)
    button = window.findChild(QPushButton, "useTrialButton")
    assert button.text() == "Replay this trial"
    runs_before = len(controller.session.results)
    with qtbot.waitSignal(controller.runFinished, timeout=240_000) as run_blocker:
        button.click()
    replayed = run_blocker.args[0]
    recipe = controller.session.recipe
    assert recipe.settings.skip == trial.recipe.settings.skip
    assert recipe.settings.observer == trial.recipe.settings.observer
    assert recipe.mode == trial.recipe.mode and recipe.deploy.target == trial.recipe.deploy.target
    assert replayed.recipe.settings.skip == trial.recipe.settings.skip
    assert len(controller.session.results) == runs_before + 1
    assert f"replaying trial {index}" in window.log_view.toPlainText()


def test_cancel_mid_search_keeps_the_best_so_far_and_the_window_stays_usable(qtbot, window):
    controller, panel = window.controller, window.results_panel
    finished_trials: list[int] = []
    controller.searchTrial.connect(lambda trial, _result: finished_trials.append(trial.number))
    with qtbot.waitSignal(controller.searchFinished, timeout=SEARCH_TIMEOUT) as blocker:
        search_through_dialog(window, trials=16)
        qtbot.waitUntil(lambda: bool(finished_trials), timeout=SEARCH_TIMEOUT)
        cancel = window.findChild(QPushButton, "cancelButton")
        assert cancel.isEnabled()
        cancel.click()
        assert "the best configuration so far is kept" in window.log_view.toPlainText()
    result = blocker.args[0]
    idle(qtbot, window)
    assert result.stopped == "cancelled"
    assert 1 <= len(result.trials) < 16
    assert all(t.state != "running" for t in result.trials)
    best = result.best or result.closest
    assert best is not None
    assert window.errors.box is None or not window.errors.box.isVisible()  # a cancel is no error
    summary = panel.search_tab.summary.text()
    assert "(cancelled)" in summary and f"trial {best.number}" in summary
    assert panel.search_table.rowCount() == len(result.trials)
    if result.best is not None:  # the best so far is the session's result, ready to export
        assert controller.session.last is result.best.result
    assert "cancelled, the best so far is kept" in window.log_view.toPlainText()

    # the window is usable again: a normal run goes to the end, and another search can start
    assert window.findChild(QPushButton, "runButton").isEnabled()
    assert window.findChild(QAction, "searchAction").isEnabled()
    assert window.progress_bar.text() == "idle"
    run = run_to_end(qtbot, window)
    assert controller.session.last is run


def test_a_search_while_a_run_is_going_is_refused_visibly(qtbot, window):
    """A search while another task runs is refused visibly, and the running work is not disturbed."""
    controller = window.controller
    with qtbot.waitSignal(controller.runFinished, timeout=240_000):
        window.findChild(QPushButton, "runButton").click()
        assert controller.busy
        assert not window.findChild(QAction, "searchAction").isEnabled()
        window.open_search_dialog()  # e.g. through the shortcut: refused with a message, no dialog
        assert window.errors.box is not None and "still running" in window.errors.box.text()
        assert not any(w.objectName() == "searchDialog" and w.isVisible() for w in QApplication.topLevelWidgets())
    close_error(window)
    idle(qtbot, window)


@pytest.mark.parametrize(
    "size",
    [(1024, 700), pytest.param((1280, 800), marks=pytest.mark.slow)],  # the smaller screen is the harder one
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_the_search_tab_fits_the_screen(qtbot, window, size, tmp_path):
    """After a search the window still fits; the tab's labels, buttons and table headers are whole."""
    from test_layout import assert_headers_whole, squeezed

    window.resize(*size)
    with qtbot.waitSignal(window.controller.searchFinished, timeout=SEARCH_TIMEOUT):
        search_through_dialog(window, trials=3)
    idle(qtbot, window)
    for _ in range(3):
        QApplication.processEvents()
    assert window.width() <= size[0] and window.height() <= size[1]
    assert window.minimumSizeHint().width() <= size[0] and window.minimumSizeHint().height() <= size[1]
    tab = window.results_panel.search_tab
    assert tab.isVisible()
    assert not squeezed(window), squeezed(window)  # the six result tabs fit too: no scroll arrows
    assert_headers_whole(tab.table)
    chart = tab.chart
    vb = chart.getPlotItem().getViewBox()
    box = chart.mapFromScene(vb.sceneBoundingRect()).boundingRect()
    assert box.height() >= 40, f"the Pareto plot is {box.height()} px tall"
    for _i, x, y in chart.points:  # every point inside the plot area
        p = chart.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
        assert box.adjusted(-1, -1, 1, 1).contains(p), (x, y, box)
    legend = chart.getPlotItem().legend
    assert legend.rowCount == 1, "the legend takes one row"
    window.grab().save(str(Path(tmp_path) / f"search_{size[0]}.png"))
