"""The settings panel edits the session's recipe through the controller, and only with valid recipes."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QLabel, QLineEdit, QPushButton, QSpinBox

from qstudio.core.environment import available_backends
from qstudio.core.recipe import DataSource, QATSettings, QuantSettings, Recipe
from qstudio.ui.controller import SessionController
from qstudio.ui.data_picker import RANDOM_WARNING, DataPicker
from qstudio.ui.settings_panel import SettingsPanel


@pytest.fixture
def controller() -> SessionController:
    return SessionController()


@pytest.fixture
def panel(qtbot, controller: SessionController) -> SettingsPanel:
    widget = SettingsPanel(controller)
    qtbot.addWidget(widget)
    widget.resize(360, 800)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def child(panel: SettingsPanel, kind: type, name: str):
    found = panel.findChild(kind, name)
    assert found is not None, f"no {kind.__name__} named {name}"
    return found


def select(combo: QComboBox, data: object) -> None:
    index = combo.findData(data)
    assert index >= 0, f"{data!r} not in {combo.objectName()}"
    combo.setCurrentIndex(index)


def type_into(qtbot, edit: QLineEdit, text: str) -> None:
    """Type like a user: select all, delete, type, press Return (editingFinished)."""
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Backspace)
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_mode_combo_updates_recipe(panel: SettingsPanel, controller: SessionController) -> None:
    mode = child(panel, QComboBox, "modeCombo")
    assert [mode.itemData(i) for i in range(mode.count())] == ["fx", "eager", "qat", "dynamic"]
    assert mode.currentData() == "fx"
    mode.setCurrentIndex(mode.findData("eager"))
    assert controller.session.recipe.mode == "eager"
    assert "QuantStub" in child(panel, QLabel, "modeHint").text()


def test_backend_combo_lists_available_backends_only(panel: SettingsPanel, controller: SessionController) -> None:
    available = available_backends()
    controller.update_recipe(Recipe(settings=QuantSettings(backend=available[0])))
    backend = child(panel, QComboBox, "backendCombo")
    assert [backend.itemData(i) for i in range(backend.count())] == available
    if "fbgemm" not in available:
        pytest.skip("this PyTorch build has no fbgemm engine")
    select(backend, "fbgemm")
    assert controller.session.recipe.settings.backend == "fbgemm"


def test_qat_section_visible_only_in_qat_mode(panel: SettingsPanel, controller: SessionController) -> None:
    mode = child(panel, QComboBox, "modeCombo")
    qat_epochs = child(panel, QSpinBox, "qatEpochsSpin")
    train = child(panel, DataPicker, "trainPicker")
    dynamic_dtype = child(panel, QComboBox, "dynamicDtypeCombo")
    for name in ("fx", "eager", "dynamic"):
        select(mode, name)
        assert not qat_epochs.isVisible() and not train.isVisible()
        assert dynamic_dtype.isVisible() == (name == "dynamic")
    select(mode, "qat")
    assert qat_epochs.isVisible() and train.isVisible() and not dynamic_dtype.isVisible()
    assert controller.session.recipe.mode == "qat"

    qat_epochs.setValue(5)
    lr = child(panel, QDoubleSpinBox, "qatLrSpin")
    assert lr.decimals() == 6
    lr.setValue(0.0005)
    assert controller.session.recipe.qat == QATSettings(epochs=5, lr=0.0005)


def test_calibration_batches_spin_updates_recipe(panel: SettingsPanel, controller: SessionController) -> None:
    spin = child(panel, QSpinBox, "calibBatchesSpin")
    assert (spin.minimum(), spin.maximum()) == (1, 10000)
    assert spin.value() == controller.session.recipe.settings.calib_batches
    spin.setValue(50)
    assert controller.session.recipe.settings.calib_batches == 50
    child(panel, QSpinBox, "batchSizeSpin").setValue(8)
    child(panel, QComboBox, "observerCombo").setCurrentIndex(1)  # MinMax
    assert controller.session.recipe.settings == QuantSettings(calib_batches=50, batch_size=8, observer="minmax")


def test_random_data_shows_the_warning(panel: SettingsPanel, controller: SessionController) -> None:
    picker = child(panel, DataPicker, "calibPicker")
    warning = picker.findChild(QLabel, "randomWarning")
    assert not warning.isVisible()
    select(picker.findChild(QComboBox, "kindCombo"), "random")
    assert warning.isVisible()
    assert RANDOM_WARNING in warning.text()
    assert controller.session.recipe.calib.kind == "random"
    select(picker.findChild(QComboBox, "kindCombo"), "demo")
    assert not warning.isVisible()


def test_tensor_file_is_chosen_with_the_file_dialog(
    qtbot, panel: SettingsPanel, controller: SessionController, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inputs, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(inputs, np.zeros((4, 1, 32, 32), dtype=np.float32))
    np.save(labels, np.zeros(4, dtype=np.int64))
    picker = child(panel, DataPicker, "calibPicker")
    kind = picker.findChild(QComboBox, "kindCombo")

    # choosing the kind without a file yet: the panel says what is missing, the recipe keeps its data
    select(kind, "tensor")
    assert "no tensor file" in panel.error_text()
    assert controller.session.recipe.calib == DataSource()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(inputs), ""))
    qtbot.mouseClick(picker.findChild(QPushButton, "browseButton"), Qt.MouseButton.LeftButton)
    assert controller.session.recipe.calib == DataSource(kind="tensor", path=str(inputs))
    assert panel.error_text() == ""
    assert picker.findChild(QLineEdit, "pathEdit").text() == str(inputs)

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(labels), ""))
    qtbot.mouseClick(picker.findChild(QPushButton, "labelsButton"), Qt.MouseButton.LeftButton)
    assert controller.session.recipe.calib == DataSource(kind="tensor", path=str(inputs), labels=str(labels))


def test_picking_a_kind_opens_the_dialog_and_cancel_goes_back(
    panel: SettingsPanel, controller: SessionController, monkeypatch: pytest.MonkeyPatch
) -> None:
    picker = child(panel, DataPicker, "evalPicker")
    kind = picker.findChild(QComboBox, "kindCombo")
    assert kind.currentText() == "Automatic"
    asked: list[str] = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: asked.append("dir") or "")
    index = kind.findData("folder")
    kind.setCurrentIndex(index)
    kind.activated.emit(index)  # what a user's pick emits
    assert asked == ["dir"]
    assert kind.currentText() == "Automatic"
    assert controller.session.recipe.eval is None
    assert panel.error_text() == ""


def test_folder_preprocessing_fields(
    qtbot, panel: SettingsPanel, controller: SessionController, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    picker = child(panel, DataPicker, "calibPicker")
    mean = picker.findChild(QLineEdit, "meanEdit")
    assert not mean.isVisible()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    kind = picker.findChild(QComboBox, "kindCombo")
    kind.setCurrentIndex(kind.findData("folder"))
    kind.activated.emit(kind.currentIndex())
    assert mean.isVisible() and controller.session.recipe.calib == DataSource(kind="folder", path=str(tmp_path))

    picker.findChild(QSpinBox, "resizeSpin").setValue(256)
    picker.findChild(QSpinBox, "cropSpin").setValue(224)
    type_into(qtbot, mean, "0.5")  # std still empty: invalid, recipe unchanged
    assert "mean and std" in panel.error_text()
    type_into(qtbot, picker.findChild(QLineEdit, "stdEdit"), "0.25")
    expected = DataSource(kind="folder", path=str(tmp_path), resize=256, crop=224, mean=[0.5], std=[0.25])
    assert controller.session.recipe.calib == expected
    assert panel.error_text() == ""


def test_invalid_input_shape_is_shown_and_the_recipe_kept(
    qtbot, panel: SettingsPanel, controller: SessionController
) -> None:
    shape = child(panel, QLineEdit, "inputShapeEdit")
    error = child(panel, QLabel, "settingsError")
    type_into(qtbot, shape, "1,3,32,32")
    assert controller.session.recipe.input_shape == [1, 3, 32, 32]
    assert not error.isVisible()
    before = controller.session.recipe

    type_into(qtbot, shape, "1,x")
    assert error.isVisible()
    assert "1,x" in error.text()
    assert controller.session.recipe is before  # not replaced

    child(panel, QSpinBox, "calibBatchesSpin").setValue(3)  # other edits wait for the shape to be fixed
    assert controller.session.recipe is before and error.isVisible()

    type_into(qtbot, shape, "")
    assert not error.isVisible()
    assert controller.session.recipe.input_shape is None
    assert controller.session.recipe.settings.calib_batches == 3


def test_benchmark_fields(qtbot, panel: SettingsPanel, controller: SessionController) -> None:
    type_into(qtbot, child(panel, QLineEdit, "benchBatchSizesEdit"), "1, 8")
    child(panel, QSpinBox, "benchThreadsSpin").setValue(2)
    child(panel, QSpinBox, "benchItersSpin").setValue(20)
    bench = controller.session.recipe.benchmark
    assert (bench.batch_sizes, bench.threads, bench.iters) == ([1, 8], 2, 20)
    child(panel, QSpinBox, "benchThreadsSpin").setValue(0)
    assert controller.session.recipe.benchmark.threads is None


def test_external_recipe_change_refreshes_without_echo(panel: SettingsPanel, controller: SessionController) -> None:
    updates: list[Recipe] = []
    original = controller.update_recipe
    controller.update_recipe = lambda r: (updates.append(r), original(r))  # type: ignore[method-assign]
    changes: list[int] = []
    controller.recipeChanged.connect(lambda: changes.append(1))

    original(Recipe(mode="dynamic", settings=QuantSettings(calib_batches=7, dynamic_dtype="float16")))

    assert child(panel, QComboBox, "modeCombo").currentData() == "dynamic"
    assert child(panel, QComboBox, "dynamicDtypeCombo").currentData() == "float16"
    assert child(panel, QComboBox, "dynamicDtypeCombo").isVisible()
    assert child(panel, QSpinBox, "calibBatchesSpin").value() == 7
    assert not child(panel, QSpinBox, "qatEpochsSpin").isVisible()
    assert updates == [] and changes == [1]  # the refresh sent nothing back


def test_recipe_values_the_widgets_cannot_show_are_kept(panel: SettingsPanel, controller: SessionController) -> None:
    controller.update_recipe(Recipe(settings=QuantSettings(calib_batches=20000), qat=QATSettings(lr=1e-8)))
    child(panel, QSpinBox, "batchSizeSpin").setValue(4)
    recipe = controller.session.recipe
    assert (recipe.settings.calib_batches, recipe.qat.lr, recipe.settings.batch_size) == (20000, 1e-8, 4)


def test_busy_disables_the_form(panel: SettingsPanel, controller: SessionController) -> None:
    mode = child(panel, QComboBox, "modeCombo")
    assert mode.isEnabled()
    controller.busyChanged.emit(True)
    assert not mode.isEnabled()
    assert not child(panel, DataPicker, "calibPicker").isEnabled()
    assert child(panel, QLabel, "settingsLocked").isVisible()
    controller.busyChanged.emit(False)
    assert mode.isEnabled()
    assert not child(panel, QLabel, "settingsLocked").isVisible()


def test_demo_model_fills_the_input_shape(panel: SettingsPanel, controller: SessionController) -> None:
    from qstudio.core.recipe import ModelSource

    controller.session.load(ModelSource("demo"))
    edit = child(panel, QLineEdit, "inputShapeEdit")
    # the shape is automatic (the recipe says None) and the field shows what automatic means for this model
    assert controller.session.recipe.input_shape is None and edit.text() == ""
    assert edit.placeholderText() == "auto: " + ",".join(str(d) for d in controller.session.loaded.input_shape)
    assert "demo's metadata" in edit.toolTip()
    assert panel.recipe_from_widgets() == controller.session.recipe


def test_qat_without_training_data_is_flagged(
    panel: SettingsPanel, controller: SessionController, tmp_path: Path
) -> None:
    note = child(panel, QLabel, "trainNote")
    controller.update_recipe(Recipe(mode="qat"))
    assert not note.isVisible()  # demo calibration: the demo train split is used
    controller.update_recipe(Recipe(mode="qat", calib=DataSource(kind="tensor", path=str(tmp_path / "x.npy"))))
    assert note.isVisible()
    controller.update_recipe(
        Recipe(mode="qat", calib=DataSource(kind="tensor", path="x.npy"), train=DataSource(kind="tensor", path="t.npy"))
    )
    assert not note.isVisible()


@pytest.mark.parametrize(
    "text", ["1,3,32,32", "1x3x32x32", "[1, 3, 32, 32]", "(1, 3, 32, 32)", "1 3 32 32", "1×3×32×32"]
)
def test_the_window_reads_a_list_as_the_command_line_does(
    qtbot, panel: SettingsPanel, controller: SessionController, text: str
) -> None:
    """One list syntax (qstudio.options): what `--input-shape` takes, the input shape field takes."""
    from qstudio.options import parse_float_list, parse_window_args
    from qstudio.ui.data_picker import parse_floats

    type_into(qtbot, child(panel, QLineEdit, "inputShapeEdit"), text)
    assert controller.session.recipe.input_shape == parse_window_args(["--input-shape", text]).input_shape
    assert panel.error_text() == ""
    assert parse_floats("[0.5; 0.25]", "mean") == parse_float_list("0.5,0.25") == [0.5, 0.25]
