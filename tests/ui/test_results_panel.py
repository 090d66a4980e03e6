"""The results panel and its charts, driven by real quantization runs of the demo model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import math

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QFrame, QLabel

from qstudio.core.formatting import fmt_ratio
from qstudio.core.progress import Progress, run
from qstudio.core.recipe import DataSource, ModelSource
from qstudio.ui.charts import AMBER, GREEN, RED, LatencyChart, LayerErrorChart, QatCurve, export_png
from qstudio.ui.controller import SessionController
from qstudio.ui.results_panel import EMPTY_TEXT, TAB_LAYERS, TAB_TRAINING, ResultsPanel


def _quick(c: SessionController) -> None:
    c.session.load(ModelSource("demo"))
    c.session.recipe.settings.calib_batches = 1
    c.session.recipe.benchmark.iters = 3
    c.session.recipe.benchmark.warmup = 1
    c.session.recipe.benchmark.batch_sizes = [1, 4]


@pytest.fixture(scope="module")
def result(qapp):
    c = SessionController()
    _quick(c)
    return run(c.session.run())


@pytest.fixture(scope="module")
def random_result(qapp):
    """A second, different run: dynamic mode calibrated on random data (flagged by the engine)."""
    c = SessionController()
    _quick(c)
    c.session.recipe.mode = "dynamic"
    c.session.recipe.calib = DataSource(kind="random")
    return run(c.session.run())


@pytest.fixture
def panel(qtbot):
    c = SessionController()
    p = ResultsPanel(c)
    qtbot.addWidget(p)
    p.resize(800, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


def card_texts(panel: ResultsPanel, name: str) -> tuple[str, str, str]:
    card = panel.findChild(QFrame, name)
    assert card is not None
    return tuple(card.findChild(QLabel, f"{name}{part}").text() for part in ("Title", "Value", "Detail"))  # type: ignore[return-value]


def test_empty_state_before_any_run(panel):
    assert panel.stack.currentWidget() is panel.empty
    assert panel.empty.text() == EMPTY_TEXT
    assert not panel.latency_chart.isVisible()
    assert not panel.layer_chart.isVisible()


def test_cards_show_the_result_figures(panel, result):
    panel.controller.session.add_result(result)
    assert panel.stack.currentIndex() == 1
    assert panel.result is result

    _, value, detail = card_texts(panel, "accuracyCard")
    fp, q = result.fp32.accuracy, result.int8.accuracy
    assert fp is not None and q is not None  # the demo eval split is labeled
    assert value == f"{fp * 100:.1f}% → {q * 100:.1f}%"
    assert detail == f"{(q - fp) * 100:+.1f} pts\nagreement {result.evaluation.agreement * 100:.1f}%"

    title, value, detail = card_texts(panel, "latencyCard")
    assert title == "Latency  batch 1"
    from qstudio.ui.charts import format_ms

    assert value == f"{format_ms(result.fp32.latency_ms)} → {format_ms(result.int8.latency_ms)} ms"
    # ratios read as everywhere else (qstudio.core.formatting): 1.35x, 4.8x
    speed, deploy = fmt_ratio(result.speedup), fmt_ratio(result.speedup_vs_deploy)
    assert detail == f"{speed} vs FP32 eager\nvs TorchScript FP32 {deploy}"

    _, value, detail = card_texts(panel, "sizeCard")
    assert value == f"{result.fp32.size_mb:.2f} → {result.int8.size_mb:.2f} MB"
    assert detail.strip() == f"{fmt_ratio(result.fp32.size_mb / result.int8.size_mb)} smaller"

    _, value, _ = card_texts(panel, "coverageCard")
    n_q = len(result.coverage.quantized_layers)
    assert value == f"{n_q} of {n_q + len(result.coverage.float_layers)} layers INT8"

    assert not result.random_data
    # a clean run on real data warns of nothing, except timing measured on a machine too busy to trust it (and
    # then a slowdown read off those same untrustworthy figures)
    unstable = result.timing is not None and not result.timing.stable
    allowed = ("UNRELIABLE TIMING", "INT8 IS SLOWER") if unstable else ()
    assert all(w.startswith(allowed) for w in result.warnings), result.warnings
    assert panel.banner.isHidden() == (not result.warnings)
    assert panel.cards["accuracyCard"].property("warn") is False


def test_latency_chart_has_three_series_with_median_heights(panel, result):
    panel.controller.session.add_result(result)
    chart = panel.findChild(LatencyChart, "latencyChart")
    assert chart is panel.latency_chart
    assert len(chart.bars) == 3
    expected = [result.fp32.latency, result.fp32_deploy, result.int8.latency]
    for bar, whisker, stats in zip(chart.bars, chart.whiskers, expected, strict=True):
        stats = sorted(stats, key=lambda s: s.batch_size)
        assert [s.batch_size for s in stats] == [1, 4]
        np.testing.assert_allclose(bar.opts["height"], [s.median_ms for s in stats])
        np.testing.assert_allclose(whisker.opts["y"] + whisker.opts["top"], [max(s.p90_ms, s.median_ms) for s in stats])
    assert [b.name() for b in chart.bars] == ["FP32 eager", "FP32 TorchScript (frozen)", "INT8"]
    ticks = chart.getAxis("bottom")._tickLevels[0]
    assert [t[1] for t in ticks] == ["batch 1", "batch 4"]
    assert panel.latency_table.rowCount() == 2


def test_layer_chart_bars_follow_the_result_order(panel, result):
    panel.controller.session.add_result(result)
    chart = panel.findChild(LayerErrorChart, "layerErrorChart")
    assert chart is panel.layer_chart
    assert len(result.layers) > 3
    assert chart.names[: len(result.layers)] == [e.name for e in result.layers]
    heights = chart.heights()
    assert len(heights) == len(result.layers)
    for h, e in zip(heights, result.layers, strict=True):
        assert math.isfinite(e.activation_sqnr_db)
        assert h == pytest.approx(e.activation_sqnr_db)
    assert heights == sorted(heights)  # worst (lowest SQNR) on the left
    colours = [b.color().name() for b in chart.bars._brushes]
    assert colours == [(RED if h < 20 else AMBER if h < 30 else GREEN) for h in heights]  # 30 dB itself is good
    # the sortable table lists the same layers in the same order
    assert [panel.layer_table.item(r, 1).text() for r in range(panel.layer_table.rowCount())] == [
        e.name for e in result.layers
    ]


def test_clicking_a_bar_emits_its_layer_name(panel, result, qtbot):
    panel.controller.session.add_result(result)
    chart = panel.layer_chart
    name = result.layers[2].name
    # the handler a mouse click calls, with that bar's x
    with qtbot.waitSignal(panel.layerClicked, timeout=1000) as blocker:
        chart.click_at(chart.bar_x(name))
    assert blocker.args == [name]
    assert chart.selected == name and name in chart.getPlotItem().titleLabel.text

    # a real mouse click on the viewport, at the bar's mapped position
    panel.tabs.setCurrentIndex(TAB_LAYERS)
    qtbot.waitUntil(chart.isVisible)
    target = result.layers[0].name
    vb = chart.getPlotItem().getViewBox()
    scene_point = vb.mapViewToScene(QPointF(chart.bar_x(target), chart.values[0] / 2))
    pos = chart.mapFromScene(scene_point)
    with qtbot.waitSignal(panel.layerClicked, timeout=1000) as blocker:
        qtbot.mouseClick(chart.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [target]
    selected = panel.layer_table.selectionModel().selectedRows(1)
    assert [i.data() for i in selected] == [target]


def test_highlight_layer_outlines_without_emitting(panel, result, qtbot):
    panel.controller.session.add_result(result)
    name = result.layers[-1].name
    with qtbot.assertNotEmitted(panel.layerClicked):
        panel.highlight_layer(name)
    chart = panel.layer_chart
    assert chart.outline.isVisible()
    assert chart.outline.opts["x"][0] == chart.bar_x(name)
    assert [i.data() for i in panel.layer_table.selectionModel().selectedRows(1)] == [name]
    panel.highlight_layer(None)
    assert not chart.outline.isVisible()


def test_infinite_sqnr_is_capped_with_a_label(qapp, result):
    chart = LayerErrorChart()
    perfect = dataclasses.replace(result.layers[-1], activation_sqnr_db=math.inf)
    layers = [*result.layers[:-1], perfect]
    chart.set_layers(layers, [])
    finite = [
        v
        for e in result.layers
        for v in (e.activation_sqnr_db, e.weight_sqnr_db)
        if v is not None and math.isfinite(v) and e is not result.layers[-1]
    ]
    assert chart.heights()[-1] == pytest.approx(max(finite) + 10)
    labels = [t for t in chart._inf_labels if t.isVisible()]
    assert [t.toPlainText() for t in labels] == ["∞"]
    chart.deleteLater()


def test_keep_worst_emits_the_k_worst_names(panel, result, qtbot):
    panel.controller.session.add_result(result)
    spin, button = panel.skip_spin, panel.skip_button
    assert spin.objectName() == "skipWorstSpin" and button.objectName() == "skipWorstButton"
    assert spin.maximum() == len(result.layers)
    spin.setValue(3)
    with qtbot.waitSignal(panel.keepWorstInFloat, timeout=1000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args == [[e.name for e in result.layers[:3]]]
    panel.controller.busyChanged.emit(True)
    assert not button.isEnabled()
    panel.controller.busyChanged.emit(False)
    assert button.isEnabled()


def test_second_run_adds_a_history_row_and_compares(panel, result, random_result):
    session = panel.controller.session
    session.add_result(result)
    table = panel.history_table
    assert table.objectName() == "historyTable"
    assert table.rowCount() == 1
    session.add_result(random_result)
    assert table.rowCount() == 2
    assert panel.result is random_result
    row = [table.item(1, c).text() for c in range(table.columnCount())]
    assert row[:3] == ["2", "dynamic", random_result.recipe.settings.backend]
    assert row[3] == f"agree {random_result.evaluation.agreement * 100:.1f}%"  # random data has no labels
    assert row[7] == str(len(random_result.skipped))
    assert [table.item(0, c).text() for c in (1, 3)] == ["fx", f"{result.int8.accuracy * 100:.1f}%"]

    table.selectRow(0)  # one row: that run's charts
    assert panel.result is result
    assert panel.layer_chart.names[: len(result.layers)] == [e.name for e in result.layers]
    table.selectAll()  # two rows: side-by-side comparison
    text = panel.comparison.text()
    assert "run #1" in text and "run #2" in text and "dynamic" in text


def test_random_data_result_shows_the_warnings_banner(panel, random_result):
    assert random_result.random_data
    panel.controller.session.add_result(random_result)
    banner = panel.findChild(QLabel, "warningsBanner")
    assert banner is panel.banner
    assert banner.isVisibleTo(panel)
    assert "RANDOM DATA" in banner.text()
    for w in random_result.warnings:
        assert w in banner.text()
    assert panel.cards["accuracyCard"].property("warn") is True
    title, value, _ = card_texts(panel, "accuracyCard")
    assert title == "Agreement with FP32"
    assert value == f"{random_result.evaluation.agreement * 100:.1f}%"
    assert not panel.tabs.isTabEnabled(TAB_TRAINING)  # not a QAT run


def test_qat_curve_takes_train_progress(qtbot):
    curve = QatCurve()
    qtbot.addWidget(curve)
    assert curve.objectName() == "qatCurve"
    assert not curve.add_progress(Progress("calibrate", 1, 4))
    assert not curve.add_progress(Progress("train", 0, 4))  # the start marker carries no metrics
    losses = [2.0, 1.5, 1.1, 0.9]
    for i, loss in enumerate(losses):
        assert curve.add_progress(Progress("train", i + 1, 4, "epoch 1/1", {"loss": loss}))
    assert curve.add_progress(
        Progress(
            "train", 4, 4, "epoch 1 done", {"epoch": 1.0, "loss": 1.4, "train_accuracy": 0.5, "eval_accuracy": 0.6}
        )
    )
    x, y = curve.loss.getData()
    assert list(x) == [1, 2, 3, 4] and list(y) == losses
    assert list(curve.train_acc.getData()[1]) == [50.0]
    assert list(curve.eval_acc.getData()[1]) == [60.0]
    curve.reset()
    assert curve.points == 0


def test_panel_feeds_live_training_to_the_curve(panel):
    c = panel.controller
    c.busyChanged.emit(True)
    c.progress.emit(Progress("train", 0, 2))
    c.progress.emit(Progress("train", 1, 2, "epoch 1/1", {"loss": 0.7}))
    c.progress.emit(Progress("train", 2, 2, "epoch 1/1", {"loss": 0.5}))
    c.progress.emit(Progress("train", 2, 2, "epoch 1 done", {"epoch": 1.0, "loss": 0.6, "train_accuracy": 0.8}))
    c.progress.emit(Progress("evaluate", 1, 1))
    assert panel.stack.currentIndex() == 1 and panel.tabs.currentIndex() == TAB_TRAINING
    assert list(panel.qat_curve.loss.getData()[1]) == [0.7, 0.5]
    assert panel.training_table.rowCount() == 1
    assert not panel.cards_box.isVisibleTo(panel)  # no result to summarise yet


def test_export_png(panel, result, tmp_path):
    panel.controller.session.add_result(result)
    path = export_png(panel.latency_chart, tmp_path / "latency.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_banner_shows_critical_verdicts_first_in_red():
    """A run whose INT8 outputs collapse (tests/core/models/zoo.py:outlier): the verdict leads the banner, in red."""
    from dialogs import ZOO

    from qstudio.core.loading import load_model
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.recipe import BenchmarkSettings, QuantSettings, Recipe
    from qstudio.ui.results_panel import banner_text, result_warnings

    recipe = Recipe(
        mode="fx",
        calib=DataSource(kind="random"),
        settings=QuantSettings(calib_batches=2),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=20),
    )
    result = run(run_recipe(recipe, load_model(ModelSource(f"{ZOO}:outlier"))))
    warnings = result_warnings(result)
    text = banner_text(result, warnings)
    collapse = {v.code: v for v in result.verdicts}["collapse"].text
    assert text.startswith('<b style="color:#b00020">⚠ INT8 OUTPUTS COLLAPSED') and collapse.split(":")[0] in text
    plain = dataclasses.replace(result, verdicts=[], warnings=["only a note"])
    assert banner_text(plain, result_warnings(plain)).startswith("⚠ ")
