"""The window itself: its object names, the demo ready to run, start-up arguments, settings and recipes it keeps."""

from __future__ import annotations

import pytest
from dialogs import FAST, Snapshot, error_shown, run_to_end, still_usable
from PySide6.QtWidgets import QComboBox, QProgressBar, QPushButton, QTreeView

from qstudio.ui import create_main_window


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


def test_corrupt_settings_file_is_reported_in_the_window(qtbot, isolated_settings):
    ini = isolated_settings / "qstudio" / "qstudio.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_bytes(b"[window]\ngeometry=@ByteArray(\x00\xff\x00\n\x00garbage[[[")
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    assert "could not be read and was reset" in w.statusBar().currentMessage()
    assert "could not be read" in w.log_view.toPlainText()
    assert w.controller.session.loaded.name == "demo"
    still_usable(qtbot, w)
    w.close()  # the reset file takes the new settings again (a corrupt one is never written by Qt)
    assert b"garbage" not in ini.read_bytes() and b"recipe" in ini.read_bytes()


RECIPES = {
    "bad-key": ('version = 1\n[settings]\nbackend = "x86"\nbatchsize = 8\n', ["batchsize"]),
    "bad-value": ("version = 1\n[settings]\nbatch_size = -4\n", ["batch_size", "-4"]),
    "wrong-type": ("version = 1\nmode = 3\n", ["mode"]),
    "newer-version": ('version = 99\nmode = "fx"\n', ["version 99", "newer"]),
    "not-toml": ("mode = = fx\n", ["TOML"]),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_bad_recipe_file_is_explained_and_settings_stay(qtbot, window, tmp_path, case):
    text, words = RECIPES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(
        window.findChild(QComboBox, "modeCombo").findData("dynamic")  # a setting of the user's own
    )
    before = Snapshot.of(window)
    window.open_recipe(str(path))
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert fix.startswith("Fix: ")
    assert not window.controller.busy
    before.assert_kept(window)
