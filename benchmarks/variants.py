"""Which PyTorch CPU path is fastest here? Backends, freezing, optimize_for_inference, channels-last, threads.

    .venv/bin/python benchmarks/variants.py [--model resnet18] [--batch 1] [--iters 200] [--out docs/variants.md]

Every variant of one model is timed in the same process, interleaved in
slices (qstudio.core.benchmark.benchmark_interleaved), so the ratios are
comparable even on a noisy machine.  INT8 variants are a hand-written
torch.ao FX PTQ of the same FP32 model (get_default_qconfig_mapping(backend),
calibrated on the same random batches), converted with the engine set to that
backend, then traced; the runtime engine is switched to the variant's backend
around each call (the quantized kernels dispatch on it).  Random weights:
speed does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")

from qstudio.core.benchmark import benchmark_interleaved  # noqa: E402
from qstudio.core.progress import run  # noqa: E402
from qstudio.core.recipe import BenchmarkSettings  # noqa: E402
from qstudio.core.torchscript import freeze_fp32  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import bare_fx_ptq, build_model, engine, environment_lines, markdown_table, with_engine  # noqa: E402


def trace(model: torch.nn.Module, x: torch.Tensor, *, freeze: bool, optimize: bool = False):
    with torch.no_grad():
        ts = torch.jit.trace(model, (x,), check_trace=False).eval()
    if freeze:
        ts = torch.jit.freeze(ts)
    if optimize:
        ts = torch.jit.optimize_for_inference(ts)
    return ts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    model, shape = build_model(args.model)
    x = torch.randn(args.batch, *shape[1:])
    calib = [torch.randn(8, *shape[1:]) for _ in range(4)]
    cl = x.contiguous(memory_format=torch.channels_last)

    variants: dict[str, tuple] = {}
    variants["FP32 eager"] = (model, x)
    variants["FP32 eager, channels-last"] = (model.to(memory_format=torch.channels_last), cl)
    model = model.to(memory_format=torch.contiguous_format)
    variants["FP32 traced"] = (trace(model, x, freeze=False), x)
    variants["FP32 frozen"] = (trace(model, x, freeze=True), x)
    variants["FP32 frozen + optimize_for_inference"] = (freeze_fp32(model, x), x)
    variants["FP32 frozen + optimize_for_inference, channels-last"] = (freeze_fp32(model, cl), cl)
    for backend in ("x86", "fbgemm", "onednn"):
        q = bare_fx_ptq(model, backend, calib)
        with engine(backend):
            variants[f"INT8 {backend}, FX GraphModule"] = (with_engine(backend, q), x)
            variants[f"INT8 {backend}, traced"] = (with_engine(backend, trace(q, x, freeze=False)), x)
            frozen = trace(q, x, freeze=True)
            variants[f"INT8 {backend}, frozen"] = (with_engine(backend, frozen), x)
            if backend == "x86":
                variants["INT8 x86, frozen, channels-last input"] = (with_engine(backend, frozen), cl)
                try:
                    variants["INT8 x86, frozen + optimize_for_inference"] = (
                        with_engine(backend, trace(q, x, freeze=True, optimize=True)),
                        x,
                    )
                except Exception as exc:  # report, do not stop
                    print(f"optimize_for_inference on INT8 failed: {exc}", file=sys.stderr)

    rows = []
    for threads in (1, 2):
        settings = BenchmarkSettings(batch_sizes=[args.batch], threads=threads, warmup=10, iters=args.iters)
        stats = run(
            benchmark_interleaved(
                {k: v[0] for k, v in variants.items()},
                {k: (lambda b, t=v[1]: t) for k, v in variants.items()},
                settings,
            )
        )
        eager = stats["FP32 eager"][0].median_ms
        for k, v in stats.items():
            rows.append(
                [k, str(threads), f"{v[0].median_ms:.2f}", f"{v[0].p90_ms:.2f}", f"{eager / v[0].median_ms:.2f}x"]
            )
            print(" | ".join(rows[-1]), file=sys.stderr)
    table = markdown_table(["variant", "threads", "median ms", "p90 ms", "vs FP32 eager (same threads)"], rows)
    text = (
        f"## Variants: {args.model}, batch {args.batch}\n\n"
        f"Command: `.venv/bin/python benchmarks/variants.py --model {args.model} --batch {args.batch} "
        f"--iters {args.iters}`\n\n" + "\n".join(environment_lines()) + "\n\n" + table + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
