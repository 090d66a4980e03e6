"""The qstudio window (PySide6 + pyqtgraph) over the Qt-free engine in ``qstudio.core``.

``create_main_window(argv)`` is the entry point for users' own pytest-qt tests
(see docs/ui-testing.md): it builds the window from the same arguments as the
``qstudio`` command, with the model loaded and ready to run, without starting
an event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qstudio.ui.main_window import MainWindow


def create_main_window(argv: list[str] | None = None) -> MainWindow:
    from qstudio.ui.app import create_main_window as _create

    return _create(argv)


__all__ = ["create_main_window"]
