"""Every flow end to end on real models: quantize, compare, export, reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_checks import QUICK, assert_clean, bomb_factory, drive, quantize, stages, write_factory, zoo
from torch import nn

from qstudio.core import compare, fusion
from qstudio.core.errors import FlowError
from qstudio.core.flows import FlowInput, get_flow
from qstudio.core.flows.dynamic import conv1d_as_linear, is_conv1d
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource, ModelSource, QATSettings, QuantSettings, Recipe


def demo_recipe(mode: str, quick_bench, **settings) -> Recipe:
    s = QuantSettings(calib_batches=4, **settings)
    return Recipe(mode=mode, settings=s, benchmark=quick_bench, qat=QATSettings(epochs=1, batch_size=64))


def test_fx_ptq_demo_keeps_accuracy_and_exports(demo, quick_bench, tmp_path):
    out = tmp_path / "demo_int8.pt"
    result = run(run_recipe(demo_recipe("fx", quick_bench), demo, export=out))
    ev = result.evaluation
    assert ev.fp32_accuracy is not None and ev.fp32_accuracy > 0.95
    assert ev.fp32_accuracy - ev.int8_accuracy <= 0.01  # within 1 point
    assert result.coverage.warnings == [] and len(result.coverage.float_layers) == 0
    assert result.fusion_check is not None and result.fusion_check.ok
    assert result.int8.size_mb < result.fp32.size_mb / 3
    # the exported file is the model: reload it and compare with the in-memory INT8 model
    reloaded = torch.jit.load(str(out))
    x = demo_eval_x()[:8]
    assert torch.equal(reloaded(x), result.quantized.module(x))
    assert result.export.verified and result.export.max_abs_diff == 0.0


def demo_eval_x() -> torch.Tensor:
    from qstudio.core.data import load_dataset

    return load_dataset(DataSource(kind="demo", split="eval")).inputs


def test_eager_on_residual_model_says_why_and_points_to_fx(demo, quick_bench):
    with pytest.raises(FlowError) as err:
        run(run_recipe(demo_recipe("eager", quick_bench), demo))
    msg = str(err.value)
    assert "model.py" in msg and "out = out + identity" in msg  # names the source line
    assert "layers.0" in msg  # names the module
    assert "--mode fx" in msg


def test_eager_ptq_works_on_plain_cnn(quick_bench):
    loaded = load_model(zoo("plain_cnn"))
    recipe = Recipe(mode="eager", calib=DataSource(kind="random", limit=32), settings=QuantSettings(calib_batches=2),
                    benchmark=quick_bench)  # fmt: skip
    result = run(run_recipe(recipe, loaded))
    assert result.random_data and any("RANDOM" in w for w in result.warnings)
    assert len(result.coverage.quantized_layers) == 4  # conv1, conv2, fc1, fc2
    assert result.groups == [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["fc1", "relu3"]]
    assert result.evaluation.agreement > 0.8


def test_skip_keeps_module_float_in_eager_and_fx(quick_bench):
    loaded = load_model(zoo("plain_cnn"))
    for mode in ("eager", "fx"):
        recipe = Recipe(mode=mode, calib=DataSource(kind="random", limit=16),
                        settings=QuantSettings(calib_batches=1, skip=["fc2"]), benchmark=quick_bench)  # fmt: skip
        result = run(run_recipe(recipe, loaded))
        assert result.coverage.kept_float == {"fc2": True}, mode
        assert "fc2" in result.coverage.float_layers
        assert "fc2" not in [e.name for e in result.layers]


def test_qat_fx_on_demo_reports_epochs(demo, quick_bench):
    result = run(run_recipe(demo_recipe("qat", quick_bench), demo))
    assert len(result.history) == 1
    h = result.history[0]
    assert h.loss > 0 and 0 <= h.train_accuracy <= 1 and h.eval_accuracy is not None
    assert result.evaluation.int8_accuracy >= result.evaluation.fp32_accuracy - 0.02


def test_qat_eager_on_plain_cnn(tmp_path, quick_bench):
    loaded = load_model(zoo("plain_cnn"))
    x = torch.randn(128, 1, 32, 32)
    y = torch.randint(0, 10, (128,))
    torch.save(x, tmp_path / "x.pt")
    torch.save(y, tmp_path / "y.pt")
    recipe = Recipe(
        mode="qat",
        qat=QATSettings(epochs=2, graph="eager", batch_size=32, freeze_bn_epoch=1, freeze_observer_epoch=1),
        calib=DataSource(kind="tensor", path=str(tmp_path / "x.pt")),
        train=DataSource(kind="tensor", path=str(tmp_path / "x.pt"), labels=str(tmp_path / "y.pt")),
        eval=DataSource(kind="tensor", path=str(tmp_path / "x.pt"), labels=str(tmp_path / "y.pt")),
        benchmark=quick_bench,
    )
    result = run(run_recipe(recipe, loaded), cancel=None)
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.evaluation.int8_accuracy is not None


def test_dynamic_lstm(quick_bench):
    loaded = load_model(zoo("lstm_classifier"))
    assert loaded.input_dtype == "int64"
    recipe = Recipe(mode="dynamic", calib=DataSource(kind="random", limit=32), benchmark=quick_bench)
    result = run(run_recipe(recipe, loaded))
    types = {r.type: r for r in result.coverage.rows}
    assert types["LSTM"].quantized == 1 and types["Linear"].quantized == 1
    assert types["Embedding"].quantized == 0
    assert result.evaluation.agreement >= 0.9


def test_dynamic_sentence_transformer_keeps_embeddings(tmp_path, quick_bench):
    loaded = load_model(zoo("sentence_encoder"))
    ids = torch.randint(0, 1000, (64, 32), generator=torch.Generator().manual_seed(1))
    import numpy as np

    np.save(tmp_path / "ids.npy", ids.numpy())
    recipe = Recipe(
        mode="dynamic", calib=DataSource(kind="tensor", path=str(tmp_path / "ids.npy")), benchmark=quick_bench
    )
    result = run(run_recipe(recipe, loaded, export=tmp_path / "enc.pt"))
    assert result.evaluation.cosine > 0.99
    assert result.evaluation.output_sqnr_db > 20
    reloaded = torch.jit.load(str(tmp_path / "enc.pt"))
    out = reloaded(ids[:4])
    assert out.shape == (4, 128)


def test_static_mode_refuses_token_model_with_advice(quick_bench):
    loaded = load_model(zoo("lstm_classifier"))
    recipe = Recipe(mode="eager", calib=DataSource(kind="random", limit=8), benchmark=quick_bench)
    with pytest.raises(FlowError, match="dynamic"):
        run(run_recipe(recipe, loaded))


def test_dynamic_on_conv_model_says_nothing_to_quantize(demo, quick_bench):
    with pytest.raises(FlowError, match="nothing to quantize"):
        run(run_recipe(Recipe(mode="dynamic", settings=QuantSettings(skip=["fc"]), benchmark=quick_bench), demo))


def test_fx_trace_failure_names_module_and_line(quick_bench):
    loaded = load_model(zoo("gated_cnn"))
    recipe = Recipe(
        mode="fx", calib=DataSource(kind="random", limit=8), input_shape=[1, 1, 16, 16], benchmark=quick_bench
    )
    with pytest.raises(FlowError) as err:
        drive(run_recipe(recipe, loaded))
    msg = str(err.value)
    assert "'gate'" in msg and "zoo.py" in msg and "if x.mean() > 0" in msg
    assert "--skip gate" in msg
    assert_clean(err.value, "zoo.py:", "if x.mean() > 0", fix_words=("--skip gate",))
    assert "calibrate" not in stages(err.value.seen)  # refused before any calibration batch
    # and the advice works: keeping the gate in float lets FX go through
    recipe.settings.skip = ["gate"]
    result = run(run_recipe(recipe, loaded))
    assert "gate.conv" in result.coverage.float_layers


def test_skip_worst_requantizes_and_reports_gain(demo, quick_bench):
    result = run(run_recipe(demo_recipe("fx", quick_bench, skip_worst=2), demo))
    sw = result.skip_worst
    assert sw is not None and len(sw.layers) == 2
    assert set(sw.layers) <= set(result.skipped)
    assert all(name in result.coverage.float_layers for name in sw.layers)
    assert sw.after.samples == sw.before.samples


def test_layer_errors_rank_and_match_numeric_suite_direction(demo):
    """Weight SQNR falls when weights get coarser: per-tensor < per-channel on the same layers."""
    from qstudio.core.data import load_dataset

    calib = load_dataset(DataSource(kind="demo", split="calib"))
    groups = fusion.suggest_groups(demo.module).groups
    figures = {}
    for per_channel in (True, False):
        recipe = Recipe(mode="fx", settings=QuantSettings(calib_batches=2, per_channel=per_channel))
        q = run(get_flow(recipe).run(FlowInput(demo.module, recipe, groups, calib, calib.sample(1))))
        errors = run(compare.layer_errors(q, calib, 16, 2))
        assert [e.worst_db() for e in errors] == sorted(e.worst_db() for e in errors)
        figures[per_channel] = {e.name: e.weight_sqnr_db for e in errors}
    assert sum(figures[True].values()) > sum(figures[False].values())


@pytest.mark.parametrize("mode", ["fx", "eager"])
def test_float_reference_has_no_observer_left_under_any_name(mode):
    """The per-layer reference must compute plain float: an observer left behind (FX registers shared
    observers under several names) would make the comparison pay for histograms on every batch."""
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    from qstudio.core.data import load_dataset

    calib = load_dataset(DataSource(kind="demo", split="calib"))
    loaded = load_model(zoo("plain_cnn")) if mode == "eager" else load_model(ModelSource("demo"))
    if mode == "eager":
        calib = load_dataset(DataSource(kind="random", limit=16), input_shape=loaded.input_shape)
    recipe = Recipe(mode=mode, settings=QuantSettings(calib_batches=1))
    groups = fusion.suggest_groups(loaded.module).groups
    q = run(get_flow(recipe).run(FlowInput(loaded.module, recipe, groups, calib, calib.sample(1))))
    prepared_had = any(isinstance(m, ObserverBase) for m in q.reference.modules())
    left = [
        n
        for n, m in q.reference.named_modules(remove_duplicate=False)
        if isinstance(m, (ObserverBase, FakeQuantizeBase))
    ]
    assert not prepared_had and left == []


@pytest.mark.parametrize("mode", ["fx", "qat"])
def test_fx_runs_leave_no_observed_model_alive(demo, mode):
    """torch.ao's FX passes cache every model they see (an unbounded functools.cache); a window session
    re-running a model must not keep one observed copy of it per run."""
    import gc

    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    from qstudio.core.data import load_dataset

    calib = load_dataset(DataSource(kind="demo", split="calib"))
    recipe = Recipe(mode=mode, settings=QuantSettings(calib_batches=1), qat=QATSettings(epochs=1, batch_size=64))
    groups = fusion.suggest_groups(demo.module).groups
    results = [
        run(get_flow(recipe).run(FlowInput(demo.module, recipe, groups, calib, calib.sample(1), calib, calib)))
        for _ in range(2)
    ]
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, and some of the process's objects (torch.distributed's
    # deprecated reduce_op) warn when any attribute of theirs is read
    observed = [m for m in gc.get_objects() if issubclass(type(m), (ObserverBase, FakeQuantizeBase))]
    assert observed == [], f"{len(observed)} observers still alive after {len(results)} runs"


def test_fx_flow_converts_resnet18_to_the_same_ops_as_the_pytorch_script():
    """qstudio applies the user's fusion groups before prepare_fx; that must not stop FX's own fusion.
    resnet18's BasicBlock calls one ReLU module twice, so no group can take it: the folded-away
    BatchNorm must leave no node between conv and ReLU, or they stay separate and INT8 runs ~8% slower."""
    import collections
    import copy

    import torchvision
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qstudio.core.data import load_dataset

    model = torchvision.models.resnet18(weights=None).eval()
    calib = load_dataset(DataSource(kind="random", limit=2), input_shape=[1, 3, 64, 64])
    recipe = Recipe(mode="fx", settings=QuantSettings(calib_batches=1, batch_size=2))
    groups = fusion.suggest_groups(model).groups
    assert ["layer1.0.conv1", "layer1.0.bn1"] in groups  # the group that stops short of the shared ReLU
    ours = run(get_flow(recipe).run(FlowInput(model, recipe, groups, calib, calib.sample(1)))).module
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (calib.sample(1),))
    prepared(calib.inputs)
    theirs = convert_fx(prepared)

    def kinds(gm):
        return collections.Counter(
            type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"
        )

    assert kinds(ours) == kinds(theirs)
    assert kinds(ours)["ConvReLU2d"] == 9


def test_auto_activation_range_is_7_bit_for_static_x86_and_8_bit_for_dynamic_on_vnni():
    """fbgemm's depthwise kernels saturate with 8-bit activations even with VNNI (mobilenet_v2 lost accuracy),
    while dynamic Linear kernels are safe there."""
    from qstudio.core.environment import has_vnni
    from qstudio.core.flows.qconfig import qat_qconfig, reduce_range, static_qconfig

    def act_max(**kw) -> int:
        return static_qconfig(QuantSettings(**kw)).activation().quant_max

    assert act_max() == 127 and act_max(backend="fbgemm") == 127  # auto, static x86/fbgemm
    assert act_max(backend="onednn") == 255 and act_max(reduce_range="off") == 255
    assert qat_qconfig(QuantSettings()).activation().quant_max == 127
    assert reduce_range(QuantSettings(), dynamic=True) is (not has_vnni())


# --------------------------------------------------------------------------- refusals and faults during a run


RESIDUAL = """
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        y = self.relu(self.conv1(x))
        y = y + self.conv2(y)
        return self.head(y)


def build():
    return Residual()


build.input_shape = [1, 1, 16, 16]
"""


def test_eager_mode_with_a_tensor_add_is_refused_before_calibrating(tmp_path: Path) -> None:
    loaded = load_model(ModelSource(f"{write_factory(tmp_path, RESIDUAL)}:build"))
    recipe = Recipe(mode="eager", calib=DataSource(kind="random", limit=8), benchmark=QUICK)
    with pytest.raises(FlowError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "net.py:", "y = y + self.conv2(y)", fix_words=("--mode fx", "FloatFunctional"))
    assert "calibrate" not in stages(info.value.seen)  # refused before any calibration batch
    assert drive(run_recipe(Recipe(mode="fx", calib=recipe.calib, benchmark=QUICK), loaded))[0] is not None


def test_model_raising_mid_calibration_names_module_and_line(tmp_path: Path) -> None:
    loaded = load_model(ModelSource(f"{bomb_factory(tmp_path, 'index 7 is out of bounds')}:build"))
    for mode in ("fx", "eager"):
        recipe = Recipe(
            mode=mode,
            settings=QuantSettings(batch_size=4, calib_batches=8, skip=["bomb"] if mode == "fx" else []),
            calib=DataSource(kind="random", limit=32),
            benchmark=QUICK,
        )
        loaded.module.bomb.calls = 0
        with pytest.raises(FlowError) as info:
            drive(run_recipe(recipe, loaded))
        assert_clean(
            info.value, "'bomb' raised RuntimeError", "batch 3 of 8", "net.py:", "raise RuntimeError", "out of bounds"
        )
        assert [s.done for s in info.value.seen if s.stage == "calibrate"] == [0, 1, 2]


# --------------------------------------------------------------------------- dynamic mode on GPT-2's Conv1D (a Linear with its weight transposed)


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
