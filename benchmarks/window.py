"""Window responsiveness: cold start to usable, and the largest event-loop gap during real runs.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/window.py [--model torchvision:resnet50]

"Usable" = the window is built, the model is loaded and its tree is shown, so
Run can be pressed.  The heartbeat is a 10 ms QTimer on the GUI thread; the
gap is the longest time between two of its ticks while a run goes on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--calib-batches", default="8")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    import qstudio.ui.app  # noqa: F401  (imports counted separately from start-up)

    app = QApplication(sys.argv[:1])
    t_imports = time.perf_counter() - t0
    t1 = time.perf_counter()
    from qstudio.ui import create_main_window

    argv = [args.model, "--calib-batches", args.calib_batches, "--iters", "10"]
    if args.model != "demo":
        argv += ["--calib-data", "random", "--input-shape", "1,3,224,224"]
    w = create_main_window(argv)
    w.show()
    app.processEvents()
    t_start = time.perf_counter() - t1

    gaps: list[tuple[int, str]] = []
    stage = ["start"]
    w.controller.progress.connect(lambda s: stage.__setitem__(0, s.stage))
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def beat() -> None:
        now = clock.elapsed()
        gaps.append((now - last[0], stage[0]))
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    timer.start()
    loop = QEventLoop()
    w.runFinished.connect(lambda _r: loop.quit())
    w.runFailed.connect(lambda m: (print("run failed:", m), loop.quit()))
    t2 = time.perf_counter()
    w.run()
    loop.exec()
    timer.stop()
    per_stage: dict[str, int] = {}
    for gap, where in gaps:
        per_stage[where] = max(per_stage.get(where, 0), gap)
    gap, where = max(gaps)
    print(
        f"| {args.model} | imports {t_imports:.2f} s | start to usable {t_start:.2f} s "
        f"| run {time.perf_counter() - t2:.1f} s | largest gap during calibration "
        f"{per_stage.get('calibrate', 0)} ms | largest gap in the whole run {gap} ms (during {where}) |"
    )
    print("largest gap per stage (ms):", ", ".join(f"{k} {v}" for k, v in per_stage.items()))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
