"""A new user's journeys: start the window, open a model through the File menu, press Run, export.

Nothing is preloaded at start-up: each test starts the window the way the
``qstudio`` command does (``create_main_window([])``, the demo), then opens
its model only through the window's public surface (the File actions and
their dialogs, drag and drop, recent files, recipes) and keeps every setting
as the window chose it.  Each journey must end in a result or in a visible
error with the window usable again, within a bounded time: a hang fails the
test instead of blocking the suite.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dialogs import (
    DialogAnswerer,
    close_error,
    error_shown,
    idle,
    open_torchvision,
    open_with_dialog,
    pick_data_file,
    press_button,
    run_to_end,
    run_to_failure,
)
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QPushButton

from qstudio.ui import create_main_window

USER_CNN = """
import torch
from torch import nn


class Net(nn.Module):
    # a user's own 3-channel classifier: no qstudio attributes anywhere
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def build():
    return Net()
"""

TOKEN_ENCODER = """
import torch
from torch import nn


class Encoder(nn.Module):
    # a plain token-id encoder, as a user wraps a transformer: forward(input_ids), nothing qstudio-specific
    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(500, 32)
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        self.pooler = nn.Linear(32, 32)

    def forward(self, input_ids):
        hidden = self.layer(self.embeddings(input_ids))
        return torch.tanh(self.pooler(hidden.mean(dim=1)))


def build():
    return Encoder()
"""

FAULTY = """
import os

import torch
from torch import nn

TRIGGER = {trigger!r}


class Faulty(nn.Module):
    # runs normally until the test creates TRIGGER, then raises from inside forward
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if os.path.exists(TRIGGER):
            {raise_line}
        x = self.relu(self.conv(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build():
    return Faulty()


build.input_shape = [1, 3, 16, 16]
"""

RAISES = {
    "RuntimeError": 'raise RuntimeError("the model broke")',
    "AssertionError": 'assert False, "a model assertion"',
    "TypeError": 'raise TypeError("bad argument in the model")',
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "SystemExit": "raise SystemExit(3)",
}


@pytest.fixture
def window(qtbot):
    """The window exactly as ``qstudio`` with no arguments starts it: the demo, default settings."""
    w = create_main_window([])
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.controller.wait(30000)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def loaded_name(window) -> str | None:
    loaded = window.controller.session.loaded
    return loaded.name if loaded is not None else None


def wait_loaded(qtbot, window, name: str, timeout=60_000) -> None:
    qtbot.waitUntil(lambda: loaded_name(window) == name and not window.controller.busy, timeout=timeout)
    assert window.errors.box is None or not window.errors.box.isVisible(), window.errors.box.text()


def export_through_button(qtbot, window, monkeypatch, out: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    button = window.findChild(QPushButton, "exportButton")
    assert button.isEnabled()
    button.click()
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=120_000)
    assert window.errors.box is None or not window.errors.box.isVisible()


def assert_usable(window) -> None:
    assert not window.controller.busy
    assert window.findChild(QPushButton, "runButton").isEnabled()
    assert window.act_open.isEnabled() and window.act_open_tv.isEnabled()


# ----------------------------------------------------------------------------- journeys that end in a result


def test_demo_run_and_export(qtbot, window, tmp_path, monkeypatch):
    assert loaded_name(window) == "demo"
    result = run_to_end(qtbot, window)
    assert result.evaluation.int8_accuracy >= result.evaluation.fp32_accuracy - 0.02
    export_through_button(qtbot, window, monkeypatch, tmp_path / "demo.pt")
    assert torch.jit.load(str(tmp_path / "demo.pt")) is not None


def test_torchvision_resnet18_from_the_file_menu_runs_without_touching_a_setting(qtbot, window, tmp_path, monkeypatch):
    open_torchvision(window, "resnet18")
    started = time.monotonic()
    wait_loaded(qtbot, window, "resnet18")
    recipe = window.controller.session.recipe
    # settings followed the model: no demo shape, no demo data
    assert recipe.input_shape in (None, [1, 3, 224, 224])
    assert recipe.calib.kind == "random" and recipe.eval is None
    assert "[1, 3, 224, 224]" in window.model_label.text()
    assert "RANDOM" in window.log_view.toPlainText()
    result = run_to_end(qtbot, window, timeout=300_000)
    print(f"\nresnet18: open -> result {time.monotonic() - started:.1f} s")
    assert result.model_name == "resnet18" and result.random_data
    assert result.coverage.quantized_layers
    export_through_button(qtbot, window, monkeypatch, tmp_path / "resnet18.pt")


def test_users_state_dict_with_factory_three_channels(qtbot, window, tmp_path, monkeypatch):
    factory = write(tmp_path / "model.py", USER_CNN)
    namespace: dict = {}
    exec(compile(factory.read_text(), str(factory), "exec"), namespace)
    weights = tmp_path / "weights.pt"
    torch.save(namespace["build"]().state_dict(), weights)

    open_with_dialog(window, str(weights), f"{factory}:build")
    started = time.monotonic()
    wait_loaded(qtbot, window, "weights.pt")
    loaded = window.controller.session.loaded
    assert loaded.input_shape is not None and loaded.input_shape[:2] == [1, 3]
    assert "Conv2d" in loaded.input_origin
    result = run_to_end(qtbot, window)
    print(f"\n3-channel user model: open -> result {time.monotonic() - started:.1f} s")
    assert result.coverage.quantized_layers
    export_through_button(qtbot, window, monkeypatch, tmp_path / "user.pt")


def test_users_own_images_set_the_input_shape(qtbot, window, tmp_path, monkeypatch):
    """The data the user picks decides the shape the model was only guessed at."""
    factory = write(tmp_path / "model.py", USER_CNN)
    open_with_dialog(window, f"{factory}:build")
    wait_loaded(qtbot, window, "model.py:build")
    images = np.random.default_rng(0).standard_normal((24, 3, 48, 48)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    pick_data_file(window.settings_panel.calibPicker, tmp_path / "images.npy", monkeypatch)
    assert window.controller.session.recipe.calib.kind == "tensor"
    result = run_to_end(qtbot, window)
    assert result.example.shape[1:] == (3, 48, 48)
    assert not result.random_data


def test_token_id_factory_with_int64_data(qtbot, window, tmp_path, monkeypatch):
    factory = write(tmp_path / "encoder.py", TOKEN_ENCODER)
    open_with_dialog(window, f"{factory}:build")
    wait_loaded(qtbot, window, "encoder.py:build")
    session = window.controller.session
    assert session.loaded.input_dtype == "int64"
    assert session.recipe.mode == "dynamic"  # the model takes token ids: static modes need float inputs
    ids = np.random.default_rng(0).integers(0, 500, size=(32, 12), dtype=np.int64)
    np.save(tmp_path / "ids.npy", ids)
    pick_data_file(window.settings_panel.calibPicker, tmp_path / "ids.npy", monkeypatch)
    result = run_to_end(qtbot, window)
    assert result.recipe.mode == "dynamic" and result.coverage.quantized_layers
    assert result.example.dtype == torch.int64


def test_trusted_pickled_module(qtbot, window, tmp_path):
    path = tmp_path / "whole.pt"
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    torch.save(model, path)
    answer = DialogAnswerer("trustBox", press_button("I trust this file"))
    try:
        open_with_dialog(window, str(path))
        wait_loaded(qtbot, window, "whole.pt")
    finally:
        answer.stop()
    assert answer.seen and answer.seen[0]["default"] == "Cancel"
    result = run_to_end(qtbot, window)
    assert result.coverage.quantized_layers


def test_drop_a_factory_then_reopen_the_demo_from_recent(qtbot, window, tmp_path):
    factory = write(tmp_path / "model.py", USER_CNN)
    # dropping a .py file asks which function builds the model? no: the spec must name it; a dropped weights
    # file or factory spec opens like File > Open
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "weights.pt"))])
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "weights.pt")
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    # a state_dict without its factory: a clear error, the demo kept
    problem, fix = error_shown(qtbot, window)
    assert "factory" in (problem + fix).lower()
    assert loaded_name(window) == "demo"
    close_error(window)
    idle(qtbot, window)

    open_with_dialog(window, f"{factory}:build")
    wait_loaded(qtbot, window, "model.py:build")
    recent = [a for a in window.recent_menu.actions() if a.text() == "demo"]
    assert recent, [a.text() for a in window.recent_menu.actions()]
    recent[0].trigger()
    wait_loaded(qtbot, window, "demo")
    recipe = window.controller.session.recipe
    assert recipe.calib.kind == "demo"  # back on the demo: its own data again
    assert "[1, 1, 32, 32]" in window.model_label.text()
    run_to_end(qtbot, window)


def test_recipe_from_another_model_then_open_a_new_model(qtbot, window, tmp_path):
    """A recipe keeps its own settings; opening a different model afterwards resets what belonged to the old one."""
    factory = write(tmp_path / "model.py", USER_CNN)
    from qstudio.core.recipe import ModelSource, Recipe

    recipe = Recipe(model=ModelSource(f"{factory}:build"), mode="fx", input_shape=[1, 3, 40, 40])
    recipe.calib.kind = "random"
    recipe.save(tmp_path / "r.toml")
    answer = DialogAnswerer("codeTrustBox", press_button("Run this code"))
    try:
        window.open_recipe(str(tmp_path / "r.toml"))
        wait_loaded(qtbot, window, "model.py:build")
    finally:
        answer.stop()
    assert window.controller.session.recipe.input_shape == [1, 3, 40, 40]
    result = run_to_end(qtbot, window)
    assert result.example.shape[-1] == 40

    open_torchvision(window, "mobilenet_v2")
    wait_loaded(qtbot, window, "mobilenet_v2")
    assert window.controller.session.recipe.input_shape is None  # the recipe's 40x40 belonged to the old model
    assert "[1, 3, 224, 224]" in window.model_label.text()


# ----------------------------------------------------------------------------- journeys that end in a clear error


def test_mismatched_data_is_refused_before_the_run_and_marked(qtbot, window, tmp_path, monkeypatch):
    """One sample of the chosen data goes through the model first: the error names the setting."""
    open_torchvision(window, "resnet18")
    wait_loaded(qtbot, window, "resnet18")
    np.save(tmp_path / "gray.npy", np.zeros((8, 1, 32, 32), np.float32))
    pick_data_file(window.settings_panel.calibPicker, tmp_path / "gray.npy", monkeypatch)
    seen = []
    window.controller.progress.connect(lambda step: seen.append(step.stage))
    message = run_to_failure(qtbot, window, timeout=60_000)
    assert "calibration data does not fit the model" in message and "3 channels" in message
    assert "calibrate" not in seen  # refused before any calibration batch
    assert "does not fit" in window.settings_panel.error_text()
    close_error(window)
    assert_usable(window)


@pytest.mark.parametrize("stage", ["calibrate", "evaluate", "benchmark"])
@pytest.mark.parametrize("kind", list(RAISES))
def test_a_model_raising_mid_run_ends_visibly(qtbot, window, tmp_path, kind, stage):
    trigger = tmp_path / "raise-now"
    factory = write(tmp_path / "faulty.py", FAULTY.format(trigger=str(trigger), raise_line=RAISES[kind]))
    open_with_dialog(window, f"{factory}:build")
    wait_loaded(qtbot, window, "faulty.py:build")
    stages = []

    def on_progress(step):
        stages.append(step.stage)
        if step.stage.startswith(stage):
            trigger.touch()

    window.controller.progress.connect(on_progress)
    try:
        message = run_to_failure(qtbot, window, timeout=120_000)
    except Exception:
        print("stages seen:", stages[-5:], "\nlog:\n", window.log_view.toPlainText()[-3000:])
        raise
    assert any(s.startswith(stage) for s in stages)
    problem, fix = error_shown(qtbot, window)
    shown = problem + " " + fix
    assert "faulty.py" in shown, shown  # names the model's file and line
    assert "Fix:" in fix or "Fix:" in problem
    assert message
    close_error(window)
    idle(qtbot, window)
    assert_usable(window)
    assert window.controller.session.results == []
    window.controller.progress.disconnect(on_progress)
    trigger.unlink()
    result = run_to_end(qtbot, window)  # the same model runs once the fault is gone
    assert result.model_name == "faulty.py:build"


@pytest.mark.parametrize("kind", ["RuntimeError", "KeyboardInterrupt", "SystemExit"])
def test_a_factory_raising_while_opening_keeps_the_demo(qtbot, window, tmp_path, kind):
    factory = write(tmp_path / "broken.py", f"def build():\n    {RAISES[kind]}\n")
    open_with_dialog(window, f"{factory}:build")
    problem, fix = error_shown(qtbot, window)
    assert "broken.py" in problem + fix, problem
    close_error(window)
    idle(qtbot, window)
    assert loaded_name(window) == "demo"
    assert_usable(window)
    run_to_end(qtbot, window)


def test_seed_flow_torchvision_quantizable_resnet18_in_eager_mode(qtbot, window, monkeypatch, tmp_path):
    """The seed articles' flow in the window: torchvision's quantization-ready resnet18, eager PTQ."""
    from PySide6.QtWidgets import QComboBox

    open_torchvision(window, "quantized_resnet18")
    wait_loaded(qtbot, window, "quantized_resnet18")
    assert "fuse_model" in window.controller.session.group_method  # its own fusion groups, shown on the tree
    mode = window.findChild(QComboBox, "modeCombo")
    mode.setCurrentIndex(mode.findData("eager"))
    result = run_to_end(qtbot, window, timeout=300_000)
    assert result.recipe.mode == "eager" and len(result.coverage.quantized_layers) >= 20
    export_through_button(qtbot, window, monkeypatch, tmp_path / "qresnet18.pt")


def test_every_runtime_side_by_side_and_exported_from_the_window(qtbot, window, tmp_path, monkeypatch):
    """Run the demo with ONNX Runtime and OpenVINO measured too; read the Runtimes tab; export OpenVINO's INT8 model."""
    from PySide6.QtWidgets import QLabel, QTableWidget

    from qstudio.core.runtimes import get_runtime

    monkeypatch.setenv("QSTUDIO_RUNTIMES", "onnx,openvino")
    result = run_to_end(qtbot, window, timeout=600_000)
    names = {(f.name, f.precision) for f in result.runtimes}
    assert {("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")} <= names, result.runtime_notes
    table = window.findChild(QTableWidget, "runtimesTable")
    assert table.rowCount() == len(result.runtimes)
    labels = [table.item(r, 0).text() for r in range(table.rowCount())]
    best = result.fp32_best
    assert any(text.startswith(best.label) and "baseline" in text for text in labels), labels
    note = window.findChild(QLabel, "runtimesNote")
    assert best.label in note.text()
    chart = window.results_panel.runtimes_tab.chart
    assert set(chart.widths()) == {f.label for f in result.runtimes if f.latency_ms}
    # File > Export INT8 model: the dialog offers every INT8 runtime measured; choosing OpenVINO's writes .xml + .bin
    offered: list[str] = []

    def dialog(_parent, _title, _name, filters):
        offered.extend(filters.split(";;"))
        return str(tmp_path / "digits"), next(f for f in offered if f.startswith(get_runtime("openvino").title))

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    window.act_export.trigger()
    qtbot.waitUntil(lambda: (tmp_path / "digits.xml").exists() and not window.controller.busy, timeout=180_000)
    assert (tmp_path / "digits.bin").stat().st_size > 0
    assert {f.split(" INT8")[0] for f in offered} >= {"TorchScript", "ONNX Runtime", "OpenVINO"}
    assert window.errors.box is None or not window.errors.box.isVisible()
    assert_usable(window)
