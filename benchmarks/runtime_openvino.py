"""OpenVINO against FP32 eager torch at batch 1: latency, closeness to FP32, build time (prints, asserts nothing).

    .venv/bin/python benchmarks/runtime_openvino.py [--models resnet18 mobilenet_v2] [--iters 60] [--threads N]

Everything runs in one process and the contenders take turns
(qstudio.core.benchmark.benchmark_interleaved, as the pipeline times them),
so a busy machine slows them alike: read the ratios; cpu/wall is the
process's CPU seconds per wall second during the calls.  Besides what the
pipeline builds (FP32, INT8 with f32 float parts, BF16 where the CPU has
it) it times the alternatives behind the runtime's choices: INT8 with bf16
float parts (OpenVINO's default hint on this CPU), ``compiled_model(...)``
instead of our InferRequest, and a static batch-1 graph instead of the
dynamic batch.  Weights are random with settled BatchNorm; calibration is
16 random images in 2 batches of 8, like a small qstudio run.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import build_model, environment_lines, markdown_table

from qstudio.core import compare
from qstudio.core.benchmark import benchmark_interleaved
from qstudio.core.data import Dataset
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings
from qstudio.core.runtimes import openvino_runtime as ovr
from qstudio.core.runtimes.base import BuildInput, cpu_has_bf16

warnings.filterwarnings("ignore")
CALIB_BATCHES, CALIB_BATCH = 2, 8


def build_all(model: torch.nn.Module, calib: Dataset, threads: int) -> tuple[dict[str, Any], dict[str, float]]:
    """What the pipeline builds, timed, plus the alternatives the runtime's choices were made against."""
    inp = BuildInput(model, calib.inputs[:1], calib, CALIB_BATCHES, CALIB_BATCH, threads=threads)
    runtime = ovr.OpenVinoRuntime()
    arts: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for precision in runtime.precisions():
        start = time.perf_counter()
        art = runtime.build(inp, precision)
        seconds[art.label] = time.perf_counter() - start
        arts[art.label] = art
    int8, fp32 = arts["OpenVINO INT8"], arts["OpenVINO FP32"]
    if cpu_has_bf16():  # the same INT8 graph with OpenVINO's default float hint on this CPU
        compiled = ovr.compile_model(ovr.core().read_model(str(int8.ir_files[0])), "int8", threads, hint="bf16")
        arts["OpenVINO INT8, bf16 float parts"] = ovr.OpenVinoArtifact(compiled, "int8", int8.ir_files)
    static = ovr.core().read_model(str(fp32.ir_files[0]))
    static.reshape([1, *calib.inputs.shape[1:]])
    compiled = ovr.compile_model(static, "fp32", threads)
    arts["OpenVINO FP32, static batch 1"] = ovr.OpenVinoArtifact(compiled, "fp32", fp32.ir_files)
    return arts, seconds


def measure(name: str, threads: int, iters: int) -> list[list[str]]:
    model, shape = build_model(name)
    gen = torch.Generator().manual_seed(0)
    calib = Dataset(torch.randn(CALIB_BATCHES * CALIB_BATCH, *shape[1:], generator=gen), None, "random", True)
    evals = Dataset(torch.randn(32, *shape[1:], generator=gen), None, "random", True)
    arts, seconds = build_all(model, calib, threads)
    fp32 = arts["OpenVINO FP32"].compiled
    contenders: dict[str, Callable[..., Any]] = {"FP32 eager": model, **arts}
    contenders["OpenVINO FP32 via compiled_model(...)"] = lambda arr: fp32({0: arr})
    inputs: dict[str, Callable[[int], Any]] = {label: (lambda b: evals.inputs[:b]) for label in contenders}
    inputs["OpenVINO FP32 via compiled_model(...)"] = lambda b: evals.inputs[:b].numpy()
    settings = BenchmarkSettings(batch_sizes=[1], threads=threads, warmup=5, iters=iters)
    stats = run(benchmark_interleaved(contenders, inputs, settings))
    eager = stats["FP32 eager"][0].median_ms
    rows = []
    for label, (s,) in stats.items():
        art = arts.get(label)
        batch = 1 if "static" in label else 8
        cos = f"{run(compare.evaluate(model, art, evals, batch_size=batch)).cosine:.5f}" if art else "-"
        calib_cos = f"{run(compare.evaluate(model, art, calib, batch_size=batch)).cosine:.5f}" if art else "-"
        build = f"{seconds[label]:.1f} s" if label in seconds else "-"
        size = f"{art.size_mb:.1f}" if art else "-"
        row = [name, label, f"{s.median_ms:.2f}", f"{eager / s.median_ms:.2f}x", f"{s.cpu_ratio or 0:.2f}"]
        rows.append([*row, build, size, cos, calib_cos])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows += measure(name, args.threads, args.iters)
    print("\n".join(environment_lines()))
    print(f"{args.threads} threads; batch 1; median of {args.iters} calls per contender, interleaved in 10 slices.")
    print(f"OpenVINO compile config: {ovr.compile_config('int8', args.threads)}\n")
    header = ["model", "contender", "median ms", "vs eager", "cpu/wall", "build", "MB", "cosine eval", "cosine calib"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
