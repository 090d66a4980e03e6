"""The real window, driven the way a user (and a user's CI) drives it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QComboBox, QFileDialog, QProgressBar, QPushButton, QTreeView

from qstudio.ui import create_main_window

FAST = ["--calib-batches", "2", "--iters", "3"]


@pytest.fixture
def window(qtbot):
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.controller.wait(30000)


def set_mode(window, mode: str) -> None:
    combo = window.findChild(QComboBox, "modeCombo")
    combo.setCurrentIndex(combo.findData(mode))
    assert window.controller.session.recipe.mode == mode


def run_to_end(qtbot, window, timeout=240_000):
    with qtbot.waitSignal(window.runFinished, timeout=timeout) as blocker:
        window.findChild(QPushButton, "runButton").click()
    return blocker.args[0]


def test_stable_object_names(window):
    from pyqtgraph import PlotWidget

    assert window.findChild(QTreeView, "modelTree").model().rowCount() > 0
    for name in ("modeCombo", "backendCombo"):
        assert window.findChild(QComboBox, name) is not None
    for name in ("runButton", "cancelButton", "exportButton"):
        assert window.findChild(QPushButton, name) is not None
    assert window.findChild(QProgressBar, "progressBar") is not None
    assert isinstance(window.findChild(PlotWidget, "latencyChart"), PlotWidget)
    assert isinstance(window.findChild(PlotWidget, "layerErrorChart"), PlotWidget)


def test_demo_opens_ready_to_run_and_fx_run_finishes(qtbot, window):
    assert window.controller.session.loaded.name == "demo"
    result = run_to_end(qtbot, window)
    assert result.evaluation.int8_accuracy >= result.evaluation.fp32_accuracy - 0.01
    assert window.controller.session.last is result
    assert window.findChild(QPushButton, "exportButton").isEnabled()


@pytest.mark.parametrize("mode", ["dynamic", "qat"])
def test_other_modes_run_to_the_end(qtbot, window, mode):
    set_mode(window, mode)
    if mode == "qat":
        window.controller.session.recipe.qat.epochs = 1
    result = run_to_end(qtbot, window)
    assert result.recipe.mode == mode
    if mode == "qat":
        assert len(result.history) == 1


def test_eager_on_demo_fails_with_a_readable_message_and_keeps_state(qtbot, window):
    set_mode(window, "eager")
    loaded = window.controller.session.loaded
    with qtbot.waitSignal(window.runFailed, timeout=120_000) as blocker:
        window.findChild(QPushButton, "runButton").click()
    message = blocker.args[0]
    assert "out = out + identity" in message and "--mode fx" in message
    qtbot.waitUntil(lambda: window.errors.box is not None and window.errors.box.isVisible())
    assert "identity" in window.errors.box.text()
    assert window.errors.box.detailedText()  # details one click away
    assert window.controller.session.loaded is loaded
    window.errors.box.close()
    set_mode(window, "fx")  # the window keeps working
    run_to_end(qtbot, window)


def test_worker_error_from_bad_data_reaches_the_user(qtbot, window, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((8, 3, 5, 5), np.float32))
    from qstudio.core.recipe import DataSource

    recipe = window.controller.session.recipe
    recipe.calib = DataSource(kind="tensor", path=str(tmp_path / "bad.npy"))
    with qtbot.waitSignal(window.runFailed, timeout=60_000) as blocker:
        window.findChild(QPushButton, "runButton").click()
    assert "shape" in blocker.args[0] and "Fix:" in blocker.args[0]
    assert window.controller.session.loaded is not None and not window.controller.busy
    qtbot.waitUntil(lambda: window.errors.box is not None and window.errors.box.isVisible())
    assert "shape" in window.errors.box.text()


def test_cancel_midway_stops_within_a_batch(qtbot, window):
    window.controller.session.recipe.settings.calib_batches = 12
    seen = []

    def on_progress(step):
        seen.append(step)
        if step.stage == "calibrate" and step.done == 2:
            window.findChild(QPushButton, "cancelButton").click()

    window.controller.progress.connect(on_progress)
    with qtbot.waitSignal(window.runFailed, timeout=120_000) as blocker:
        window.findChild(QPushButton, "runButton").click()
    assert "cancelled" in blocker.args[0]
    calib = [s.done for s in seen if s.stage == "calibrate"]
    assert max(calib) <= 3  # stopped within one batch of the click
    assert window.controller.session.results == []
    assert window.findChild(QPushButton, "runButton").isEnabled()


def test_second_run_while_running_is_refused(qtbot, window):
    window.findChild(QPushButton, "runButton").click()
    assert window.controller.busy
    assert not window.controller.run()  # a second start is refused, never raced
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=240_000)


def test_export_and_reload(qtbot, window, tmp_path, monkeypatch):
    result = run_to_end(qtbot, window)
    out = tmp_path / "demo_int8.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    window.findChild(QPushButton, "exportButton").click()
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=60_000)
    reloaded = torch.jit.load(str(out))
    x = result.check_input
    assert torch.equal(reloaded(x), result.quantized.module(x))


def test_export_failure_keeps_earlier_file(qtbot, window, tmp_path, monkeypatch):
    run_to_end(qtbot, window)
    target = tmp_path / "no_such_folder" / "m.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.findChild(QPushButton, "exportButton").click()
    qtbot.waitUntil(lambda: window.errors.box is not None and window.errors.box.isVisible(), timeout=60_000)
    assert "does not exist" in window.errors.box.text()
    assert window.controller.session.last is not None


def test_event_loop_never_blocks_during_calibration(qtbot, window):
    """A heartbeat timer records the largest gap between its ticks during a real run."""
    window.controller.session.recipe.settings.calib_batches = 8
    gaps: list[tuple[int, str]] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]
    stage = ["start"]
    window.controller.progress.connect(lambda s: stage.__setitem__(0, f"{s.stage} {s.done}/{s.total}"))

    def beat():
        now = clock.elapsed()
        gaps.append((now - last[0], stage[0]))
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    timer.start()
    t0 = time.perf_counter()
    run_to_end(qtbot, window)
    timer.stop()
    largest, where = max(gaps)
    print(
        f"\nlargest event-loop gap during a demo run: {largest} ms (ending at '{where}') over {time.perf_counter() - t0:.1f} s"
    )
    assert largest < 100, sorted(gaps, reverse=True)[:5]


def test_close_while_running_ends_the_thread(qtbot):
    from PySide6.QtCore import QThreadPool

    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    w.findChild(QPushButton, "runButton").click()
    qtbot.waitUntil(lambda: w.progress_bar.value() > 0 or not w.controller.busy, timeout=60_000)
    w.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def test_corrupt_settings_file_is_ignored_with_warning(qtbot, isolated_settings):
    ini = isolated_settings / "qstudio" / "qstudio.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_bytes(b"[window]\ngeometry=@ByteArray(\x00\xff\x00\n\x00garbage[[[")
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    assert w.controller.session.loaded is not None


def test_bad_model_argument_opens_window_with_message(qtbot, tmp_path):
    w = create_main_window([str(tmp_path / "missing.pt"), *FAST])
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.errors.box is not None and w.errors.box.isVisible())
    assert "does not exist" in w.errors.box.text()
    assert w.controller.session.loaded is None


def test_last_recipe_is_persisted_and_reopened(qtbot):
    w = create_main_window([*FAST, "--mode", "dynamic"])
    qtbot.addWidget(w)
    w.close()  # saves the recipe in QSettings
    w2 = create_main_window(FAST)
    qtbot.addWidget(w2)
    assert w2.controller.session.recipe.mode == "fx"
    w2.reopen_last_recipe()
    qtbot.waitUntil(lambda: not w2.controller.busy and w2.controller.session.loaded is not None, timeout=60_000)
    assert w2.controller.session.recipe.mode == "dynamic"
    assert w2.findChild(QComboBox, "modeCombo").currentData() == "dynamic"


def test_recipe_whose_model_fails_keeps_earlier_settings(qtbot, tmp_path):
    from qstudio.core.recipe import ModelSource, Recipe

    w = create_main_window([*FAST, "--mode", "dynamic"])
    qtbot.addWidget(w)
    Recipe(mode="eager", model=ModelSource(str(tmp_path / "gone.pt"))).save(tmp_path / "r.toml")
    w.open_recipe(str(tmp_path / "r.toml"))
    qtbot.waitUntil(lambda: w.errors.box is not None and w.errors.box.isVisible(), timeout=30_000)
    assert "does not exist" in w.errors.box.text()
    assert w.controller.session.recipe.mode == "dynamic"  # the earlier settings are back
    assert w.controller.session.loaded.name == "demo"  # and the model stayed
    assert w.findChild(QComboBox, "modeCombo").currentData() == "dynamic"
