"""One error path for the window: every failure becomes a readable message with details one click away.

Worker errors arrive through the controller; anything that escapes elsewhere
(a slot that raises, a stray thread) is caught by the excepthooks installed
here and routed to the same place, so nothing dies silently.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


class ErrorReporter(QObject):
    """Thread-safe bridge: ``report`` may be called from any thread; ``shown`` fires on the GUI thread."""

    shown = Signal(str, str)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self.box: QMessageBox | None = None
        self.last_message = ""
        self.shown.connect(self._show)
        self._old_hooks: tuple | None = None

    def report(self, message: str, details: str = "") -> None:
        self.shown.emit(message, details)

    def _show(self, message: str, details: str) -> None:
        self.last_message = message
        problem, _, fix = message.partition(" Fix: ")
        box = self.box
        if box is None:
            box = QMessageBox(self._parent)
            box.setObjectName("errorBox")
            box.setIcon(QMessageBox.Icon.Warning)
            box.setWindowTitle("qstudio")
            box.setStandardButtons(QMessageBox.StandardButton.Ok)
            self.box = box
        box.setText(problem)
        box.setInformativeText(f"Fix: {fix}" if fix else "")
        box.setDetailedText(details or "")
        box.open()  # window-modal but non-blocking: the event loop (and tests) keep running

    # -- hooks -------------------------------------------------------------------
    def install_hooks(self) -> None:
        self._old_hooks = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def uninstall_hooks(self) -> None:
        if self._old_hooks is not None:
            sys.excepthook, threading.excepthook = self._old_hooks
            self._old_hooks = None

    def _excepthook(self, etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        details = "".join(traceback.format_exception(etype, value, tb))
        log.error("uncaught exception\n%s", details)
        self.report(f"Unexpected error: {etype.__name__}: {value}. This is a bug in qstudio; details below.", details)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        assert args.exc_type is not None
        self._excepthook(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
