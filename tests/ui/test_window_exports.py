"""Exports from the window (TorchScript, report, recipe, chart PNGs): verified files, and a failed save loses nothing.

Saving onto a full disk is an error box, never a crash or a 0-byte file.

The disk is real: a small tmpfs mounted in the test's tmp_path (``small_disk``
in tests/conftest.py).  Each test saves once while there is room (the earlier
file), fills the disk, saves again and checks that an error box names the
problem and the fix, that the window and its result are still there, that the
earlier file is byte-identical and that no temporary file was left.  Before
the fix, the TorchScript export aborted the whole process (torch's C++ writer
threw from a destructor) and "Export chart PNGs" logged "chart saved" for two
0-byte files.

File pickers are static ``QFileDialog`` calls and are replaced with
``monkeypatch`` (docs/ui-testing.md); the dialog is not what is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dialogs import Snapshot, close_error, error_shown, idle
from PySide6.QtWidgets import QFileDialog, QPushButton


@pytest.fixture
def window(window, qtbot):
    """The window (tests/ui/conftest.py) after one demo run: there is a result to export."""
    with qtbot.waitSignal(window.controller.runFinished, timeout=240_000):
        window.run()
    return window


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files a failed save could leave."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def assert_full_disk_box(problem: str, fix: str, name: str) -> None:
    assert name in problem and "is full" in problem and "needed" in problem, problem
    assert "Unexpected error" not in problem
    assert fix.startswith("Fix: ") and "free space or choose another folder" in fix, fix


def assert_alive(window, result) -> None:
    assert window.isVisible()
    assert window.controller.session.last is result  # the session's result is still there
    assert window.export_button.isEnabled()


def export_torchscript(qtbot, window, monkeypatch, out: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    window.act_export.trigger()


def test_export_torchscript_onto_a_full_disk_shows_an_error_and_keeps_everything(
    qtbot, window, small_disk, monkeypatch, tmp_path
):
    result = window.controller.session.last
    out = small_disk / "model_int8.pt"
    export_torchscript(qtbot, window, monkeypatch, out)  # the earlier export, while there is room
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=60_000)
    earlier = out.read_bytes()
    small_disk.fill()

    export_torchscript(qtbot, window, monkeypatch, out)
    problem, fix = error_shown(qtbot, window)
    idle(qtbot, window)
    assert_full_disk_box(problem, fix, "model_int8.pt")
    assert out.read_bytes() == earlier
    assert small_disk.files() == ["model_int8.pt"] and leftovers(small_disk.path) == []
    assert_alive(window, result)
    torch.jit.load(str(out))  # the earlier export still loads

    # the user's fix works: export the same result to another folder
    close_error(window)
    elsewhere = tmp_path / "elsewhere.pt"
    export_torchscript(qtbot, window, monkeypatch, elsewhere)
    qtbot.waitUntil(lambda: elsewhere.exists() and not window.controller.busy, timeout=60_000)
    assert f"exported {elsewhere}" in window.log_view.toPlainText()


@pytest.mark.parametrize("what", ["report", "recipe"])
def test_report_and_recipe_onto_a_full_disk_show_an_error_and_keep_the_earlier_file(
    qtbot, window, small_disk, monkeypatch, what
):
    result = window.controller.session.last
    out = small_disk / {"report": "qstudio-report.html", "recipe": "recipe.toml"}[what]
    action = {"report": window.act_report, "recipe": window.act_save_recipe}[what]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    action.trigger()
    assert out.stat().st_size > 0
    earlier = out.read_bytes()
    small_disk.fill(leave=0)  # a recipe is smaller than the few KB a "nearly full" disk leaves
    log_before = window.log_view.toPlainText()

    action.trigger()
    problem, fix = error_shown(qtbot, window)
    assert_full_disk_box(problem, fix, out.name)
    assert out.read_bytes() == earlier
    assert small_disk.files() == [out.name] and leftovers(small_disk.path) == []
    assert window.log_view.toPlainText() == log_before  # nothing claims it was saved
    assert_alive(window, result)


def test_chart_pngs_onto_a_full_disk_show_an_error_never_empty_files(qtbot, window, small_disk, monkeypatch):
    result = window.controller.session.last
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(small_disk.path))
    window.act_charts.trigger()  # the earlier charts, while there is room
    names = sorted(p.name for p in small_disk.path.glob("*.png"))
    assert len(names) == 2, names
    earlier = {n: (small_disk / n).read_bytes() for n in names}
    for data in earlier.values():
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    small_disk.fill()
    log_before = window.log_view.toPlainText()

    window.act_charts.trigger()
    problem, fix = error_shown(qtbot, window)
    assert_full_disk_box(problem, fix, ".png")
    assert {n: (small_disk / n).read_bytes() for n in names} == earlier  # byte-identical, not 0 bytes
    assert small_disk.files() == names and leftovers(small_disk.path) == []
    assert "chart saved" not in window.log_view.toPlainText()[len(log_before) :]
    assert_alive(window, result)


def test_chart_pngs_onto_a_full_disk_leave_no_empty_file(qtbot, window, full_disk, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(full_disk.path))
    window.act_charts.trigger()
    problem, fix = error_shown(qtbot, window)
    assert_full_disk_box(problem, fix, ".png")
    assert full_disk.files() == []  # no 0-byte PNGs, no temporary files
    assert "chart saved" not in window.log_view.toPlainText()


def test_export_and_reload(qtbot, window, tmp_path, monkeypatch):
    result = window.controller.session.last
    out = tmp_path / "demo_int8.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    window.findChild(QPushButton, "exportButton").click()
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=60_000)
    reloaded = torch.jit.load(str(out))
    x = result.check_input
    assert torch.equal(reloaded(x), result.quantized.module(x))


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != name and name in p.name)


def _fail_mkstemp(monkeypatch) -> None:
    # Tests run as root, where chmod cannot make a folder read-only; the OS refusal is simulated where
    # the atomic writer asks the OS for its temporary file.
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("case", ["read-only-folder", "missing-folder", "full-disk"])
def test_export_failure_keeps_the_earlier_file_and_leaves_no_partial_file(
    qtbot, window, tmp_path, monkeypatch, request, case
):
    if case == "full-disk":  # a real, nearly full tmpfs (tests/conftest.py), filled after the earlier export
        disk = request.getfixturevalue("small_disk")
        folder = disk.path
    else:
        folder = tmp_path / "exports"
        folder.mkdir()
    out = folder / "model_int8.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    window.findChild(QPushButton, "exportButton").click()  # the earlier export
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=60_000)
    earlier = out.read_bytes()

    target = out
    if case == "missing-folder":
        target = tmp_path / "no_such_folder" / "model_int8.pt"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "TorchScript (*.pt)"))
    elif case == "read-only-folder":
        _fail_mkstemp(monkeypatch)
    else:
        disk.fill()
    before = Snapshot.of(window)
    window.findChild(QPushButton, "exportButton").click()
    problem, fix = error_shown(qtbot, window)
    idle(qtbot, window)
    expected = {"read-only-folder": "permission denied", "missing-folder": "does not exist", "full-disk": "is full"}
    assert expected[case] in problem.lower(), problem
    assert fix.startswith("Fix: ") and "Unexpected error" not in problem
    assert out.read_bytes() == earlier  # byte-identical
    assert _leftovers(folder, "model_int8.pt") == []  # no partial or temporary file
    assert not target.parent.exists() or case != "missing-folder"
    before.assert_kept(window)
    assert window.findChild(QPushButton, "exportButton").isEnabled()
