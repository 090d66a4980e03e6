"""Every runtime and precision side by side, through qstudio's own pipeline, for the models of docs/performance.md.

For each model (the demo, and torchvision resnet18, mobilenet_v2, resnet50 with
random weights and settled BatchNorm) one ``qstudio`` run in FX PTQ mode with
``--target auto`` measures FP32 eager, frozen TorchScript FP32, torch.ao INT8
and every installed runtime (ONNX Runtime, OpenVINO; PT2E with ``--pt2``) at
batch 1 and 8, interleaved in one child process, and prints:

* a table per model: median ms per batch size, speedup over the fastest
  true-FP32 runtime (named), agreement and cosine with FP32 eager;
* what ``--target auto`` chose, and its latency over the fastest INT8 runtime
  measured in the same run (the issue's goal: within 5%).

Run on a quiet machine: ``python benchmarks/runtimes.py [--models demo resnet18] [--pt2] [--iters 40]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODELS, environment_lines, settle_batchnorm

from qstudio.core.loading import load_model
from qstudio.core.progress import run
from qstudio.core.recipe import (
    BenchmarkSettings,
    DataSource,
    DeploySettings,
    ModelSource,
    QuantSettings,
    Recipe,
)


def run_model(name: str, iters: int, pt2: bool):
    from qstudio.core.pipeline import run_recipe

    spec = "demo" if name == "demo" else f"torchvision:{name}"
    loaded = load_model(ModelSource(spec))
    if name != "demo":
        settle_batchnorm(loaded.module, list(loaded.input_shape))
    runtimes = ["onnx", "openvino", *(["pt2"] if pt2 else [])]
    recipe = Recipe(
        model=ModelSource(spec),
        mode="fx",
        settings=QuantSettings(calib_batches=8 if name == "demo" else 4, batch_size=8),
        calib=DataSource(kind="demo", split="calib") if name == "demo" else DataSource(kind="random"),
        benchmark=BenchmarkSettings(batch_sizes=[1, 8], warmup=5, iters=iters),
        deploy=DeploySettings(runtimes=runtimes, target="auto"),
    )
    start = time.perf_counter()
    result = run(run_recipe(recipe, loaded), lambda _s: None)
    return result, time.perf_counter() - start


def table(result) -> list[str]:
    from qstudio.core.latency_figures import runtime_batch_sizes, runtime_rows

    sizes = runtime_batch_sizes(result)
    best = {
        b: min(
            (
                r.latency_at(b).median_ms
                for r in runtime_rows(result)
                if r.figure.precision == "fp32" and r.latency_at(b)
            ),
            default=None,
        )
        for b in sizes
    }
    head = (
        "| runtime | " + " | ".join(f"b{b} ms | b{b} vs FP32 best" for b in sizes) + " | agreement | cosine | build s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runtime_rows(result):
        f = r.figure
        cells = []
        for b in sizes:
            st = r.latency_at(b)
            cells.append(f"{st.median_ms:.2f}" if st else "—")
            cells.append(f"{best[b] / st.median_ms:.2f}x" if st and best[b] else "—")
        marks = " **(baseline)**" if r.baseline else ""
        marks += " **(auto)**" if r.target else ""
        lines.append(
            f"| {f.label}{marks} | "
            + " | ".join(cells)
            + f" | {f.agreement:.4f} | {f.cosine:.4f} | {f.build_seconds:.1f} |"
        )
    return lines


def auto_vs_fastest(result) -> list[str]:
    from qstudio.core.latency_figures import runtime_batch_sizes, runtime_rows

    rows = runtime_rows(result)
    chosen = next((r for r in rows if r.target), None)
    out = [f"auto chose: {chosen.figure.label if chosen else 'nothing'} ({result.target_note})"]
    for b in runtime_batch_sizes(result):
        int8 = [
            (r.latency_at(b).median_ms, r.figure.label)
            for r in rows
            if r.figure.precision == "int8" and r.latency_at(b)
        ]
        fastest = min(int8)
        mine = chosen.latency_at(b).median_ms if chosen and chosen.latency_at(b) else None
        ratio = f"{mine / fastest[0]:.3f}" if mine else "—"
        out.append(f"batch {b}: fastest INT8 {fastest[1]} {fastest[0]:.2f} ms; auto's / fastest = {ratio}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--pt2", action="store_true", help="also measure PT2E (torch.compile: minutes to build here)")
    args = p.parse_args()
    print("\n".join(environment_lines()))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for name in args.models:
        result, seconds = run_model(name, args.iters, args.pt2)
        timing = result.timing
        print(
            f"\n### {name}  (whole run {seconds:.0f} s; timing {'stable' if timing and timing.stable else 'UNSTABLE'})\n"
        )
        print("\n".join(table(result)))
        print()
        print("\n".join(auto_vs_fastest(result)))
        for line in result.runtime_notes:
            print(f"skipped: {line}")
        best = result.fp32_best
        print(
            f"headline: {result.speedup_vs_fp32_best:.2f}x vs {best.label}; {result.speedup:.2f}x vs FP32 eager "
            f"(torch.ao INT8 {result.speedup_vs_deploy or 0:.2f}x vs frozen TorchScript FP32)"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
