"""Driving the real window as a user does: modal dialogs answered by a timer, runs waited on by signal.

Shared by the window tests (import it as ``from dialogs import ...``; pytest puts
this folder on ``sys.path``), with the quick-run options ``FAST``, the engine tests'
model zoo and a ``Snapshot`` of what the user had, to check it survives a fault.  Modal dialogs run their own event loop inside
``exec()``; a timer keeps ticking in that loop, finds the dialog among the
application's windows by its objectName and answers it.  Static file pickers
(``QFileDialog.getOpenFileName``) are replaced with ``monkeypatch`` instead,
as docs/ui-testing.md says.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLineEdit,
    QMessageBox,
    QPushButton,
)

FAST = ["--calib-batches", "2", "--iters", "3", "--batch-size", "8"]  # the window's options for a quick demo run
ZOO = Path(__file__).resolve().parents[1] / "core" / "models" / "zoo.py"  # the engine tests' small models


class DialogAnswerer:
    """Presses a button in the modal dialog named ``name`` as soon as it shows (the user's click).

    ``seen`` records each dialog's text at the moment it was answered.
    """

    def __init__(self, name: str, press: Callable[[QDialog], None]) -> None:
        self.name, self.press = name, press
        self.seen: list[dict[str, object]] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def _poll(self) -> None:
        for w in QApplication.topLevelWidgets():
            if w.objectName() == self.name and w.isVisible() and isinstance(w, QDialog):
                if isinstance(w, QMessageBox):
                    default = w.defaultButton()
                    self.seen.append(
                        {
                            "text": w.text(),
                            "info": w.informativeText(),
                            "default": default.text() if default is not None else "",
                            "buttons": [b.text() for b in w.buttons()],
                        }
                    )
                else:
                    self.seen.append({"dialog": w})
                self.press(w)
                return

    def stop(self) -> None:
        self.timer.stop()


def press_button(text: str) -> Callable[[QDialog], None]:
    def press(box: QDialog) -> None:
        assert isinstance(box, QMessageBox)
        for b in box.buttons():
            if b.text().replace("&", "") == text:
                b.click()
                return
        raise AssertionError(f"no button {text!r} in {[b.text() for b in box.buttons()]}")

    return press


def decline(box: QDialog) -> None:
    assert isinstance(box, QMessageBox)
    box.button(QMessageBox.StandardButton.Cancel).click()


def open_with_dialog(window, spec: str, factory: str = "") -> None:
    """File > Open model…: type the model (and factory) into the real dialog and press Open."""

    def fill(dialog: QDialog) -> None:
        dialog.findChild(QLineEdit, "modelPathEdit").setText(spec)
        dialog.findChild(QLineEdit, "factoryEdit").setText(factory)
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Open).click()

    answer = DialogAnswerer("openModelDialog", fill)
    try:
        window.findChild(type(window.act_open), "openModelAction").trigger()
    finally:
        answer.stop()
    assert answer.seen, "the open-model dialog never showed"


def open_torchvision(window, name: str) -> None:
    """File > Open torchvision architecture…: pick ``name`` in the real dialog and press OK."""

    def pick(dialog: QDialog) -> None:
        dialog.setTextValue(name)
        dialog.accept()

    answer = DialogAnswerer("torchvisionDialog", pick)
    try:
        window.findChild(type(window.act_open_tv), "openTorchvisionAction").trigger()
    finally:
        answer.stop()
    assert answer.seen, "the torchvision dialog never showed"


def set_mode(window, mode: str) -> None:
    """Pick ``mode`` in the mode combo, as the user does; the recipe follows."""
    combo = window.findChild(QComboBox, "modeCombo")
    combo.setCurrentIndex(combo.findData(mode))
    assert window.controller.session.recipe.mode == mode


def run_to_end(qtbot, window, timeout=240_000):
    with qtbot.waitSignal(window.runFinished, timeout=timeout) as blocker:
        window.findChild(QPushButton, "runButton").click()
    return blocker.args[0]


def run_to_failure(qtbot, window, timeout=120_000) -> str:
    with qtbot.waitSignal(window.runFailed, timeout=timeout) as blocker:
        window.findChild(QPushButton, "runButton").click()
    return blocker.args[0]


def error_shown(qtbot, window, timeout=60_000) -> tuple[str, str]:
    """(problem, fix) from the visible error box, once it is shown."""
    qtbot.waitUntil(lambda: window.errors.box is not None and window.errors.box.isVisible(), timeout=timeout)
    box = window.errors.box
    return box.text(), box.informativeText()


def close_error(window) -> None:
    if window.errors.box is not None:
        window.errors.box.close()


def idle(qtbot, window, timeout=60_000) -> None:
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=timeout)


def pick_data_file(picker, path, monkeypatch) -> None:
    """In a data picker (calibPicker, evalPicker, trainPicker): choose "Tensor file…", then the file in the dialog."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    combo = picker.kindCombo
    index = combo.findData("tensor")
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # the user's pick: opens the file dialog when no file was chosen yet
    if picker.pathEdit.text() != str(path):
        picker.browseButton.click()
    assert picker.pathEdit.text() == str(path)


# -- what the user had: kept through a fault ----------------------------------------------------------------------
@dataclass
class Snapshot:
    """What the user had before a fault: the model, the recipe, results, fusion groups and the mode shown."""

    loaded: object
    recipe: str
    results: list
    groups: list
    mode_shown: str

    @classmethod
    def of(cls, window) -> Snapshot:
        s = window.controller.session
        return cls(
            s.loaded,
            s.recipe.to_toml(),
            list(s.results),
            copy.deepcopy(s.groups),
            window.findChild(QComboBox, "modeCombo").currentData(),
        )

    def assert_kept(self, window) -> None:
        """The model, the settings (recipe and what the widgets show), fusion groups and results are as before."""
        assert Snapshot.of(window) == self


def still_usable(qtbot, window) -> None:
    """After the fault: the window runs the demo to the end (the earlier model was kept)."""
    close_error(window)
    idle(qtbot, window)
    assert window.controller.session.loaded.name == "demo"
    result = run_to_end(qtbot, window)
    assert window.controller.session.last is result
