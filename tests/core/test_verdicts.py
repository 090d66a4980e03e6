"""The verdicts a run gives on its own figures: INT8 slower than FP32, outputs collapsed or near zero.

Real models, real measurements: a tiny Linear where INT8 loses to FP32, an
untrained torchvision model whose FP32 outputs are ~1e-10, a model whose INT8
outputs collapse behind one layer, and the cosine those verdicts read for
two-headed and 2N-row outputs.  Unstable timing: tests/core/test_benchmark.py;
a failed export: tests/core/test_export.py; the window's banner:
tests/ui/test_results_panel.py.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from engine_checks import FAST_BENCH, codes, quantize, run_cli, zoo
from torch import nn

from qstudio.core import verdicts
from qstudio.core.data import load_dataset
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource, ModelSource, Recipe

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
    assert "agreement-resolution" not in codes(result)  # no signal at all: one verdict, not two about its ties
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


def test_collapsed_int8_names_the_first_layer_below_15_db():
    result = quantize(load_model(zoo("outlier")).module, [1, 16])
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


# --------------------------------------------------------------------------- what top-1 agreement can resolve on the data
def test_one_answer_for_every_sample_is_said_to_measure_nothing():
    """resnet18 with torchvision's initial BatchNorm statistics gives every random input the same class."""
    torch.manual_seed(0)  # random weights: these answer one class for all 64 samples (others may split them in two)
    model = load_model(ModelSource("torchvision:resnet18")).module
    result = quantize(model, [1, 3, 64, 64], batch_size=8, calib_batches=1)
    ev = result.evaluation
    assert ev.fp32_top1_distinct == 1 and ev.samples >= verdicts.SAME_ANSWER_SAMPLES
    v = codes(result)["agreement-resolution"]
    assert v.severity == "warning" and v.text in result.warnings
    assert v.text.startswith("AGREEMENT MEASURES NOTHING HERE") and f"all {ev.samples} evaluation samples" in v.text
    assert "--eval-data" in v.text and f"cosine ({ev.cosine:.4f})" in v.text
    assert result.to_json()["fp32_top1_distinct"] == 1


def test_near_ties_of_a_random_1000_way_classifier_are_counted_and_said():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1000)).eval()
    result = quantize(model, [1, 64])
    ev = result.evaluation
    inputs = load_dataset(DataSource(kind="random"), input_shape=[1, 64]).inputs  # the run's own (seeded) samples
    with torch.no_grad():
        logits = model(inputs)
    top2 = logits.topk(2, dim=-1).values
    by_hand = float((top2[:, 0] - top2[:, 1] < 0.05 * logits.std(dim=-1)).float().mean())
    assert ev.near_ties == pytest.approx(by_hand) and ev.near_ties > verdicts.TIE_SHARE
    assert ev.fp32_top1_distinct == len(logits.argmax(-1).unique()) > 1
    v = codes(result)["agreement-resolution"]
    assert v.text.startswith("AGREEMENT IS DOMINATED BY NEAR-TIES") and f"on {ev.near_ties:.0%} of" in v.text
    assert result.to_json()["near_ties"] == ev.near_ties


def test_the_trained_demo_on_its_digits_has_few_near_ties(demo):
    recipe = Recipe(mode="fx", eval=DataSource(kind="demo", split="eval"), benchmark=dataclasses.replace(FAST_BENCH))
    result = run(run_recipe(recipe, demo))
    ev = result.evaluation
    assert ev.fp32_top1_distinct == 10 and ev.near_ties is not None and ev.near_ties < verdicts.TIE_SHARE
    assert "agreement-resolution" not in codes(result)
