"""qstudio's exported INT8 model against the best hand-written PyTorch path and ONNX Runtime, side by side.

    .venv/bin/pip install -e '.[bench]'      # onnx + onnxruntime, the outside peer
    .venv/bin/python benchmarks/performance.py [--models demo resnet18 mobilenet_v2 resnet50] [--batches 1 8]
                                               [--out docs/performance-latency.md]

For each model, in ONE process and interleaved slice by slice
(qstudio.core.benchmark.benchmark_interleaved), at each batch size:

* FP32 eager — the PyTorch module as loaded;
* FP32 TorchScript — trace + freeze + optimize_for_inference (qstudio's FP32 baseline);
* ONNX Runtime FP32 — torch.onnx.export + all graph optimizations;
* bare FX INT8 (x86 / onednn) — the script an expert writes from the PyTorch docs:
  get_default_qconfig_mapping(backend), prepare_fx, calibrate, convert_fx, trace, freeze;
* qstudio export — the file ``qstudio quantize --mode fx --export`` writes, loaded back with torch.jit.load;
* ONNX Runtime INT8 — onnxruntime.quantization.quantize_static (QDQ, per-channel int8
  weights, uint8 activations, MinMax calibration) of the same FP32 model.

All INT8 paths calibrate on the same tensors (qstudio's calibration set for the
recipe: the demo's real calibration split, random images for torchvision
models, whose weights are random too: speed does not depend on them; their
BatchNorm statistics are settled on random batches first, see
common.settle_batchnorm, so INT8 outputs are meaningful and the cosine column
checks every path computes the same thing).  ONNX
Runtime gets as many intra-op threads as torch and, because it shares the
process with torch timings, ``session.intra_op.allow_spinning = 0``: spinning
idle threads would otherwise steal both cores from torch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")

from qstudio.core.benchmark import benchmark_interleaved  # noqa: E402
from qstudio.core.loading import load_model  # noqa: E402
from qstudio.core.pipeline import load_run_data, run_recipe  # noqa: E402
from qstudio.core.progress import run  # noqa: E402
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe  # noqa: E402
from qstudio.core.torchscript import freeze_fp32  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import MODELS, bare_fx_ptq, engine, environment_lines, markdown_table, settle_batchnorm, with_engine  # noqa: E402

CALIB_BATCHES, CALIB_BATCH = 4, 8
#: The contenders, in table order; FP32 eager first (the cosine table compares the others with it).
PATHS = (
    "FP32 eager",
    "FP32 TorchScript",
    "ORT FP32",
    "bare FX INT8 x86",
    "bare FX INT8 onednn",
    "qstudio export",
    "ORT INT8",
)


def recipe_for(name: str) -> Recipe:
    settings = QuantSettings(calib_batches=CALIB_BATCHES, batch_size=CALIB_BATCH)
    tiny_bench = BenchmarkSettings(batch_sizes=[1], warmup=0, iters=1)  # the run's own timing is not used here
    if name == "demo":
        return Recipe(model=ModelSource("demo"), mode="fx", settings=settings, benchmark=tiny_bench)
    return Recipe(
        model=ModelSource(f"torchvision:{name}"),
        mode="fx",
        input_shape=[1, 3, 224, 224],
        calib=DataSource(kind="random", limit=CALIB_BATCHES * CALIB_BATCH),
        settings=settings,
        benchmark=tiny_bench,
    )


def bare_fx_int8(model: torch.nn.Module, backend: str, calib: list[torch.Tensor]) -> torch.jit.ScriptModule:
    """The hand-written FX PTQ script (common.bare_fx_ptq), plus trace + freeze for deployment."""
    quantized = bare_fx_ptq(model, backend, calib)
    with engine(backend), torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(quantized, (calib[0][:1],), check_trace=False).eval())


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def call(x: np.ndarray):
        return sess.run(None, {name: x})[0]

    return call


def ort_models(model: torch.nn.Module, calib: list[torch.Tensor], folder: Path, threads: int):
    """(FP32 session, INT8 session) for ``model`` via ONNX; INT8 by quantize_static on ``calib``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = folder / "fp32.onnx"
    torch.onnx.export(
        model,
        (calib[0][:1],),
        str(fp32),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    pre = folder / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x.numpy()} for x in calib])

        def get_next(self):
            return next(self.items, None)

    int8 = folder / "int8.onnx"
    quantize_static(
        str(pre),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return ort_session(fp32, threads), ort_session(int8, threads)


def cosine(a, b) -> float:
    a = torch.as_tensor(np.asarray(a)).flatten().double()
    b = torch.as_tensor(np.asarray(b)).flatten().double()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def measure(name: str, batches: list[int], threads: int, seconds: float, folder: Path) -> list[dict]:
    recipe = recipe_for(name)
    loaded = load_model(recipe.model)
    if name != "demo":
        settle_batchnorm(loaded.module, recipe.input_shape)  # random weights: give BN real statistics
    model = loaded.module.eval()
    data = load_run_data(recipe, loaded)
    calib = [x for x, _ in data.calib.batches(CALIB_BATCH, CALIB_BATCHES)]
    example = calib[0][:1]

    t0 = time.perf_counter()
    export = folder / f"{name}.int8.pt"
    run(run_recipe(recipe, loaded, export=export))
    print(f"  qstudio run + export {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    qstudio_int8 = torch.jit.load(str(export))

    contenders = {
        "FP32 eager": model,
        "FP32 TorchScript": freeze_fp32(model, example),
        "bare FX INT8 x86": bare_fx_int8(model, "x86", calib),
        "bare FX INT8 onednn": None,
        "qstudio export": qstudio_int8,
    }
    contenders["bare FX INT8 onednn"] = with_engine("onednn", bare_fx_int8(model, "onednn", calib))
    inputs = {k: (lambda b: data.calib.sample(b)) for k in contenders}
    try:
        ort_fp32, ort_int8 = ort_models(model, calib, folder, threads)
        contenders["ORT FP32"], contenders["ORT INT8"] = ort_fp32, ort_int8
        inputs["ORT FP32"] = inputs["ORT INT8"] = lambda b: data.calib.sample(b).numpy()
    except Exception as exc:  # the peer is optional; say why it is missing
        print(f"  ONNX Runtime unavailable for {name}: {exc}", file=sys.stderr)

    check = data.calib.sample(8)
    with torch.inference_mode():
        reference = model(check)
        cos = {
            k: cosine(reference, (fn(check.numpy()) if k.startswith("ORT") else fn(check)))
            for k, fn in contenders.items()
        }

    rows = []
    for b in batches:
        # Size the run by FP32 eager's latency: about `seconds` of FP32 eager calls, 30..300 iterations.
        x = data.calib.sample(b)
        with torch.inference_mode():
            model(x)
            t = time.perf_counter()
            model(x)
            eager_s = time.perf_counter() - t
        iters = int(max(30, min(300, seconds / max(eager_s, 1e-4))))
        settings = BenchmarkSettings(batch_sizes=[b], threads=threads, warmup=max(5, iters // 10), iters=iters)
        t = time.perf_counter()
        stats = run(benchmark_interleaved(contenders, inputs, settings, rounds=10))
        med = {k: v[0].median_ms for k, v in stats.items()}
        print(
            f"  batch {b}: {iters} iters each, {time.perf_counter() - t:.0f} s: "
            + ", ".join(f"{k} {v:.2f}" for k, v in med.items()),
            file=sys.stderr,
        )
        rows.append({"model": name, "batch": b, "iters": iters, "median": med, "cosine": cos})
    return rows


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}x"


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seconds", type=float, default=4.0, help="FP32 eager time per contender and batch size")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"{name}:", file=sys.stderr)
            rows += measure(name, args.batches, args.threads, args.seconds, Path(tmp))

    lat_rows, ratio_rows, cos_rows = [], [], []
    for r in rows:
        m = r["median"]
        best_fp32 = min(v for k, v in m.items() if k in ("FP32 TorchScript", "ORT FP32"))
        best_pt_int8 = min(v for k, v in m.items() if k.startswith("bare FX INT8") or k == "qstudio export")
        q = m["qstudio export"]
        lat_rows.append([r["model"], str(r["batch"])] + [ms(m.get(k)) for k in PATHS])
        ratio_rows.append(
            [
                r["model"],
                str(r["batch"]),
                ratio(m["FP32 eager"], q),
                ratio(best_fp32, q),
                ratio(q, best_pt_int8),
                ratio(q, m.get("ORT INT8")),
            ]
        )
        if r["batch"] == rows[0]["batch"]:
            cos_rows.append([r["model"]] + [f"{r['cosine'].get(k, float('nan')):.4f}" for k in PATHS[1:]])

    cmd = (
        f".venv/bin/python benchmarks/performance.py --models {' '.join(args.models)} "
        f"--batches {' '.join(map(str, args.batches))} --threads {args.threads}"
    )
    text = (
        "\n\n".join(
            [
                "### Latency (median ms per call, interleaved in one process)",
                f"Command: `{cmd}`",
                "\n".join(environment_lines())
                + f" Threads: torch {args.threads}, ONNX Runtime intra-op {args.threads} "
                "(spinning off).",
                markdown_table(
                    [
                        "model",
                        "batch",
                        "FP32 eager",
                        "FP32 TorchScript (frozen+opt)",
                        "ORT FP32",
                        "bare FX INT8 x86",
                        "bare FX INT8 onednn",
                        "**qstudio export**",
                        "ORT INT8",
                    ],
                    lat_rows,
                ),
                "### Ratios",
                markdown_table(
                    [
                        "model",
                        "batch",
                        "qstudio vs FP32 eager",
                        "qstudio vs best FP32 (TS or ORT)",
                        "qstudio time / fastest PyTorch INT8",
                        "qstudio time / ORT INT8",
                    ],
                    ratio_rows,
                ),
                "### Output cosine to FP32 eager (8 calibration-distribution inputs)",
                markdown_table(
                    [
                        "model",
                        "FP32 TorchScript",
                        "ORT FP32",
                        "bare FX x86",
                        "bare FX onednn",
                        "qstudio export",
                        "ORT INT8",
                    ],
                    cos_rows,
                ),
            ]
        )
        + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
