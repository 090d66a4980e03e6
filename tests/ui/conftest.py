"""pytest-qt setup: offscreen Qt, per-test settings (which warnings fail a test: pyproject.toml)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from dialogs import FAST
from PySide6.QtCore import QSettings

from qstudio.ui import create_main_window


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Each test gets its own QSettings file, so window state and recent files never leak between tests."""
    folder = tmp_path / "settings"
    folder.mkdir()
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


@pytest.fixture(autouse=True)
def delete_qt_objects_between_tests():
    """Destroy each test's windows while no worker thread runs.

    Left to Python's garbage collector, an old window can be destroyed in the
    middle of a later test while that test's worker emits a signal; PySide
    then deadlocks (the GUI thread holds the GIL and waits for Qt's
    signal-slot mutex, the worker holds the mutex and waits for the GIL).
    """
    yield
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool

    QThreadPool.globalInstance().waitForDone(60_000)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def window(qtbot):
    """The real window on the demo with quick-run options (``FAST``), shown; its worker is waited for at the end."""
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.controller.wait(30_000)
