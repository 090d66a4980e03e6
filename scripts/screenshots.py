"""Screenshots of the real qstudio window on the demo, for the docs.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Writes, at 1280x800:

    before-run.png    the demo loaded, nothing run yet
    during-run.png    taken while calibration is going (progress bar on "calibrate")
    results.png       after the run: cards, latency chart, tree with SQNR
    layer-error.png   the same, with the "Per-layer error" tab selected

The window is built with ``create_main_window`` (what the ``qstudio`` command
runs) and its settings go to a temporary folder, so saved geometry or recent
files of whoever runs this never change the pictures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1280, 800)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument(
        "--calib-batches", type=int, default=13, help="calibration batches (the demo has 13 of 16), for time to grab"
    )
    parser.add_argument("--iters", type=int, default=20, help="timed benchmark iterations per precision")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the run")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QProgressBar, QPushButton, QTabWidget

    settings = tempfile.TemporaryDirectory(prefix="qstudio-screenshots-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings.name)
    os.environ["XDG_CONFIG_HOME"] = settings.name

    from qstudio.ui import create_main_window

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = create_main_window(["--calib-batches", str(args.calib_batches), "--iters", str(args.iters)])
    if window.controller.session.loaded is None:
        print(f"the demo did not load: {window.errors.last_message}", file=sys.stderr)
        return 1
    window.resize(*SIZE)
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def settle(rounds: int = 5) -> None:
        for _ in range(rounds):
            app.processEvents()
            time.sleep(0.02)
        app.processEvents()

    def grab(name: str) -> None:
        pixmap = window.grab()
        if (pixmap.width(), pixmap.height()) != SIZE:
            raise SystemExit(f"{name}: the window is {pixmap.width()}x{pixmap.height()}, not {SIZE[0]}x{SIZE[1]}")
        path = args.out / f"{name}.png"
        if not pixmap.save(str(path)):
            raise SystemExit(f"could not write {path}")
        written.append(path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    settle(10)
    grab("before-run")

    progress_bar = window.findChild(QProgressBar, "progressBar")
    state: dict[str, object] = {"during": False}

    def on_progress(step) -> None:
        # the first calibration batches: grab while the rest of calibration is still going
        if state["during"] or step.stage != "calibrate" or step.done < 2 or step.done >= step.total:
            return
        state["during"] = True
        settle(2)
        if not progress_bar.format().startswith("calibrate"):
            print(f"warning: calibration ended before the grab (bar shows {progress_bar.format()!r})", file=sys.stderr)
            state["during"] = False
            return
        grab("during-run")

    window.controller.progress.connect(on_progress)
    loop = QEventLoop()

    def finished(result) -> None:
        state["result"] = result
        loop.quit()

    def failed(message: str) -> None:
        state["error"] = message
        loop.quit()

    window.runFinished.connect(finished)
    window.runFailed.connect(failed)
    QTimer.singleShot(0, window.findChild(QPushButton, "runButton").click)
    QTimer.singleShot(int(args.timeout * 1000), loop.quit)
    loop.exec()

    if "result" not in state:
        window.controller.wait()
        print(f"the run did not finish: {state.get('error', 'timed out')}", file=sys.stderr)
        return 1
    if not state["during"]:
        print("no during-run screenshot: calibration was too quick to catch; raise --calib-batches", file=sys.stderr)

    settle(10)
    grab("results")
    tabs = window.findChild(QTabWidget, "resultsTabs")
    index = next(i for i in range(tabs.count()) if tabs.tabText(i).startswith("Per-layer"))
    tabs.setCurrentIndex(index)
    settle(10)
    grab("layer-error")
    tabs.setCurrentIndex(0)

    window.controller.wait()
    window.close()
    app.processEvents()
    settings.cleanup()
    return 0 if state["during"] else 1


if __name__ == "__main__":
    sys.exit(main())
