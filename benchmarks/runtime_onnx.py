"""The ONNX Runtime target against FP32 eager PyTorch: batch-1 latency, build time, closeness to FP32.

    .venv/bin/python benchmarks/runtime_onnx.py [--models resnet18 mobilenet_v2] [--batches 1] [--threads N]

For each model, in ONE process and interleaved slice by slice
(qstudio.core.benchmark.benchmark_interleaved): FP32 eager torch, the
``OnnxRuntime`` FP32 artifact and its INT8 artifact, each called exactly as the
pipeline calls them (torch tensor in, torch tensor out).  The models are
torchvision's with random weights and BatchNorm settled on random batches
(common.settle_batchnorm); INT8 calibrates on 4 batches of 8 random images, as
a torchvision run without data does.  Prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import build_model, environment_lines, markdown_table

from qstudio.core import compare
from qstudio.core.benchmark import benchmark_interleaved
from qstudio.core.data import Dataset
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings
from qstudio.core.runtimes import BuildInput, get_runtime

CALIB_BATCHES, CALIB_BATCH = 4, 8


def measure(name: str, batches: list[int], threads: int, iters: int) -> list[list[str]]:
    model, shape = build_model(name)
    gen = torch.Generator().manual_seed(0)
    calib = Dataset(torch.randn(CALIB_BATCHES * CALIB_BATCH, *shape[1:], generator=gen), None, "random", True)
    evals = Dataset(torch.randn(32, *shape[1:], generator=gen), None, "random", True)
    inp = BuildInput(model, calib.inputs[:1], calib, CALIB_BATCHES, CALIB_BATCH, threads=threads)
    runtime = get_runtime("onnx")
    arts, seconds = {}, {}
    for precision in ("fp32", "int8"):  # in the pipeline's order: INT8 reuses the FP32 build's export
        start = time.perf_counter()
        arts[precision] = runtime.build(inp, precision)
        seconds[precision] = time.perf_counter() - start
    contenders = {"FP32 eager": model, **{art.label: art for art in arts.values()}}
    settings = BenchmarkSettings(batch_sizes=batches, threads=threads, warmup=5, iters=iters)
    stats = run(benchmark_interleaved(contenders, lambda b: evals.inputs[:b], settings))
    rows = []
    for label, per_batch in stats.items():
        art = next((a for a in arts.values() if a.label == label), None)
        cos = run(compare.evaluate(model, art, evals, batch_size=8)).cosine if art else 1.0
        build = f"{seconds[art.precision]:.1f} s" if art else "-"
        size = f"{art.size_mb:.1f}" if art else "-"
        for s in per_batch:
            eager = stats["FP32 eager"][batches.index(s.batch_size)].median_ms
            row = [name, label, str(s.batch_size), f"{s.median_ms:.2f}", f"{eager / s.median_ms:.2f}x"]
            rows.append([*row, f"{s.cpu_ratio or 0:.2f}", build, size, f"{cos:.4f}"])
        if art and art.notes:
            print(f"  {name} {label} notes: {'; '.join(art.notes)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows += measure(name, args.batches, args.threads, args.iters)
    print("\n".join(environment_lines()))
    print(f"{args.threads} threads; median of {args.iters} calls per contender, interleaved in 10 slices.\n")
    header = ["model", "contender", "batch", "median ms", "vs eager", "cpu/wall", "build", "MB", "cosine vs FP32"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
