"""Starting the window: ``qstudio [MODEL] [--factory ...] [--mode ...] [--calib-data ...]``.

The options are the ``qstudio`` command line's (:mod:`qstudio.options`, shared
with the CLI); the window never imports :mod:`qstudio.cli`, which launches it.
"""

from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QApplication

from qstudio.core.errors import QStudioError
from qstudio.core.recipe import ModelSource
from qstudio.core.session import Session
from qstudio.core.trust import granted_by_user
from qstudio.options import parse_window_args, recipe_from_args
from qstudio.ui.controller import SessionController
from qstudio.ui.main_window import MainWindow, app_icon
from qstudio.ui.platform_check import ensure_window_can_open

log = logging.getLogger(__name__)


def create_main_window(argv: list[str] | None = None) -> MainWindow:
    """Build the window with the model loaded and the recipe preloaded; no event loop is started.

    Without a QApplication yet, first checks that Qt can open a window here
    (a screen, the system libraries of Qt's xcb plugin): raises
    :class:`~qstudio.ui.platform_check.WindowUnavailable` instead of Qt's abort.
    """
    args = parse_window_args(list(argv or []))  # bad options and --help before Qt starts
    if QApplication.instance() is None:
        ensure_window_can_open()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("qstudio")
    app.setOrganizationName("qstudio")
    app.setWindowIcon(app_icon())
    args.mode = args.mode or "fx"
    source = ModelSource(spec=args.model, factory=args.factory)
    random_fallback = args.calib_data is None and source.spec != "demo"
    if random_fallback:
        args.calib_data = "random"
    recipe = recipe_from_args(args, source)
    window = MainWindow(SessionController(Session(recipe)))
    window.errors.install_hooks()
    try:
        # the command line's own choice, as for `qstudio quantize`: its factory files, and the model file with --trust
        window.controller.session.load(source, grants=granted_by_user(source, trust_model_file=args.trust))
        window.remember_model(source)
        window.log_line(f"loaded {window.controller.session.loaded.name}; press Run (F5) to quantize")
    except QStudioError as exc:
        window.errors.report(str(exc), exc.details)
    if random_fallback:
        window.log_line("no calibration data was given: using RANDOM data; choose real data in Settings > Data")
    return window


def main(argv: list[str] | None = None) -> int:
    try:
        window = create_main_window(argv)
    except QStudioError as exc:  # bad options, no screen, missing system libraries
        print(f"qstudio: error: {exc}", file=sys.stderr)
        return 2
    window.show()
    return QApplication.instance().exec()
