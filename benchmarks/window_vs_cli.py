"""The window's speedup against the CLI's, with the benchmark in a child process and in qstudio's own process.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/window_vs_cli.py [--models demo resnet18] [--repeats 2]

All in one process, as a window session is: the CLI's path runs ``run_recipe``
on the main thread; the window's path runs the same generator in the
window's own worker (:class:`qstudio.ui.worker.GeneratorTask` on Qt's global
thread pool), after the main thread has used torch.  Each path runs with the
benchmark in a fresh child process (the default) and in this process
(``QSTUDIO_BENCH_IN_PROCESS=1``, the path before).  resnet18 has random
weights with BatchNorm settled on random batches (nothing is downloaded).
Only the torch rows are measured (``QSTUDIO_RUNTIMES`` empty) unless
``--runtimes`` names others.  Quote the load average printed with the table.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load(name: str):
    """The model as the CLI loads it (its source kept, so a child can load it again), BatchNorm settled."""
    from common import settle_batchnorm

    from qstudio.core.loading import load_model
    from qstudio.core.recipe import DataSource, ModelSource, Recipe

    spec = "demo" if name == "demo" else f"torchvision:{name}"
    loaded = load_model(ModelSource(spec))
    recipe = Recipe(model=loaded.source)
    if name != "demo":
        settle_batchnorm(loaded.module, [1, 3, 224, 224])
        recipe.calib = DataSource(kind="random")
        recipe.input_shape = [1, 3, 224, 224]
        recipe.settings.calib_batches = 4
    return loaded, recipe


def on_main_thread(recipe, loaded):
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.progress import run

    return run(run_recipe(recipe, loaded))


def in_window_worker(recipe, loaded):
    """The window's worker: the same GeneratorTask the controller starts, on Qt's global thread pool."""
    from PySide6.QtCore import QEventLoop

    from qstudio.core.pipeline import run_recipe
    from qstudio.ui.worker import GeneratorTask

    task = GeneratorTask(lambda: run_recipe(recipe, loaded))
    out: dict[str, object] = {}
    loop = QEventLoop()
    task.signals.returned.connect(lambda r: out.__setitem__("result", r))
    task.signals.errored.connect(lambda e: out.__setitem__("error", e))
    task.signals.finished.connect(loop.quit)
    task.start()
    loop.exec()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["result"]


def row(model: str, path: str, where: str, r) -> list[str]:
    deploy = min(r.fp32_deploy, key=lambda s: s.batch_size).median_ms if r.fp32_deploy else float("nan")
    start = f"{r.timing.startup_seconds:.1f}" if r.timing.isolated else "-"
    return [
        model,
        path,
        where,
        f"{r.fp32.latency_ms:.3f}",
        f"{deploy:.3f}",
        f"{r.int8.latency_ms:.3f}",
        f"{r.speedup:.2f}x",
        f"{r.speedup_vs_deploy or float('nan'):.2f}x",
        "yes" if r.timing.stable else "no",
        start,
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["demo", "resnet18"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None, help="benchmark.threads (default: torch's)")
    ap.add_argument("--runtimes", default="", help="QSTUDIO_RUNTIMES: a comma list of other runtimes to measure")
    args = ap.parse_args()
    os.environ["QSTUDIO_RUNTIMES"] = args.runtimes
    from PySide6.QtCore import QCoreApplication

    from qstudio.core.child_benchmark import IN_PROCESS_ENV

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])  # noqa: F841 (the worker's signals need it)
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    rows: list[list[str]] = []
    ratios: dict[tuple[str, str], list[float]] = {}
    for name in args.models:
        loaded, recipe = load(name)
        recipe.benchmark.iters = args.iters
        recipe.benchmark.threads = args.threads
        for _ in range(args.repeats):
            for where, flag in (("child process", None), ("own process", "1")):
                if flag is None:
                    os.environ.pop(IN_PROCESS_ENV, None)
                else:
                    os.environ[IN_PROCESS_ENV] = flag
                results = {}
                for path, runner in (("CLI (main thread)", on_main_thread), ("window (worker)", in_window_worker)):
                    started = time.perf_counter()
                    r = runner(copy.deepcopy(recipe), loaded)
                    assert r.timing.isolated == (flag is None), r.warnings
                    results[path] = r
                    rows.append(row(name, path, where, r))
                    print(" | ".join(rows[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
                cli, window = results["CLI (main thread)"], results["window (worker)"]
                ratios.setdefault((name, where), []).append(window.speedup / cli.speedup)
    os.environ.pop(IN_PROCESS_ENV, None)
    header = ["model", "path", "benchmark in", "FP32 eager ms", "FP32 TS ms", "INT8 ms", "speedup", "vs TS"]
    header += ["timing stable", "child start-up s"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| model | benchmark in | window speedup / CLI speedup (median of repeats) |")
    print("|---|---|---|")
    for (name, where), values in ratios.items():
        print(f"| {name} | {where} | {statistics.median(values):.3f} ({', '.join(f'{v:.3f}' for v in values)}) |")
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
