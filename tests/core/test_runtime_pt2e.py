"""The PT2E target: real torch.export, real torchao quantization, real inductor compiles (nothing mocked).

Every build compiles with inductor (tens of seconds on 2 busy cores), so each
model is built once per module and shared by the tests that read it; the
full-size models (resnet18, mobilenet_v2) and the demo are marked slow.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from qstudio.core import compare
from qstudio.core.data import Dataset, load_dataset
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource
from qstudio.core.runtimes import BuildInput, RuntimeUnavailable, get_runtime
from qstudio.core.runtimes.pt2e import Pt2Runtime, weighted_ops

pytest.importorskip("torchao")
if Pt2Runtime().missing():
    pytest.skip(Pt2Runtime().missing() or "", allow_module_level=True)


# -- helpers ------------------------------------------------------------------------------------------------------
def settle(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Random weights, BatchNorm statistics from a few random batches (cumulative average), eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape[1:], generator=gen))
    return model.eval()


def images(n: int, seed: int, shape: tuple[int, ...]) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    return Dataset(torch.randn(n, *shape, generator=gen), None, "random test images", is_random=True)


def build_input(model: nn.Module, calib: Dataset, **kw) -> BuildInput:
    kw.setdefault("batch_size", 4)
    kw.setdefault("calib_batches", 2)
    return BuildInput(model=model, example=calib.inputs[:1], calib=calib, **kw)


def cosine(model: nn.Module, art, data: Dataset) -> float:
    return run(compare.evaluate(model, art, data, batch_size=8)).cosine


def saved_graph(art) -> torch.fx.GraphModule:
    """The graph of the .pt2 the artifact saves: what a deployment runs."""
    return torch.export.load(io.BytesIO(art.data)).graph_module


def is_dq(node) -> bool:
    return isinstance(node, torch.fx.Node) and "dequantize" in str(node.target)


def runs_float(node: torch.fx.Node) -> bool:
    """No quantize/dequantize around a conv/linear: float input and weight, and its output is not quantized."""
    return (
        not is_dq(node.args[0]) and not is_dq(node.args[1]) and not any("quantize" in str(u.target) for u in node.users)
    )


def inductor_state() -> tuple:
    import torch._inductor.config as ic

    return ic.freezing, ic.pre_grad_custom_pass


class Small(nn.Module):
    """A conv net small enough to compile in seconds: stem (conv-bn-relu), body (two conv-relu), pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(self.stem(x))).flatten(1))


class TokenClassifier(nn.Module):
    """int64 token ids -> embedding -> mean over the sequence -> two linears."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.embed(ids).mean(1))))


class ValueBranch(nn.Module):
    """Branches on a tensor's value: neither strict nor non-strict torch.export can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class ReusedAndUntraceable(nn.Module):
    """One ReLU module called twice, and a forward strict export refuses: only non-strict export captures it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._dynamo.graph_break()  # strict export (dynamo) fails here; non-strict runs it as a no-op
        return self.relu(self.conv2(self.relu(self.conv1(x))))


# -- fixtures (one build per model and module) --------------------------------------------------------------------
SMALL_SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def small() -> nn.Module:
    torch.manual_seed(0)
    return settle(Small(), SMALL_SHAPE)


@pytest.fixture(scope="module")
def small_int8(small: nn.Module) -> dict:
    """INT8 with one layer kept float and one name that matches nothing; 2 threads; state before and after."""
    calib = images(32, 1, SMALL_SHAPE[1:])
    before = {k: v.clone() for k, v in small.state_dict().items()}
    config_before, threads_before = inductor_state(), torch.get_num_threads()
    inp = build_input(small, calib, skip=["body.2", "no.such.layer"], threads=2)
    art = get_runtime("pt2").build(inp, "int8")
    return {
        "art": art,
        "calib": calib,
        "state_before": before,
        "config_before": config_before,
        "config_after": inductor_state(),
        "threads_before": threads_before,
        "threads_after": torch.get_num_threads(),
    }


# -- fast tests ---------------------------------------------------------------------------------------------------
def test_registered_and_listing_imports_nothing() -> None:
    code = (
        "import sys; from qstudio.core.runtimes import get_runtime; r = get_runtime('pt2'); "
        "print(r.name, r.title, r.suffix, r.compared_by_default, r.missing(), r.precisions(), 'torchao' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "pt2" and out[-1] == "False", out  # torchao is imported only by build/load
    assert Pt2Runtime().precisions() == ["fp32", "int8"]


def test_int8_keeps_the_skipped_conv_float_and_quantizes_the_rest(small_int8: dict) -> None:
    art = small_int8["art"]
    gm = saved_graph(art)
    (skipped,) = weighted_ops(gm, ["body.2"])
    assert not skipped[1] and runs_float(skipped[0])
    others = weighted_ops(gm, ["stem", "body.0", "fc"])
    assert len(others) == 3 and all(quantized for _n, quantized in others)
    assert "kept in float: body.2" in art.notes
    assert any("no.such.layer" in n and "no module" in n for n in art.notes)
    assert art.label == "PT2E INT8" and art.precision == "int8" and art.runtime == "pt2"


def test_int8_close_to_float_at_any_batch(small: nn.Module, small_int8: dict) -> None:
    art, calib = small_int8["art"], small_int8["calib"]
    for batch in (1, 8, 3):
        x = calib.inputs[:batch]
        out = art(x)
        with torch.no_grad():
            ref = small(x)
        assert out.shape == ref.shape
        assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.99


def test_build_leaves_model_threads_and_inductor_config_alone(small: nn.Module, small_int8: dict) -> None:
    for k, v in small.state_dict().items():
        assert torch.equal(v, small_int8["state_before"][k]), k
    assert small_int8["config_after"] == small_int8["config_before"]  # freezing and torchao's pass only while compiling
    assert small_int8["threads_after"] == small_int8["threads_before"]
    before = torch.get_num_threads()
    small_int8["art"](small_int8["calib"].inputs[:8])
    assert torch.get_num_threads() == before and inductor_state() == small_int8["config_before"]


def test_timed_calls_never_compile(small_int8: dict) -> None:
    """The benchmark calls under inference_mode, evaluate under no_grad, with slices of a larger tensor:
    after the build's batch 1 and 8 none of these makes dynamo compile again (a compile would be timed)."""
    from qstudio.core.runtimes.pt2e import _graphs

    art, inputs = small_int8["art"], small_int8["calib"].inputs
    art(inputs[:1])  # the benchmark's untimed warm-up call (it recompiles if another build reset dynamo)
    graphs = _graphs()
    with torch.inference_mode():
        art(inputs[:1])
        art(inputs[8:16])
    with torch.no_grad():
        art(inputs[3:8])
    art(inputs[20:21])
    assert _graphs() == graphs and art.unsettled_compiles == 0


def test_recompiles_with_the_build_settings_after_dynamo_is_reset(small_int8: dict) -> None:
    """Every strict torch.export in the process (another build, another runtime) resets dynamo's caches."""
    art, x = small_int8["art"], small_int8["calib"].inputs[:8]
    before, rewarms = art(x), art.rewarms
    torch.export.export(nn.Linear(2, 2), (torch.randn(2, 2),), strict=True)
    torch.testing.assert_close(art(x), before, rtol=0, atol=0)
    assert art.rewarms == rewarms + 1 and art.unsettled_compiles == 0


def test_no_spinning_between_calls(small_int8: dict) -> None:
    """The artifact's 2 OpenMP threads sleep once a call returns: the process burns almost no CPU while idle."""
    art, x = small_int8["art"], small_int8["calib"].inputs[:8]
    for _ in range(5):
        art(x)
    cpu = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.2


def test_save_and_load_give_the_same_outputs(small_int8: dict, tmp_path: Path) -> None:
    art, x = small_int8["art"], small_int8["calib"].inputs[8:16]
    files = art.save(tmp_path / "small.pt2")
    assert files == [tmp_path / "small.pt2"]
    assert files[0].stat().st_size == pytest.approx(art.size_mb * 1e6, abs=1)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = get_runtime("pt2").load(files, "int8")
    assert loaded.precision == "int8" and loaded.size_mb == art.size_mb
    torch.testing.assert_close(loaded(x), art(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded(x[:1]), art(x[:1]), rtol=1e-5, atol=1e-5)


def test_int8_token_ids() -> None:
    torch.manual_seed(0)
    model = TokenClassifier().eval()
    gen = torch.Generator().manual_seed(3)
    calib = Dataset(torch.randint(0, 100, (32, 12), generator=gen), None, "random token ids", is_random=True)
    art = get_runtime("pt2").build(build_input(model, calib), "int8")
    assert all(quantized for _n, quantized in weighted_ops(saved_graph(art), ["hidden", "head"]))
    for batch in (1, 8):
        x = calib.inputs[:batch]
        with torch.no_grad():
            ref = model(x)
        assert torch.nn.functional.cosine_similarity(art(x), ref).min() > 0.98


def test_unexportable_model_is_unavailable() -> None:
    model = ValueBranch().eval()
    calib = images(8, 2, (8,))
    with pytest.raises(RuntimeUnavailable) as info:
        get_runtime("pt2").build(build_input(model, calib), "int8")
    message = str(info.value)
    assert "torch.export could not capture the model" in message and "\n" not in message
    assert info.value.__cause__ is not None


def test_quantizer_refusing_a_non_strict_export_is_unavailable() -> None:
    with pytest.raises(RuntimeUnavailable) as info:
        get_runtime("pt2").build(build_input(ReusedAndUntraceable().eval(), images(8, 2, (3, 8, 8))), "int8")
    message = str(info.value)
    assert "quantizer refused" in message and "non-strict" in message and "give each its own" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_unknown_precision_is_unavailable(small: nn.Module) -> None:
    with pytest.raises(RuntimeUnavailable, match="no bf16"):
        get_runtime("pt2").build(build_input(small, images(8, 2, SMALL_SHAPE[1:])), "bf16")


# -- slow: FP32, the demo, full-size torchvision models ---------------------------------------------------------
@pytest.mark.slow
def test_fp32_matches_eager_and_round_trips(small: nn.Module, tmp_path: Path) -> None:
    calib = images(16, 4, SMALL_SHAPE[1:])
    art = get_runtime("pt2").build(build_input(small, calib), "fp32")
    assert art.label == "PT2E FP32" and not [n for n in weighted_ops(saved_graph(art), [""]) if n[1]]
    with torch.no_grad():
        torch.testing.assert_close(art(calib.inputs[:8]), small(calib.inputs[:8]), rtol=1e-4, atol=1e-4)
    loaded = get_runtime("pt2").load(art.save(tmp_path / "fp32.pt2"), "fp32")
    torch.testing.assert_close(loaded(calib.inputs[:1]), art(calib.inputs[:1]))


@pytest.mark.slow
def test_demo_int8(demo) -> None:
    calib = load_dataset(DataSource(kind="demo", split="calib"))
    evals = load_dataset(DataSource(kind="demo", split="eval"))
    inp = BuildInput(demo.module, calib.inputs[:1], calib, calib_batches=4, batch_size=16)
    art = get_runtime("pt2").build(inp, "int8")
    ev = run(compare.evaluate(demo.module, art, evals))
    assert ev.cosine > 0.99 and ev.agreement > 0.97
    assert ev.int8_accuracy is not None and ev.fp32_accuracy is not None
    assert ev.int8_accuracy > ev.fp32_accuracy - 0.03


@pytest.fixture(scope="module")
def resnet18() -> tuple[nn.Module, Dataset]:
    torch.manual_seed(0)
    return settle(torchvision.models.resnet18(weights=None), (1, 3, 224, 224)), images(16, 7, (3, 224, 224))


@pytest.mark.slow
def test_resnet18_int8_quality_and_kept_float_layer(resnet18) -> None:
    model, calib = resnet18
    inp = build_input(model, calib, skip=["layer1.0.conv1"], groups=[["layer1.0.conv1", "layer1.0.bn1"]])
    art = get_runtime("pt2").build(inp, "int8")
    assert not [n for n in art.notes if "strict" in n]  # the reused relu needs strict export, which worked
    gm = saved_graph(art)
    (skipped,) = weighted_ops(gm, ["layer1.0.conv1"])
    assert not skipped[1] and not is_dq(skipped[0].args[1])
    assert not any("quantize" in str(u.target) for u in skipped[0].users)
    assert all(q for _n, q in weighted_ops(gm, ["layer1.0.conv2", "layer4", "fc"]))
    assert cosine(model, art, calib) > 0.99
    assert art(calib.inputs[:1]).shape == (1, 1000) and art(calib.inputs[:8]).shape == (8, 1000)


@pytest.mark.slow
def test_mobilenet_v2_int8() -> None:
    torch.manual_seed(0)
    model = settle(torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224))
    calib = images(16, 8, (3, 224, 224))
    art = get_runtime("pt2").build(build_input(model, calib), "int8")
    assert cosine(model, art, calib) > 0.95
    assert art(calib.inputs[:1]).shape == (1, 1000)
