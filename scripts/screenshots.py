"""Screenshots of the real qstudio window on the demo, for the docs, at 1280x800 and at 1024x700.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Writes, at 1280x800 (the README links these four):

    before-run.png          the demo loaded, nothing run yet
    during-run.png          taken while calibration is going (one bar for the whole run, "Calibrating · n%")
    results.png             after an FX run: cards, latency chart, tree with SQNR
    layer-error.png         the same, "Per-layer error" tab, the worst layer selected
    runtimes.png            the same, "Runtimes" tab: every runtime and precision side by side

and, to check the layout on smaller and other screens:

    dynamic-1280x800.png    after a Dynamic run (warnings banner, mostly float layers)
    results-1024x700.png    after an FX run at 1024x700
    layer-error-1024x700.png
    runtimes-1024x700.png
    dynamic-1024x700.png    after a Dynamic run at 1024x700

The window is built with ``create_main_window`` (what the ``qstudio`` command
runs) and its settings go to a temporary folder, so saved geometry or recent
files of whoever runs this never change the pictures.  A picture whose window
is not exactly the asked size (the window grew) is an error.
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
LARGE, SMALL = (1280, 800), (1024, 700)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument(
        "--calib-batches", type=int, default=13, help="calibration batches (the demo has 13 of 16), for time to grab"
    )
    parser.add_argument("--iters", type=int, default=20, help="timed benchmark iterations per precision")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each run")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QComboBox, QPushButton, QTabWidget

    settings = tempfile.TemporaryDirectory(prefix="qstudio-screenshots-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings.name)
    os.environ["XDG_CONFIG_HOME"] = settings.name

    from qstudio.ui import create_main_window

    app = QApplication.instance() or QApplication([sys.argv[0]])
    args.out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    def settle(rounds: int = 10) -> None:
        for _ in range(rounds):
            app.processEvents()
            time.sleep(0.02)
        app.processEvents()

    def grab(window, size: tuple[int, int], name: str) -> None:
        pixmap = window.grab()
        if (pixmap.width(), pixmap.height()) != size:
            raise SystemExit(f"{name}: the window is {pixmap.width()}x{pixmap.height()}, not {size[0]}x{size[1]}")
        path = args.out / f"{name}.png"
        if not pixmap.save(str(path)):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    def run(window, on_progress=None) -> bool:
        """Press Run and wait for the end; False (with a message) if the run failed or took too long."""
        state: dict[str, object] = {}
        loop = QEventLoop()

        def finished(result) -> None:
            state["result"] = result
            loop.quit()

        def failed(message: str) -> None:
            state["error"] = message
            loop.quit()

        window.runFinished.connect(finished)
        window.runFailed.connect(failed)
        if on_progress is not None:
            window.controller.progress.connect(on_progress)
        QTimer.singleShot(0, window.findChild(QPushButton, "runButton").click)
        QTimer.singleShot(int(args.timeout * 1000), loop.quit)
        loop.exec()
        window.runFinished.disconnect(finished)
        window.runFailed.disconnect(failed)
        if on_progress is not None:
            window.controller.progress.disconnect(on_progress)
        if "result" not in state:
            window.controller.wait()
            problems.append(f"a run did not finish: {state.get('error', 'timed out')}")
            return False
        settle()
        return True

    def show_tab(window, prefix: str) -> None:
        tabs = window.findChild(QTabWidget, "resultsTabs")
        tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i).startswith(prefix)))
        settle()

    def set_mode(window, mode: str) -> None:
        combo = window.findChild(QComboBox, "modeCombo")
        combo.setCurrentIndex(combo.findData(mode))
        settle()

    for size in (LARGE, SMALL):
        suffix = "" if size == LARGE else f"-{size[0]}x{size[1]}"
        window = create_main_window(["--calib-batches", str(args.calib_batches), "--iters", str(args.iters)])
        if window.controller.session.loaded is None:
            print(f"the demo did not load: {window.errors.last_message}", file=sys.stderr)
            return 1
        window.resize(*size)
        window.show()
        settle()
        during: dict[str, bool] = {"taken": False}

        def on_progress(step, window=window, size=size, during=during) -> None:
            # the first calibration batches: grab while the rest of calibration is still going
            if during["taken"] or step.stage != "calibrate" or step.done < 2 or step.done >= step.total:
                return
            during["taken"] = True
            settle(2)
            if not window.progress_bar.format().startswith("Calibrating"):
                print(f"warning: calibration ended before the grab ({window.progress_bar.format()!r})", file=sys.stderr)
                during["taken"] = False
                return
            grab(window, size, "during-run")

        if size == LARGE:
            grab(window, size, "before-run")
        if run(window, on_progress if size == LARGE else None):
            show_tab(window, "Latency")
            grab(window, size, f"results{suffix}")
            show_tab(window, "Per-layer")
            window.tree_panel.select_module(window.controller.session.last.layers[0].name)  # the worst layer
            settle()
            grab(window, size, f"layer-error{suffix}")
            show_tab(window, "Runtimes")
            grab(window, size, f"runtimes{suffix}")
            show_tab(window, "Latency")
        if size == LARGE and not during["taken"]:
            problems.append("no during-run screenshot: calibration was too quick to catch; raise --calib-batches")
        set_mode(window, "dynamic")
        if run(window):
            grab(window, size, f"dynamic-{size[0]}x{size[1]}")
        window.controller.wait()
        window.close()
        app.processEvents()

    settings.cleanup()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
