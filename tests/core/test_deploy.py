"""Every runtime and precision side by side in one run: the figures, the FP32 baseline, the export target, the files.

Real runs of the demo model through torch.ao, ONNX Runtime and OpenVINO (the
runtimes' own tests cover torchvision models and kept-float layers); a broken
runtime package is a real package on the path whose import fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qstudio.core.deploy import choose_target, runtimes_to_measure
from qstudio.core.loading import load_model
from qstudio.core.pipeline import export_result, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DeploySettings, ModelSource, QuantSettings, Recipe
from qstudio.core.runtimes import cpu_has_bf16, get_runtime

RUNTIME_KEYS = {"name", "precision", "latency_ms", "size_mb", "accuracy", "agreement", "cosine"}


def recipe(**deploy) -> Recipe:
    return Recipe(
        model=ModelSource("demo"),
        mode="fx",
        settings=QuantSettings(calib_batches=4),
        benchmark=BenchmarkSettings(batch_sizes=[1, 8], warmup=2, iters=10),
        deploy=DeploySettings(**deploy),
    )


@pytest.fixture(scope="module")
def side_by_side():
    r = recipe(runtimes=["onnx", "openvino"], target="auto")
    return run(run_recipe(r, load_model(r.model)), lambda _s: None)


def test_a_run_measures_every_runtime_and_precision_side_by_side(side_by_side):
    result = side_by_side
    by = {(f.name, f.precision): f for f in result.runtimes}
    expected = {("eager", "fp32"), ("torchscript", "fp32"), ("torchscript", "int8")}
    expected |= {("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")}
    if cpu_has_bf16():
        expected.add(("openvino", "bf16"))
    assert set(by) == expected, (set(by), result.runtime_notes)
    for f in result.runtimes:
        assert sorted(s.batch_size for s in f.latency) == [1, 8], f.label  # same batch sizes for every row
        assert f.latency_ms and f.latency_ms > 0
        assert f.cosine is not None and f.agreement is not None
        floor = 0.9999 if f.precision == "fp32" else 0.98
        assert f.cosine > floor, (f.label, f.cosine)
        assert f.accuracy is not None  # the demo's eval data is labelled
    # the names say the precision truthfully: a BF16 row is never called FP32
    assert all(f.precision.upper() in f.label or f.name in ("eager", "torchscript") for f in result.runtimes)
    best = result.fp32_best
    assert best.precision == "fp32"
    assert best.latency_ms == min(f.latency_ms for f in result.runtimes if f.precision == "fp32")
    assert result.speedup_vs_fp32_best == pytest.approx(best.latency_ms / result.deployed.latency_ms)


def test_the_json_has_the_runtimes_the_baseline_and_the_target(side_by_side):
    doc = json.loads(json.dumps(side_by_side.to_json()))
    assert {r["name"] for r in doc["runtimes"]} >= {"eager", "torchscript", "onnx", "openvino"}
    for row in doc["runtimes"]:
        assert set(row) >= RUNTIME_KEYS, row
    best = side_by_side.fp32_best
    assert doc["fp32_best"]["runtime"] == best.name and doc["fp32_best"]["latency_ms"] == best.latency_ms
    assert doc["speedup"] == side_by_side.speedup  # vs FP32 eager, the second figure, kept
    assert doc["speedup_vs_fp32_best"] == side_by_side.speedup_vs_fp32_best
    assert doc["target"]["runtime"] == side_by_side.target.name


def test_auto_picks_the_fastest_int8_within_the_budget(side_by_side):
    int8 = [f for f in side_by_side.runtimes if f.precision == "int8"]
    base = next(f for f in int8 if f.name == "torchscript")
    chosen = side_by_side.target
    assert chosen in int8 and "auto chose" in side_by_side.target_note
    within = [f for f in int8 if (base.quality - f.quality) * 100 <= 0.5 + 1e-9]
    if chosen in within:
        assert chosen.latency_ms == min(f.latency_ms for f in within)
    else:  # admitted by the data's resolution: it says so, and its outputs are as close to FP32
        assert "resolution" in side_by_side.target_note and chosen.cosine >= base.cosine - 1e-3
    # a budget of nothing keeps only the rows exactly as good as torch.ao's; torch.ao's own row always qualifies
    strict, _why = choose_target(side_by_side.runtimes, "auto", 0.0)
    assert strict.quality >= base.quality
    named, _ = choose_target(side_by_side.runtimes, "openvino", None)
    assert named.name == "openvino" and named.precision == "int8"


@pytest.mark.parametrize(("target", "suffixes"), [("onnx", [".onnx"]), ("openvino", [".xml", ".bin"])])
def test_each_runtime_exports_a_file_it_reloads_and_verifies(side_by_side, tmp_path, target, suffixes):
    info = export_result(side_by_side, tmp_path / "model", target=target)  # no suffix: the runtime's is added
    assert info.runtime == target and info.verified and info.precision == "int8"
    assert sorted(Path(f).suffix for f in info.files) == sorted(suffixes)
    assert all(Path(f).stat().st_size > 0 for f in info.files)
    assert Path(info.path).name == "model" + suffixes[0]
    # the file runs in its runtime and computes what was measured
    runtime = get_runtime(target)
    reloaded = runtime.load([Path(f) for f in info.files if Path(f).suffix == suffixes[0]], "int8")
    x = side_by_side.check_input
    out = side_by_side.artifacts[side_by_side_label(side_by_side, target)](x)
    assert (reloaded(x) - out).abs().max() <= 1e-4 * max(1.0, float(out.abs().max()))
    doc = side_by_side.to_json()
    assert doc["export"]["runtime"] == target and doc["export"]["path"] == info.path


def side_by_side_label(result, name: str) -> str:
    return next(f.label for f in result.runtimes if f.name == name and f.precision == "int8")


def test_a_runtime_not_measured_cannot_be_exported(side_by_side, tmp_path):
    from qstudio.core.errors import ExportError

    with pytest.raises(ExportError) as err:
        export_result(side_by_side, tmp_path / "m.pt2", target="pt2")
    assert "no INT8 pt2 model was measured" in str(err.value) and "--target pt2" in str(err.value)


def test_the_target_is_always_measured_and_none_measures_torch_only(monkeypatch):
    monkeypatch.setenv("QSTUDIO_RUNTIMES", "")
    assert runtimes_to_measure(recipe()) == []
    assert runtimes_to_measure(recipe(target="openvino")) == ["openvino"]
    assert runtimes_to_measure(recipe(runtimes=[], target="onnx")) == ["onnx"]
    monkeypatch.setenv("QSTUDIO_RUNTIMES", "openvino, onnx")
    assert runtimes_to_measure(recipe()) == ["onnx", "openvino"]
    monkeypatch.delenv("QSTUDIO_RUNTIMES")
    defaults = [n for n in ("onnx", "openvino", "pt2") if get_runtime(n).compared_by_default]
    assert runtimes_to_measure(recipe()) == defaults


def test_a_broken_runtime_package_is_skipped_with_one_line_and_the_run_goes_on(tmp_path):
    # a real package named onnxruntime whose import fails, first on the path: a half-installed runtime
    broken = tmp_path / "site" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libonnxruntime.so.1: cannot open shared object file')\n")
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "QT_QPA_PLATFORM": "offscreen"}
    cmd = [sys.executable, "-m", "qstudio.cli", "quantize", "demo", "--mode", "fx", "--calib-batches", "2"]
    cmd += ["--iters", "5", "--runtimes", "onnx,openvino", "--json", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    skipped = [line for line in doc["runtimes_skipped"] if line.startswith("ONNX Runtime")]
    assert skipped and all("\n" not in line for line in skipped), doc["runtimes_skipped"]
    assert "cannot open shared object file" in skipped[0] or "ImportError" in skipped[0]
    assert {r["name"] for r in doc["runtimes"]} >= {"eager", "torchscript", "openvino"}
    assert "ONNX Runtime" in proc.stderr + proc.stdout  # the skip is said on the terminal too
    assert "Traceback" not in proc.stderr


def _row(name, agreement, cosine, ms, samples=64):
    from qstudio.core.benchmark import LatencyStat
    from qstudio.core.deploy import RuntimeFigure

    stat = LatencyStat(name, 1, ms, ms, ms, 40, 2)
    return RuntimeFigure(name, "int8", f"{name} INT8", [stat], 1.0, None, agreement, cosine, samples=samples)


def test_auto_weighs_the_resolution_of_small_unlabelled_data():
    """resnet50 on 64 random samples (measured 2026-11-30): top-1 agreement moved by 6 samples between two runs.

    OpenVINO lost 6 of 64 samples more than torch.ao (9.4 points), but within the chance difference of sqrt(23+29)
    samples, and its output cosine to FP32 was higher: auto may take it.  A budget the user gives is kept exactly.
    """
    rows = [
        _row("torchscript", 0.6406, 0.9817, 13.90),
        _row("onnx", 0.5938, 0.9843, 14.80),
        _row("openvino", 0.5469, 0.9840, 12.66),
    ]
    chosen, why = choose_target(rows, "auto", None)
    assert chosen.name == "openvino" and "resolution" in why and "6 of 64" in why
    strict, why = choose_target(rows, "auto", 0.5)
    assert strict.name == "torchscript" and "more than the budget" in why
    # a real loss, beyond chance, is not admitted: 30 of 64 samples more, or outputs further from FP32
    worse = [rows[0], _row("openvino", 0.1719, 0.9840, 12.66)]
    assert choose_target(worse, "auto", None)[0].name == "torchscript"
    drifted = [rows[0], _row("openvino", 0.5469, 0.9700, 12.66)]
    assert choose_target(drifted, "auto", None)[0].name == "torchscript"
