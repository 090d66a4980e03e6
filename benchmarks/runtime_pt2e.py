"""PT2E (torch.compile) against FP32 eager: build time, median latency timed interleaved in one process, cosine.

    .venv/bin/python benchmarks/runtime_pt2e.py [--models resnet18 mobilenet_v2] [--batches 1] [--threads 1]

For each model: build the PT2E FP32 and INT8 artifacts (torch.export, torchao
PT2E calibration for INT8, inductor compile for batch 1 and 8 - the build time
printed includes all of it), then time FP32 eager, PT2E FP32 and PT2E INT8
side by side with :func:`qstudio.core.benchmark.benchmark_interleaved` and
compare each artifact's outputs with eager's on the calibration images.
Random weights with settled BatchNorm statistics (nothing is downloaded), so
the cosine is meaningful but accuracy is not.  Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")

from qstudio.core import compare  # noqa: E402
from qstudio.core.benchmark import benchmark_interleaved  # noqa: E402
from qstudio.core.data import Dataset  # noqa: E402
from qstudio.core.progress import run  # noqa: E402
from qstudio.core.recipe import BenchmarkSettings  # noqa: E402
from qstudio.core.runtimes import BuildInput, RuntimeUnavailable, get_runtime  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import build_model, environment_lines  # noqa: E402

CALIB_BATCHES, CALIB_BATCH = 4, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for line in environment_lines():
        print(line)
    runtime = get_runtime("pt2")
    print(f"runtime {runtime.title}: {runtime.missing() or 'available'}; threads {args.threads}\n")
    rows = []
    for name in args.models:
        model, shape = build_model(name)
        gen = torch.Generator().manual_seed(0)
        calib = Dataset(
            torch.randn(CALIB_BATCHES * CALIB_BATCH, *shape[1:], generator=gen), None, "random images", is_random=True
        )
        inp = BuildInput(
            model=model,
            example=calib.inputs[:1],
            calib=calib,
            calib_batches=CALIB_BATCHES,
            batch_size=CALIB_BATCH,
            threads=args.threads,
        )
        contenders: dict = {"FP32 eager": model}
        facts: dict[str, tuple[float, float, float]] = {}
        for precision in ("fp32", "int8"):
            start = time.perf_counter()
            try:
                art = runtime.build(inp, precision)
            except RuntimeUnavailable as exc:
                print(f"{name} PT2E {precision}: unavailable: {exc}")
                continue
            seconds = time.perf_counter() - start
            cos = run(compare.evaluate(model, art, calib, batch_size=CALIB_BATCH)).cosine
            contenders[art.label] = art
            facts[art.label] = (seconds, cos, art.size_mb)
            print(
                f"{name} {art.label}: built in {seconds:.1f} s, cosine {cos:.4f}, {art.size_mb:.1f} MB, notes {art.notes}"
            )
        settings = BenchmarkSettings(
            batch_sizes=args.batches, threads=args.threads, warmup=args.warmup, iters=args.iters
        )
        stats = run(
            benchmark_interleaved(contenders, lambda b: calib.sample(b), settings)  # noqa: B023
        )
        for label, per_batch in stats.items():
            for s in per_batch:
                seconds, cos, size = facts.get(label, (float("nan"), 1.0, float("nan")))
                eager = next(e for e in stats["FP32 eager"] if e.batch_size == s.batch_size)
                rows.append((name, label, s.batch_size, s.median_ms, eager.median_ms / s.median_ms, seconds, cos, size))
        for label, art in contenders.items():
            if label != "FP32 eager":  # a later strict torch.export (the INT8 build) resets dynamo: compiled again
                print(f"{name} {label}: warmed up again {art.rewarms}x, {art.unsettled_compiles} unsettled compiles")
        print()
    print("| model | contender | batch | median ms | x eager | build s | cosine | MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, batch, ms, speedup, seconds, cos, size in rows:
        print(f"| {name} | {label} | {batch} | {ms:.2f} | {speedup:.2f} | {seconds:.1f} | {cos:.4f} | {size:.1f} |")


if __name__ == "__main__":
    main()
