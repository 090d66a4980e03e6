"""Runs in the window (the run dock): Run, Cancel, progress, and every way a run can fail.

Each test presses the real Run button on the demo (or a small real model) and waits
for the window's own signals.  A failure must reach the user as an error box naming
the problem and the fix, keep what the user had (``Snapshot``) and leave the window
able to run again; a cancel is no error.  Faults this machine cannot produce (a
backend its CPU lacks) are taken away at torch's boundary, each saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from dialogs import (
    FAST,
    ZOO,
    Snapshot,
    close_error,
    error_shown,
    idle,
    open_with_dialog,
    run_to_end,
    run_to_failure,
    set_mode,
    still_usable,
)
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QComboBox, QFileDialog, QLineEdit, QPushButton

from qstudio.core.recipe import Recipe
from qstudio.ui import create_main_window


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


def test_fx_trace_failure_on_data_dependent_control_flow_is_explained(qtbot, window):
    open_with_dialog(window, f"{ZOO}:gated_cnn")  # `if x.mean() > 0:` inside forward
    qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
    idle(qtbot, window)
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    assert "trace" in problem.lower() and "gate" in problem, problem
    assert "'gate' in float" in fix and "tree" in fix, fix
    assert message.startswith(problem)
    before.assert_kept(window)
    close_error(window)
    window.tree_panel.set_keep_float(["gate"], True)  # the fix the message names: tick 'gate' in the tree
    result = run_to_end(qtbot, window)
    assert "gate" in result.coverage.float_layers or any(n.startswith("gate") for n in result.coverage.float_layers)


def _calib(tmp_path: Path, case: str) -> tuple[Path, Path | None, list[str]]:
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    labels = None
    if case == "nan":
        x[3, 0, 5, 5] = np.nan
        words = ["NaN"]
    elif case == "inf":
        x[1, 0, 0, 0] = np.inf
        words = ["inf"]
    elif case == "wrong-shape":
        x = x[:, :, :5, :5]
        words = ["shape"]
    elif case == "empty":
        x = x[:0]
        words = ["empty"]
    elif case == "wrong-dtype":
        x = np.array(["a"] * 16)
        words = ["dtype"]
    else:  # labels of the wrong length
        labels = tmp_path / "labels.npy"
        np.save(labels, np.zeros(5, np.int64))
        words = ["labels", "5"]
    path = tmp_path / f"calib-{case}.npy"
    np.save(path, x)
    return path, labels, words


@pytest.mark.parametrize("case", ["nan", "inf", "wrong-shape", "empty", "wrong-dtype", "labels-length"])
def test_bad_calibration_file_chosen_in_the_picker_fails_the_run_with_the_reason(
    qtbot, window, tmp_path, monkeypatch, case
):
    path, labels, words = _calib(tmp_path, case)
    full = case == "nan"  # one case also proves an earlier result survives and a later run works (time)
    first = run_to_end(qtbot, window) if full else None  # an earlier result that must survive
    picker = window.settings_panel.calibPicker
    kind = picker.findChild(QComboBox, "kindCombo")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    index = kind.findData("tensor")
    kind.setCurrentIndex(index)
    kind.activated.emit(index)  # the user's pick opens the file dialog
    if labels is not None:
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(labels), ""))
        picker.findChild(QPushButton, "labelsButton").click()
    assert window.controller.session.recipe.calib.path == str(path)
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word.lower() in problem.lower(), problem
    assert path.name in problem and fix.startswith("Fix: ")
    assert "Unexpected error" not in problem
    assert message.startswith(problem)
    before.assert_kept(window)
    assert window.controller.session.results == ([first] if full else [])
    if not full:
        return
    close_error(window)
    index = kind.findData("demo")  # back to good data: the window runs again
    kind.setCurrentIndex(index)
    kind.activated.emit(index)
    run_to_end(qtbot, window)


def test_backend_this_cpu_lacks_is_refused_with_the_ones_that_work(qtbot, window, tmp_path, monkeypatch):
    # Every quantized backend is supported on this machine, so one is taken away at torch's boundary:
    # torch.backends.quantized.supported_engines is what PyTorch reports for the CPU and build.
    real = list(torch.backends.quantized.supported_engines)
    monkeypatch.setattr(
        type(torch.backends.quantized), "supported_engines", property(lambda self: [e for e in real if e != "qnnpack"])
    )
    recipe_path = tmp_path / "arm.toml"
    recipe = Recipe.from_toml(window.controller.session.recipe.to_toml())
    recipe.settings.backend = "qnnpack"  # a recipe made on an ARM machine
    recipe.save(recipe_path)
    window.open_recipe(str(recipe_path))
    idle(qtbot, window)
    combo = window.findChild(QComboBox, "backendCombo")
    assert combo.currentData() == "qnnpack" and "not available here" in combo.currentText()
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    assert "qnnpack" in problem and "not supported" in problem, problem
    assert "x86" in fix
    assert message.startswith(problem)
    before.assert_kept(window)
    close_error(window)
    combo.setCurrentIndex(combo.findData("x86"))
    run_to_end(qtbot, window)


def test_huge_batch_size_gives_a_memory_message_and_never_freezes_the_window(qtbot, window):
    """Out of memory, simulated by a batch size no machine can hold (10M demo images, ~37 TB per batch)."""
    edit = window.findChild(QLineEdit, "benchBatchSizesEdit")
    edit.setText("1,10000000")  # typed by the user
    edit.editingFinished.emit()
    assert window.controller.session.recipe.benchmark.batch_sizes == [1, 10_000_000]
    first_results = list(window.controller.session.results)
    before = Snapshot.of(window)

    gaps: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def beat() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(beat)
    heartbeat.start()
    try:
        message = run_to_failure(qtbot, window, timeout=30_000)
    finally:
        heartbeat.stop()
    problem, fix = error_shown(qtbot, window)
    assert "memory" in problem.lower() and "10000000" in problem, problem
    assert "batch_sizes" in fix, fix
    assert "Unexpected error" not in message
    assert max(gaps, default=0) < 500, sorted(gaps, reverse=True)[:5]  # the window never froze
    before.assert_kept(window)
    assert window.controller.session.results == first_results
    close_error(window)
    edit.setText("1")  # the fix the message names
    edit.editingFinished.emit()
    run_to_end(qtbot, window)


def test_model_that_raises_mid_run_reaches_the_user_and_the_window_recovers(qtbot, window, tmp_path):
    factory = tmp_path / "flaky.py"
    factory.write_text(
        "import torch\n\n"
        "class Flaky(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(784, 10)\n"
        "        self.calls = 0\n\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 3:\n"
        "            raise RuntimeError('sensor buffer overflow in Flaky.forward')\n"
        "        return self.fc(x.flatten(1))\n\n"
        "def build():\n    return Flaky()\n\n"
        "build.input_shape = [1, 1, 28, 28]\n"
    )
    open_with_dialog(window, f"{factory}:build")
    qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
    idle(qtbot, window)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(
        window.findChild(QComboBox, "modeCombo").findData("dynamic")  # runs the Python forward, no trace
    )
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, _fix = error_shown(qtbot, window)
    assert "sensor buffer overflow" in problem, problem
    assert "flaky.py" in problem, problem  # blames the model's own line, not qstudio
    assert message.startswith(problem)
    assert window.errors.box.detailedText()  # the traceback one click away
    before.assert_kept(window)
    assert window.findChild(QPushButton, "runButton").isEnabled()
    close_error(window)
    window.act_open_demo.trigger()
    qtbot.waitUntil(lambda: window.controller.session.loaded.name == "demo", timeout=30_000)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(window.findChild(QComboBox, "modeCombo").findData("fx"))
    still_usable(qtbot, window)


def _cancel_when(window, stage_test: Callable[[object], bool]) -> list:
    seen: list = []

    def on_progress(step) -> None:
        seen.append(step)
        if stage_test(step) and window.controller.busy and not getattr(on_progress, "done", False):
            on_progress.done = True
            window.findChild(QPushButton, "cancelButton").click()

    window.controller.progress.connect(on_progress)
    return seen


def test_cancel_during_qat_training(qtbot, window):
    combo = window.findChild(QComboBox, "modeCombo")
    combo.setCurrentIndex(combo.findData("qat"))
    window.controller.session.recipe.qat.epochs = 5
    before = Snapshot.of(window)
    seen = _cancel_when(window, lambda s: s.stage == "train" and s.done >= 2)
    message = run_to_failure(qtbot, window)
    assert "cancelled" in message and "nothing was changed" in message
    assert not window.controller.session.running  # the cancelled run is closed now, not whenever the GC runs
    train = [s.done for s in seen if s.stage == "train"]
    total = max(s.total for s in seen if s.stage == "train")
    assert max(train) < total // 2  # stopped long before the five epochs were done
    assert window.errors.box is None  # a cancel is not an error
    before.assert_kept(window)
    assert window.controller.session.results == []
    combo.setCurrentIndex(combo.findData("fx"))
    run_to_end(qtbot, window)


def test_cancel_during_benchmarking(qtbot, window):
    window.controller.session.recipe.benchmark.iters = 100_000  # minutes of timing if not stopped
    before = Snapshot.of(window)
    seen = _cancel_when(window, lambda s: s.stage.startswith("benchmark") and s.done >= 1)
    message = run_to_failure(qtbot, window, timeout=60_000)
    assert "cancelled" in message
    assert not window.controller.session.running
    assert any(s.stage.startswith("benchmark") for s in seen)
    assert window.errors.box is None
    before.assert_kept(window)
    assert window.controller.session.results == []
    window.controller.session.recipe.benchmark.iters = 3
    still_usable(qtbot, window)


def test_second_run_while_one_runs_is_refused_with_a_message(qtbot, window):
    """The Run button is disabled while busy; F5 or a script calling run() again is refused, never raced."""
    finished: list = []
    window.runFinished.connect(finished.append)
    window.findChild(QPushButton, "runButton").click()
    assert window.controller.busy and not window.findChild(QPushButton, "runButton").isEnabled()
    first_worker = window.controller.worker
    assert not window.controller.run()  # what F5 / Ctrl+R call (MainWindow.run): refused, never raced
    problem, fix = error_shown(qtbot, window)
    assert "still running" in problem and "Cancel" in fix
    assert window.controller.worker is first_worker
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=120_000)
    assert len(finished) == 1 and window.controller.session.results == finished
