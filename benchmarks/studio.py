"""What the studio itself costs: calibrate + convert overhead, model copies in memory, SQNR cost, timer honesty.

    .venv/bin/python benchmarks/studio.py [--overhead resnet18 resnet50] [--memory resnet50] [--out docs/performance-studio.md]

1. Overhead: wall time of qstudio's FX PTQ flow (preflight trace + memory
   check, fusion, prepare_fx, calibration, float reference, convert_fx) against
   the bare torch.ao script (deepcopy, prepare_fx, calibrate, convert_fx) on
   the same calibration tensors with the same observers (histogram
   activations, per-channel weights), alternating bare / qstudio runs.
2. Memory: during calibration and right after convert, how many copies of the
   model's float weights are alive (unique tensor storages held by live
   nn.Modules, divided by the model's own weight bytes), and peak RSS of each
   path in a fresh subprocess.
3. Per-layer error cost: qstudio's SQNR comparison (compare.layer_errors) next
   to one calibration pass over the same batches.
4. Timer honesty: qstudio's per-call median against torch.utils.benchmark's
   blocked_autorange on the same model, input and thread count.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")

from qstudio.core import benchmark as bench  # noqa: E402
from qstudio.core import compare, torchscript  # noqa: E402
from qstudio.core.flows import get_flow  # noqa: E402
from qstudio.core.flows.base import FlowInput  # noqa: E402
from qstudio.core.loading import load_model  # noqa: E402
from qstudio.core.pipeline import load_run_data, resolve_groups  # noqa: E402
from qstudio.core.progress import run  # noqa: E402
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import bare_fx_ptq, environment_lines, markdown_table, settle_batchnorm  # noqa: E402

CALIB_BATCHES, CALIB_BATCH = 4, 8


def setup(name: str, *, settle: bool = True, batches: int = CALIB_BATCHES, batch: int = CALIB_BATCH):
    settings = QuantSettings(calib_batches=batches, batch_size=batch, backend="x86")
    if name == "demo":
        recipe = Recipe(model=ModelSource("demo"), mode="fx", settings=settings)
    else:
        recipe = Recipe(
            model=ModelSource(f"torchvision:{name}"),
            mode="fx",
            input_shape=[1, 3, 224, 224],
            calib=DataSource(kind="random", limit=batches * batch),
            settings=settings,
        )
    loaded = load_model(recipe.model)
    if name != "demo" and settle:
        settle_batchnorm(loaded.module, recipe.input_shape)  # random weights: give BN real statistics
    data = load_run_data(recipe, loaded)
    return recipe, loaded.module.eval(), data


def bare(model, calib, on_calibrating=None):
    """The FX PTQ script from the PyTorch docs (x86)."""
    return bare_fx_ptq(model, "x86", calib, on_calibrating)


def studio(recipe, model, data, on_calibrating=None):
    """qstudio's flow, exactly as the pipeline calls it (preflight + run)."""
    groups, _ = resolve_groups(recipe, model)
    flow = get_flow(recipe)
    inp = FlowInput(model, recipe, groups, data.calib, data.calib.sample(1), None, data.eval)
    flow.preflight(inp)

    def progress(p):
        if p.stage == "calibrate" and p.done == 1 and on_calibrating:
            on_calibrating()

    return run(flow.run(inp), on_progress=progress)


def weight_copies(model: torch.nn.Module) -> float:
    """Bytes of unique float tensor storages held by all live nn.Modules / the model's own float bytes."""
    own = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())
    seen: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Module):
            for t in [*obj.parameters(recurse=False), *obj.buffers(recurse=False)]:
                if t.is_floating_point() and not t.is_quantized:
                    st = t.untyped_storage()
                    seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values()) / own


def overhead(names: list[str], repeats: int, sizes: list[tuple[int, int]]) -> list[list[str]]:
    rows = []
    for batches, batch in sizes:
        for name in names:
            recipe, model, data = setup(name, batches=batches, batch=batch)
            calib = [x for x, _ in data.calib.batches(batch, batches)]
            times: dict[str, list[float]] = {"bare": [], "qstudio": []}
            for _ in range(repeats):
                for path in ("bare", "qstudio"):
                    gc.collect()
                    t = time.perf_counter()
                    bare(model, calib) if path == "bare" else studio(recipe, model, data)
                    times[path].append(time.perf_counter() - t)
            b, q = statistics.median(times["bare"]), statistics.median(times["qstudio"])
            rows.append(
                [name, f"{batches}×{batch}", str(repeats), f"{b:.2f}", f"{q:.2f}", f"{q - b:+.2f}", f"{q / b:.3f}x"]
            )
            print(" | ".join(rows[-1]), file=sys.stderr)
    return rows


def _peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM).

    Not getrusage's ru_maxrss: on Linux that survives fork + exec, so a child
    started by a big parent reports the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(name: str, path: str) -> None:
    """Run in a fresh process: copies of the weights alive at calibration and after convert, peak RSS."""
    # No BatchNorm settling here: its batches of 16 would set the RSS high-water mark before we start.
    recipe, model, data = setup(name, settle=False)
    calib = [x for x, _ in data.calib.batches(CALIB_BATCH, CALIB_BATCHES)]
    gc.collect()
    base_kb = _peak_rss_kb()
    seen = {}

    def at_calibration():
        seen["calibrating"] = weight_copies(model)

    result = bare(model, calib, at_calibration) if path == "bare" else studio(recipe, model, data, at_calibration)
    gc.collect()
    seen["after convert"] = weight_copies(model)
    peak_kb = _peak_rss_kb()
    own_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    del result
    print(
        json.dumps(
            {
                "calibrating": seen["calibrating"],
                "after": seen["after convert"],
                "peak_over_loaded_mb": (peak_kb - base_kb) / 1024,
                "model_mb": own_mb,
            }
        )
    )


def memory(names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        for path in ("bare", "qstudio"):
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--memory-child", name, path], check=True, capture_output=True, text=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            m = json.loads(out)
            rows.append(
                [
                    name,
                    path,
                    f"{m['model_mb']:.0f}",
                    f"{m['calibrating']:.2f}",
                    f"{m['after']:.2f}",
                    f"{m['peak_over_loaded_mb']:.0f}",
                ]
            )
            print(" | ".join(rows[-1]), file=sys.stderr)
    return rows


def sqnr_cost(names: list[str]) -> list[list[str]]:
    rows = []
    for name in names:
        recipe, model, data = setup(name)
        q = studio(recipe, model, data)
        bs = recipe.settings.batch_size
        t = time.perf_counter()
        errors = run(compare.layer_errors(q, data.calib, bs, CALIB_BATCHES))
        sq = time.perf_counter() - t
        # one plain calibration pass over the same batches, for scale
        rows.append(
            [name, str(len(errors)), f"{q.calibration_seconds:.2f}", f"{sq:.2f}", f"{sq / q.calibration_seconds:.2f}x"]
        )
        print(" | ".join(rows[-1]), file=sys.stderr)
    return rows


def honesty(names: list[str], threads: int) -> list[list[str]]:
    rows = []
    for name in names:
        recipe, model, data = setup(name)
        q = studio(recipe, model, data)
        x = data.calib.sample(1)
        int8, _ = torchscript.to_torchscript(q.module, x)
        for label, fn in (
            ("FP32 eager", model),
            ("FP32 TorchScript", torchscript.freeze_fp32(model, x)),
            ("INT8 export", int8),
        ):
            # Alternate the two timers three times so a change in machine load hits both alike.
            ours_ms, theirs_ms = [], []
            for _ in range(3):
                stats = run(
                    bench.benchmark(
                        fn, lambda b, x=x: x, BenchmarkSettings(threads=threads, warmup=20, iters=100), label
                    )
                )
                ours_ms.append(stats[0].median_ms)
                theirs_ms.append(bench.compare_with_torch_utils_benchmark(fn, x, threads, min_run_time=1.0))
            ours, theirs = statistics.median(ours_ms), statistics.median(theirs_ms)
            rows.append([name, label, f"{ours:.3f}", f"{theirs:.3f}", f"{ours / theirs:.3f}"])
            print(" | ".join(rows[-1]), file=sys.stderr)
    return rows


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--overhead", nargs="*", default=["resnet18", "resnet50"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--calib",
        nargs="+",
        default=["4x8", "16x16"],
        help="calibration batches x batch size (16x16 is qstudio's default)",
    )
    ap.add_argument("--memory", nargs="*", default=["resnet50"])
    ap.add_argument("--sqnr", nargs="*", default=["demo", "resnet18", "resnet50"])
    ap.add_argument("--honesty", nargs="*", default=["demo", "resnet18"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    parts = ["Command: `.venv/bin/python benchmarks/studio.py`", "\n".join(environment_lines())]
    if args.overhead:
        parts += [
            "### Studio overhead: calibrate + convert wall time (median of alternating runs)",
            markdown_table(
                [
                    "model",
                    "calibration batches",
                    "runs each",
                    "bare script s",
                    "qstudio flow s",
                    "difference s",
                    "qstudio / bare",
                ],
                overhead(args.overhead, args.repeats, [tuple(map(int, c.split("x"))) for c in args.calib]),
            ),
        ]
    if args.memory:
        parts += [
            "### Memory: copies of the float weights alive (1.00 = the loaded model alone)",
            markdown_table(
                ["model", "path", "weights MB", "during calibration", "after convert", "peak RSS above loaded, MB"],
                memory(args.memory),
            ),
        ]
    if args.sqnr:
        parts += [
            "### Per-layer error (SQNR) cost against one calibration pass over the same batches",
            markdown_table(
                ["model", "layers compared", "calibration s", "SQNR comparison s", "ratio"], sqnr_cost(args.sqnr)
            ),
        ]
    if args.honesty:
        parts += [
            f"### Timer honesty: qstudio's median vs torch.utils.benchmark (batch 1, {args.threads} threads)",
            markdown_table(
                ["model", "path", "qstudio median ms", "torch.utils.benchmark ms", "ratio"],
                honesty(args.honesty, args.threads),
            ),
        ]
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
