"""Honest verdicts (issue #11 items 4-10) and a kept run when its export fails (item 6).

Real models, real measurements: a tiny Linear where INT8 loses to FP32, an
untrained torchvision model whose FP32 outputs are ~1e-10, a model whose INT8
outputs collapse behind one layer, two-headed and 2N-row outputs, GPT-2's
Conv1D, a benchmark with CPU burners running beside it, and an export that
fails its verification.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from qstudio.cli import main
from qstudio.core import benchmark as bench
from qstudio.core import compare, stability, torchscript, verdicts
from qstudio.core.data import load_dataset
from qstudio.core.flows.dynamic import conv1d_as_linear, is_conv1d
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.pipeline import RunResult, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, Recipe

FAST_BENCH = BenchmarkSettings(batch_sizes=[1], warmup=2, iters=20)


def loaded(module: nn.Module, shape: list[int], dtype: str = "float32", name: str = "test") -> LoadedModel:
    return LoadedModel(
        module=module.eval(), source=ModelSource(spec=name), kind="factory", name=name,
        input_shape=shape, input_dtype=dtype, shape_declared=True,
    )  # fmt: skip


def quantize(module: nn.Module, shape: list[int], mode: str = "fx", dtype: str = "float32", **settings) -> RunResult:
    recipe = Recipe(mode=mode, calib=DataSource(kind="random"), benchmark=dataclasses.replace(FAST_BENCH))
    recipe.settings.calib_batches = 2
    for key, value in settings.items():
        setattr(recipe.settings, key, value)
    return run(run_recipe(recipe, loaded(module, shape, dtype)))


def codes(result: RunResult) -> dict[str, verdicts.Verdict]:
    return {v.code: v for v in result.verdicts}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# --------------------------------------------------------------------------- slowdown
TINY_LINEAR = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8))
    model.input_shape = [1, 8]
    return model
"""


def test_tiny_linear_slower_in_int8_is_said_loudly_in_warnings_json_and_cli(capsys, tmp_path):
    """nn.Linear(8, 8) at batch 1: quantizing the input and dequantizing the output costs more than the matmul saves."""
    (tmp_path / "tiny.py").write_text(TINY_LINEAR)
    code, stdout, stderr = run_cli(
        capsys, "quantize", f"{tmp_path / 'tiny.py'}:build", "--mode", "fx", "--calib-data", "random",
        "--calib-batches", "2", "--iters", "40", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert code == 0, stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    int8 = doc["int8"]["latency"][0]["median_ms"]
    fp32 = [doc["fp32"]["latency"][0]["median_ms"], *(s["median_ms"] for s in doc["fp32_torchscript"]["latency"])]
    assert int8 > min(fp32), f"INT8 {int8} ms was not slower than FP32 {fp32}: the premise of this test failed"
    found = [v for v in doc["verdicts"] if v["code"] == "slowdown"]
    assert len(found) == 1 and found[0]["severity"] == "critical"
    text = found[0]["text"]
    assert text in doc["warnings"]  # the JSON's warnings list (its keys are unchanged) carries it too
    assert text.startswith("INT8 IS SLOWER THAN FP32") and f"{int8:.3g} ms" in text
    # the cause comes from the profile: converting in and out dominates, and the remedy says so
    assert "quantize/dequantize" in text and "too little arithmetic" in text
    assert "INT8 IS SLOWER" in " ".join(stderr.split())  # the CLI prints it (in bold red on a terminal)
    assert "(INT8 is SLOWER)" in " ".join(stdout.split())
    assert '<strong class="bad">INT8 IS SLOWER' in (tmp_path / "r.html").read_text()


def test_slowdown_verdict_follows_the_measured_medians():
    """The verdict is there exactly when some batch size has INT8's median above an FP32 path's."""
    torch.manual_seed(0)
    result = quantize(nn.Sequential(nn.Linear(8, 8)), [1, 8])
    slower = any(
        i.median_ms > f.median_ms
        for i in result.int8.latency
        for f in [*result.fp32.latency, *result.fp32_deploy]
        if f.batch_size == i.batch_size
    )
    assert ("slowdown" in codes(result)) == slower
    # the same result with INT8 made as fast as FP32 is no slowdown
    fast = [
        dataclasses.replace(s, median_ms=min(f.median_ms for f in [*result.fp32.latency, *result.fp32_deploy]) / 2)
        for s in result.int8.latency
    ]
    assert verdicts.slowdown(dataclasses.replace(result, int8=dataclasses.replace(result.int8, latency=fast))) == []


def test_profile_names_float_ops_between_int8_layers():
    """torch.relu between two quantized Linears runs in float: the profile's module list names it."""

    class FloatRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    result = quantize(FloatRelu(), [1, 16])
    assert result.quantized is not None
    found = verdicts.float_op_modules(result.quantized, result.example)
    assert ("", "", "relu") in found  # the model's own forward, between dequantize and quantize
    profile = verdicts.profile_ops(result.quantized.module, result.example)
    assert math.isclose(sum(profile.shares.values()), 1.0, rel_tol=1e-6)
    assert profile.shares.get(verdicts.QDQ, 0) > 0 and profile.shares.get(verdicts.INT8, 0) > 0
    assert profile.shares.get(verdicts.FLOAT, 0) > 0  # relu on float (its time shows as clamp_min)
    assert verdicts.op_category("aten::relu", ["c10::quint8"]) == verdicts.INT8  # the same op on INT8 input


# --------------------------------------------------------------------------- collapse
def test_untrained_mobilenet_v3_is_called_near_zero_not_a_result():
    """torchvision's initial BatchNorm statistics (mean 0, var 1) with random weights: logits ~1e-10."""
    model = load_model(ModelSource("torchvision:mobilenet_v3_large")).module
    result = quantize(model, [1, 3, 64, 64], batch_size=8, calib_batches=1)
    ev = result.evaluation
    assert ev.fp32_max_abs is not None and ev.fp32_max_abs < verdicts.NEAR_ZERO
    v = codes(result)["collapse"]
    assert v.severity == "critical" and v.text in result.warnings
    assert "FP32 OUTPUTS ARE NEAR ZERO" in v.text and "BatchNorm" in v.text and "initial statistics" in v.text
    assert (
        result.to_json()["verdicts"][[d["code"] for d in result.to_json()["verdicts"]].index("collapse")]["text"]
        == v.text
    )


def test_settled_batchnorm_is_not_called_near_zero():
    model = load_model(ModelSource("torchvision:mobilenet_v3_large")).module
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # cumulative average over the settling batches
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    result = quantize(model.eval(), [1, 3, 64, 64], batch_size=8, calib_batches=1)
    assert result.evaluation.fp32_max_abs > verdicts.NEAR_ZERO
    assert not any("NEAR ZERO" in w for w in result.warnings)


class Outlier(nn.Module):
    """fc1 puts one channel at 1e4, the rest near 1; fc2 ignores that channel: per-tensor INT8 loses all it reads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)
        with torch.no_grad():
            self.fc1.bias[0] = 1e4
            self.fc2.weight[:, 0] = 0

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_collapsed_int8_names_the_first_layer_below_15_db():
    result = quantize(Outlier(), [1, 16])
    ev = result.evaluation
    assert ev.cosine < verdicts.COLLAPSE_COSINE and ev.fp32_max_abs > 0.1  # FP32 is fine, INT8 is not
    v = codes(result)["collapse"]
    assert v.text.startswith("INT8 OUTPUTS COLLAPSED") and f"cosine to FP32 {ev.cosine:.4f}" in v.text
    order = result.coverage.quantized_layers
    below = [e for e in result.layers if e.worst_db() < verdicts.LAYER_SQNR_DB]
    first = min(below, key=lambda e: order.index(e.name))
    assert first.name == "fc2" and "first layer below 15 dB SQNR is fc2 (" in v.text


# --------------------------------------------------------------------------- cosine of odd outputs
class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body, self.cls, self.box = nn.Linear(16, 32), nn.Linear(32, 10), nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.cls(h), self.box(h)


class StackedRows(TwoHeads):
    """2N rows for N inputs: both heads' outputs (padded to 10) stacked along the first dimension."""

    def forward(self, x):
        cls, box = super().forward(x)
        return torch.cat([cls, nn.functional.pad(box, (0, 6))], 0)


def _hand_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a.double().flatten(1), b.double().flatten(1), dim=1).mean())


@pytest.mark.parametrize("model_cls", [TwoHeads, StackedRows])
def test_cosine_of_two_heads_and_2n_rows_is_a_mean_within_1(model_cls):
    model = model_cls().eval()
    result = quantize(model, [1, 16])
    assert result.quantized is not None
    data = load_dataset(DataSource(kind="random"), input_shape=[1, 16])
    assert len(data) % 32 == 0  # evaluate's batches are all full: its weighted mean is the plain mean
    with torch.no_grad():
        fp32, int8 = model(data.inputs), result.quantized.module(data.inputs)
    if model_cls is TwoHeads:  # each head per sample, the heads averaged
        expected = (_hand_cosine(fp32[0], int8[0]) + _hand_cosine(fp32[1], int8[1])) / 2
    else:  # every row, 2N of them
        expected = _hand_cosine(fp32, int8)
        rows = nn.functional.cosine_similarity(fp32.flatten(1), int8.flatten(1), dim=1)
        assert float(rows.sum()) / len(data) > 1.5  # the old figure: a sum over 2N rows divided by N
    cosine = result.evaluation.cosine
    assert -1 <= cosine <= 1
    assert cosine == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- GPT-2's Conv1D
class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D, as written there: a Linear with its weight transposed."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.nx = nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)  # noqa: RUF005  (as transformers writes it)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c_fc, self.act, self.c_proj = Conv1D(64, 16), nn.GELU(), Conv1D(16, 64)
        with torch.no_grad():
            self.c_fc.bias.normal_()

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


def test_conv1d_is_swapped_for_the_linear_it_is():
    model = GPT2MLP().eval()
    swapped = GPT2MLP().eval()
    assert is_conv1d(model.c_fc) and not is_conv1d(nn.Linear(2, 2))
    assert conv1d_as_linear(swapped) == 2
    assert type(swapped.c_fc) is nn.Linear and swapped.c_fc.weight.shape == (64, 16)
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x))


def test_gpt2_style_conv1d_is_quantized_dynamically():
    model = GPT2MLP().eval()
    result = quantize(model, [1, 8, 16], mode="dynamic")
    assert result.coverage.quantized_layers == ["c_fc", "c_proj"] and not result.coverage.float_layers
    assert [(r.type, r.total, r.quantized) for r in result.coverage.rows] == [("Conv1D", 2, 2)]
    assert isinstance(model.c_fc, Conv1D)  # the user's model is untouched
    assert result.quantized is not None
    assert type(result.quantized.module.c_fc).__name__ == "Linear" and compare.is_quantized_module(
        result.quantized.module.c_fc
    )
    weights = {e.name: e.weight_sqnr_db for e in result.layers}
    assert weights["c_fc"] is not None and weights["c_fc"] > 30  # compared with the transposed float weight
    assert result.evaluation.cosine > 0.99


def test_tiny_gpt2_model_is_quantized_dynamically():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=500, n_positions=64, use_cache=False)
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()
    conv1d = [n for n, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    assert len(conv1d) == 8
    result = quantize(model, [1, 16], mode="dynamic", dtype="int64")
    assert set(conv1d) <= set(result.coverage.quantized_layers)
    assert {r.type: (r.total, r.quantized) for r in result.coverage.rows}["Conv1D"] == (8, 8)
    assert result.evaluation.cosine > 0.99


# --------------------------------------------------------------------------- unstable timing
@contextlib.contextmanager
def cpu_burners(n: int = 2) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes spinning on a CPU each, ended (by their own handles) on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip


def _expected_reasons(stats: list[bench.LatencyStat]) -> tuple[bool, bool]:
    spread = any(
        s.p90_ms / s.median_ms > stability.SPREAD_LIMIT and s.p90_ms - s.median_ms > stability.SPREAD_FLOOR_MS
        for s in stats
    )
    starved = any(s.cpu_ratio is not None and s.cpu_ratio < stability.CPU_RATIO_LIMIT for s in stats)
    return spread, starved


def test_timing_decision_on_real_measurements_beside_cpu_burners():
    model = small_cnn()
    settings = BenchmarkSettings(batch_sizes=[1], warmup=3, iters=40, threads=2)
    with cpu_burners(2):
        stats = run(
            bench.benchmark_interleaved({"a": model, "b": model}, lambda b: torch.randn(b, 3, 32, 32), settings)
        )
    flat = [s for group in stats.values() for s in group]
    assert all(s.cpu_ratio is not None and 0 < s.cpu_ratio <= 1 for s in flat)
    check = stability.check_timing(stats)  # no load average: the measured figures alone decide
    spread, starved = _expected_reasons(flat)
    assert check.stable == (not spread and not starved)
    assert any("varied from call to call" in r for r in check.reasons) == spread
    assert any("on a CPU only" in r for r in check.reasons) == starved
    # the same real figures, made calm and then made starved
    calm = [dataclasses.replace(s, p90_ms=s.median_ms * 1.1, cpu_ratio=0.99) for s in flat]
    assert stability.check_timing(calm).stable
    assert not stability.check_timing(calm, load=9.0, cpus=2).stable  # over 2 runnable threads per CPU
    assert stability.check_timing(calm, load=2.5, cpus=2).stable  # busy alone is no reason
    starved_stats = [dataclasses.replace(calm[0], cpu_ratio=0.3), *calm[1:]]
    check = stability.check_timing(starved_stats, load=2.5, cpus=2)
    assert not check.stable and "on a CPU only 30%" in check.reasons[0] and "busy" in check.reasons[-1]


def test_busy_machine_run_is_stable_or_says_its_timing_is_unreliable():
    with cpu_burners(2):
        result = quantize(small_cnn(), [1, 3, 32, 32])
    timing = result.timing
    assert timing is not None
    stats = [*result.fp32.latency, *result.int8.latency, *result.fp32_deploy]
    spread, starved = _expected_reasons(stats)
    overloaded = timing.load is not None and timing.cpus and timing.load > stability.LOAD_PER_CPU_LIMIT * timing.cpus
    assert timing.stable == (not spread and not starved and not overloaded)
    assert stability.check_timing(stats, load=timing.load, cpus=timing.cpus).stable == timing.stable
    unreliable = [w for w in result.warnings if w.startswith("UNRELIABLE TIMING")]
    if timing.stable:
        assert not unreliable
    else:
        assert timing.remeasured and timing.first_reasons  # measured once more before saying so
        assert len(unreliable) == 1 and codes(result)["unreliable-timing"].severity == "critical"
        assert all(reason in unreliable[0] for reason in timing.reasons)
    assert result.to_json()["timing"]["stable"] == timing.stable


# --------------------------------------------------------------------------- a failed export keeps the run
NOISY = """
import torch
from torch import nn

class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.fc(x)
        return y + 0.01 * torch.rand_like(y)  # a new draw on every call: no file reproduces it within 1e-4

# (dynamic mode keeps this forward as it is; FX would quantize the noise away at the output's scale)

def build():
    model = Noisy()
    model.input_shape = [1, 16]
    return model
"""


def test_export_that_fails_verification_keeps_json_and_report_and_exits_2(capsys, tmp_path):
    (tmp_path / "noisy.py").write_text(textwrap.dedent(NOISY))
    base = ["quantize", f"{tmp_path / 'noisy.py'}:build", "--mode", "dynamic", "--calib-data", "random",
            "--calib-batches", "2", "--iters", "5"]  # fmt: skip
    out = tmp_path / "m.pt"
    code, _, stderr = run_cli(
        capsys, *base, "--export", str(out), "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")
    )
    assert code == 2
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["export"] is None and doc["export_check"] is None
    assert "differ from the in-memory model" in doc["export_error"]
    assert any(v["code"] == "export-failed" for v in doc["verdicts"])
    assert doc["int8"]["latency_ms"] > 0 and doc["layers"]  # the run's figures are all there
    assert "EXPORT FAILED" in (tmp_path / "r.html").read_text()
    assert not out.exists()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("qstudio: error: the INT8 model was not exported to")
    assert "--export-tolerance" in last and "--export-method script" in last and str(tmp_path / "r.json") in last

    # the options the fix names work: a tolerance above the noise, and scripting instead of tracing
    code, _, stderr = run_cli(
        capsys, *base, "--export", str(out), "--export-tolerance", "0.1", "--export-method", "script",
        "--json", str(tmp_path / "ok.json"),
    )  # fmt: skip
    assert code == 0, stderr
    ok = json.loads((tmp_path / "ok.json").read_text())
    assert ok["export"] == str(out) and ok["export_error"] is None and ok["export_check"]["method"] == "scripted"
    assert out.stat().st_size > 0


def test_export_failure_in_the_engine_is_recorded_not_raised(tmp_path):
    """What the window gets: the result, with its export error; exporting again from it works."""
    from qstudio.core.pipeline import export_result

    namespace: dict = {}
    exec(textwrap.dedent(NOISY), namespace)
    model = namespace["build"]()
    recipe = Recipe(mode="dynamic", calib=DataSource(kind="random"), benchmark=dataclasses.replace(FAST_BENCH))
    result = run(run_recipe(recipe, loaded(model, [1, 16]), export=tmp_path / "m.pt", export_tolerance=0.0))
    assert result.export is None and result.export_error and "more than 0" in result.export_error
    assert codes(result)["export-failed"].text in result.warnings
    info = export_result(result, tmp_path / "m.pt", atol=1.0)
    assert info.verified and result.export is info


def test_cli_export_constants_match_the_engine():
    from qstudio import cli
    from qstudio.core.export import DEFAULT_ATOL

    assert cli.EXPORT_METHODS == torchscript.EXPORT_METHODS and cli.DEFAULT_EXPORT_TOLERANCE == DEFAULT_ATOL


# --------------------------------------------------------------------------- the window's banner
def test_window_banner_shows_critical_verdicts_first_in_red():
    pytest.importorskip("PySide6")
    from qstudio.ui.results_panel import banner_text, result_warnings

    result = quantize(Outlier(), [1, 16])
    warnings = result_warnings(result)
    text = banner_text(result, warnings)
    collapse = codes(result)["collapse"].text
    assert text.startswith('<b style="color:#b00020">⚠ INT8 OUTPUTS COLLAPSED') and collapse.split(":")[0] in text
    plain = dataclasses.replace(result, verdicts=[], warnings=["only a note"])
    assert banner_text(plain, result_warnings(plain)).startswith("⚠ ")
