"""Opening a model in the window (File > Open model…): a broken file or factory is an error box, the demo stays.

Each case opens through the real Open dialog, then checks that the error names the
file and the fix, that the model, settings and results the user had are kept
(``Snapshot``) and that the window still runs.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from dialogs import ZOO, Snapshot, error_shown, idle, open_with_dialog, still_usable
from PySide6.QtWidgets import QPushButton


def _state_dict_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    return path


def _truncated(tmp_path: Path) -> Path:
    data = _state_dict_file(tmp_path).read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(5).randbytes(4096))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "afolder.pt"
    path.mkdir()
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.pt"


def _mutated_zip(tmp_path: Path) -> Path:
    """A torch zip file whose data.pkl entry has flipped bytes (bit rot inside a valid zip directory)."""
    raw = bytearray(_state_dict_file(tmp_path).read_bytes())
    at = raw.find(b"data.pkl") + len("data.pkl") + 64  # past the local header, in the pickle stream
    raw[at : at + 16] = bytes(b ^ 0x5A for b in raw[at : at + 16])
    path = tmp_path / "mutated.pt"
    path.write_bytes(bytes(raw))
    return path


BROKEN = {
    "truncated": (_truncated, ["truncated.pt"]),
    "random-bytes": (_random_bytes, ["random.pt"]),
    "empty": (_empty, ["empty.pt", "empty"]),
    "folder": (_folder, ["afolder.pt", "folder"]),
    "missing": (_missing, ["missing.pt", "does not exist"]),
    "mutated-zip": (_mutated_zip, ["mutated.pt"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_file_shows_the_problem_and_keeps_the_demo(qtbot, window, tmp_path, case):
    make, words = BROKEN[case]
    path = make(tmp_path)
    before = Snapshot.of(window)
    open_with_dialog(window, str(path), f"{ZOO}:plain_cnn")
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert fix.startswith("Fix: ")
    assert "Unexpected error" not in problem and "bug in qstudio" not in problem
    idle(qtbot, window)
    before.assert_kept(window)
    assert window.findChild(QPushButton, "runButton").isEnabled()


def test_state_dict_that_does_not_match_the_factory_lists_the_mismatches(qtbot, window, tmp_path):
    weights = tmp_path / "other.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 2)).state_dict(), weights)
    before = Snapshot.of(window)
    open_with_dialog(window, str(weights), f"{ZOO}:plain_cnn")
    problem, fix = error_shown(qtbot, window)
    assert "missing keys: conv1.weight" in problem and "unexpected keys: 0.weight" in problem, problem
    assert fix.startswith("Fix: ")
    idle(qtbot, window)
    before.assert_kept(window)
    still_usable(qtbot, window)


FACTORIES = {
    "raises": ("def build():\n    raise ValueError('no weights configured')\n", ["build", "no weights configured"]),
    "import-fails": ("raise RuntimeError('broken at import')\n", ["broken at import"]),
    "not-python": ("\x00\x01 this is not ) python (\n", ["not valid Python"]),
    "not-a-module": ("def build():\n    return 42\n", ["build", "int"]),
}


@pytest.mark.parametrize("case", list(FACTORIES))
def test_bad_factory_shows_the_problem_and_keeps_the_demo(qtbot, window, tmp_path, case):
    text, words = FACTORIES[case]
    factory = tmp_path / "factory.py"
    factory.write_text(text)
    before = Snapshot.of(window)
    open_with_dialog(window, f"{factory}:build")
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert "factory.py" in problem and fix.startswith("Fix: ")
    assert "Unexpected error" not in problem
    idle(qtbot, window)
    before.assert_kept(window)


def test_bad_factory_for_a_state_dict_keeps_the_demo_and_the_window_runs(qtbot, window, tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text("def build():\n    return 'a string'\n")
    before = Snapshot.of(window)
    open_with_dialog(window, str(_state_dict_file(tmp_path)), f"{factory}:build")
    problem, _fix = error_shown(qtbot, window)
    assert "factory.py:build" in problem and "str" in problem, problem
    idle(qtbot, window)
    before.assert_kept(window)
    still_usable(qtbot, window)
