"""Every flow on the demo and on torchvision resnet18: accuracy/agreement, latency, size, calibration time.

    .venv/bin/python benchmarks/flows.py [--models demo resnet18] [--modes fx eager qat dynamic] [--out docs/flows.md]

Each row is one qstudio run (the same engine the CLI and window use), so
FP32 and INT8 latencies in a row are measured in the same process, back to
back; read the ratios, the absolute times move with the machine's load.
resnet18 has random weights (nothing is downloaded): its "accuracy" is
agreement with FP32 on random inputs, and its speed is the real figure.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from qstudio.core.errors import QStudioError
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QATSettings, QuantSettings, Recipe

warnings.filterwarnings("ignore")


def recipe_for(model: str, mode: str) -> Recipe:
    bench = BenchmarkSettings(batch_sizes=[1], warmup=20, iters=100)
    if model == "demo":
        return Recipe(mode=mode, benchmark=bench, qat=QATSettings(epochs=1))
    return Recipe(
        mode=mode,
        input_shape=[1, 3, 224, 224],
        calib=DataSource(kind="random", limit=64),
        train=DataSource(kind="random", limit=64),
        settings=QuantSettings(calib_batches=4),
        benchmark=bench,
    )


def pct(v):
    return "—" if v is None else f"{100 * v:.2f}%"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["demo", "resnet18"])
    ap.add_argument("--modes", nargs="+", default=["fx", "eager", "qat", "dynamic"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = [
        "| model | mode | FP32 top-1 | INT8 top-1 | agreement | FP32 eager ms | FP32 TS ms | INT8 ms | speedup (eager / TS) "
        "| size MB FP32 → INT8 | calib/train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        spec = "demo" if name == "demo" else f"torchvision:{name}"
        loaded = load_model(ModelSource(spec))
        for mode in args.modes:
            if mode == "qat" and name != "demo":
                continue  # QAT on random labels says nothing
            t0 = time.perf_counter()
            try:
                r = run(run_recipe(recipe_for(name, mode), loaded))
            except QStudioError as exc:
                rows.append(f"| {name} | {mode} | {exc.problem[:90]} … | | | | | | | | |")
                continue
            deploy = r.fp32_deploy[0].median_ms if r.fp32_deploy else None
            rows.append(
                f"| {name} | {mode} | {pct(r.fp32.accuracy)} | {pct(r.int8.accuracy)} | {pct(r.evaluation.agreement)} "
                f"| {r.fp32.latency_ms:.2f} | {deploy:.2f} | {r.int8.latency_ms:.2f} "
                f"| {r.speedup:.2f}x / {r.speedup_vs_deploy:.2f}x | {r.fp32.size_mb:.2f} → {r.int8.size_mb:.2f} "
                f"| {r.calibration_seconds:.1f} |"
            )
            print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
