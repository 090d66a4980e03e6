"""Models written for eager quantization go through qstudio as the PyTorch script takes them.

torchvision's quantizable models, PyTorch's own test models with QuantStub/DeQuantStub and the
tutorials' models carry their stubs, FloatFunctional additions and ``fuse_model()``.  Each one is
quantized twice on the same calibration batches: by the bare torch.ao script (fuse_model, prepare,
calibrate, convert) and by qstudio's flow; the INT8 outputs must agree.  Then the cases torch.ao
refuses per module (ConvTranspose has no per-channel weight observer) and recurrent models in
static mode: a fallback or a FlowError whose fix works, never a traceback.

Weights are random (nothing is downloaded); BatchNorm statistics are settled on random batches in
train mode first, so activations have realistic ranges.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization import (
    DeQuantStub,
    QuantStub,
    QuantWrapper,
    convert,
    disable_observer,
    get_default_qat_qconfig,
    get_default_qconfig,
    prepare,
    prepare_qat,
    quantize_dynamic,
)

from qstudio.core import compare, fusion
from qstudio.core.data import Dataset
from qstudio.core.errors import FlowError
from qstudio.core.flows import FlowInput, get_flow
from qstudio.core.flows.qconfig import static_qconfig
from qstudio.core.progress import run
from qstudio.core.recipe import QATSettings, QuantSettings, Recipe


def cq():
    """torch's test models (torch.testing._internal.common_quantization), which import the expecttest package."""
    return pytest.importorskip(
        "torch.testing._internal.common_quantization", reason="torch's test models need expecttest"
    )


BATCH = 4
CALIB_BATCHES = 2


# -- helpers ------------------------------------------------------------------------------------------------------
def settled(model: nn.Module, shape: tuple[int, ...], batches: int = 3) -> nn.Module:
    """Random-init model with BatchNorm statistics from a few random batches, back in eval mode.

    Only BatchNorm runs in train mode: the rest stays in eval mode so auxiliary heads (inception's, googlenet's)
    and dropout stay out of it.
    """
    gen = torch.Generator().manual_seed(1)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, *shape[1:], generator=gen))
    return model.eval()


def data(shape: tuple[int, ...], n: int = BATCH * CALIB_BATCHES, classes: int | None = None) -> Dataset:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, *shape[1:], generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen) if classes else None
    return Dataset(x, y, "random test batches", is_random=True)


def tv_quantizable(name: str) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(f"quantized_{name}", weights=None)


def studio(model: nn.Module, recipe: Recipe, calib: Dataset, train: Dataset | None = None):
    """qstudio's flow as the pipeline drives it: suggested groups, preflight, run."""
    groups = fusion.suggest_groups(model, set(recipe.settings.skip)).groups
    inp = FlowInput(model, recipe, groups, calib, calib.sample(1), train)
    flow = get_flow(recipe)
    flow.preflight(inp)
    return run(flow.run(inp))


def ptq_recipe(mode: str = "eager", **settings) -> Recipe:
    return Recipe(mode=mode, settings=QuantSettings(calib_batches=CALIB_BATCHES, batch_size=BATCH, **settings))


def bare_eager_ptq(model: nn.Module, calib: Dataset, fuse=None, qconfig=None) -> nn.Module:
    """The PyTorch script: fuse_model(), qconfig, prepare, calibrate on the same batches, convert."""
    torch.backends.quantized.engine = "x86"
    m = copy.deepcopy(model).eval()
    if fuse is not None:
        fuse(m)
    elif hasattr(m, "fuse_model"):
        m.fuse_model()
    if not any(isinstance(x, (QuantStub, QuantWrapper)) for x in m.modules()):
        m = QuantWrapper(m)
    m.qconfig = qconfig or get_default_qconfig("x86")
    prepare(m, inplace=True)
    with torch.no_grad():
        for x, _ in calib.batches(BATCH, CALIB_BATCHES):
            m(x)
    return convert(m.eval())


def cosine(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Cosine similarity of two models' outputs on ``x``, over the whole batch (some heads have one output)."""
    with torch.no_grad():
        ya, yb = a(x).float().flatten(), b(x).float().flatten()
    return float(nn.functional.cosine_similarity(ya, yb, dim=0))


def int8_layers(model: nn.Module, q) -> list[str]:
    cov = compare.coverage(model, q, [])
    return cov.quantized_layers


# -- torchvision's quantizable models ---------------------------------------------------------------------------------
def _tv_eager_ptq(name: str, side: int) -> None:
    shape = (1, 3, side, side)
    model = settled(tv_quantizable(name), shape)
    assert fusion.suggest_groups(model).method == fusion.FUSE_MODEL
    calib = data(shape)
    q = studio(model, ptq_recipe(), calib)
    assert q.prefix == ""  # the model's own stubs, no second QuantWrapper
    layers = int8_layers(model, q)
    assert len(layers) > 10
    bare = bare_eager_ptq(model, calib)
    x = data(shape, 4).inputs
    assert cosine(bare, q.module, x) > 0.99
    assert cosine(model, q.module, x) > 0.98


# torchvision's quantizable MobileNetV2 gives every block a FloatFunctional skip_add, also the blocks without a
# residual, which never call it: converting asks its observer, which never saw data, and torch.ao warns
# (the PyTorch script below gets the same warning for the same unused modules)
UNUSED_SKIP_ADD = "ignore:must run observer before calling calculate_qparams:UserWarning:torch.ao"


@pytest.mark.filterwarnings(UNUSED_SKIP_ADD)
@pytest.mark.parametrize(("name", "side"), [("resnet18", 64), ("mobilenet_v2", 64), ("shufflenet_v2_x0_5", 64)])
def test_torchvision_quantizable_eager_ptq_matches_the_pytorch_script(name, side):
    _tv_eager_ptq(name, side)


@pytest.mark.slow
@pytest.mark.filterwarnings(UNUSED_SKIP_ADD)
@pytest.mark.parametrize(
    ("name", "side"),
    [("googlenet", 96), ("inception_v3", 96), ("resnet50", 96), ("mobilenet_v3_large", 96), ("resnext101_32x8d", 64)],
)  # fmt: skip
def test_torchvision_quantizable_eager_ptq_matches_the_pytorch_script_slow(name, side):
    _tv_eager_ptq(name, side)


def test_skip_on_a_model_with_its_own_stubs_puts_the_layer_on_a_float_island():
    shape = (1, 3, 64, 64)
    model = settled(tv_quantizable("resnet18"), shape)
    q = studio(model, ptq_recipe(skip=["fc", "layer1.0.bn1"]), data(shape))
    cov = compare.coverage(model, q, ["fc", "layer1.0.bn1"])
    assert cov.kept_float["fc"]
    # a skipped member of a fusion group keeps the whole fused module in float
    assert {"fc", "layer1.0.conv1"} <= set(cov.float_layers) and len(cov.quantized_layers) == 19
    assert cosine(model, q.module, data(shape, 4).inputs) > 0.98


# -- the seeds' models ------------------------------------------------------------------------------------------------
class TutorialNet(nn.Module):
    """The PyTorch tutorials' eager model: QuantStub -> conv/bn/relu blocks -> classifier -> DeQuantStub, fuse_model()."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.dequant(self.fc(self.flatten(self.pool(x))))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        fuse = (
            torch.ao.quantization.fuse_modules_qat
            if (self.training if is_qat is None else is_qat)
            else torch.ao.quantization.fuse_modules
        )
        fuse(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]], inplace=True)


class Qresnet(nn.Module):
    """Seed 000 (fastai eager QAT): torchvision's quantizable resnet18 body with a new head, between stubs."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.q = QuantStub()
        self.m = m
        self.dq = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dq(self.m(self.q(x)))


def seed000_model() -> nn.Module:
    body = nn.Sequential(*list(tv_quantizable("resnet18").children())[:-3], nn.Flatten(), nn.Linear(512, 2))
    return Qresnet(body)


def seed000_groups() -> list[list[str]]:
    """The article's fuse_modules calls, as qualified names."""
    groups = [["m.0", "m.1", "m.2"]]
    for i in range(4, 8):
        for j in (0, 1):
            block = f"m.{i}.{j}"
            groups += [[f"{block}.conv1", f"{block}.bn1", f"{block}.relu"], [f"{block}.conv2", f"{block}.bn2"]]
            if j == 0 and i > 4:
                groups.append([f"{block}.downsample.0", f"{block}.downsample.1"])
    return groups


def test_seed000_model_gets_the_articles_fusion_groups():
    model = seed000_model().eval()
    s = fusion.suggest_groups(model)
    assert sorted(s.groups) == sorted(seed000_groups())


def test_tutorial_model_groups_are_its_fuse_model_and_stay_editable():
    model = TutorialNet().eval()
    s = fusion.suggest_groups(model)
    assert s.method == fusion.FUSE_MODEL and s.groups == [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]]
    assert fusion.validate_groups(model, s.groups) == []
    assert fusion.validate_groups(model, [["conv1", "bn1"]]) == []  # an edited list is checked like any other


@pytest.mark.parametrize("mode", ["eager", "dynamic"])
def test_tutorial_model_ptq_and_dynamic(mode):
    shape = (1, 3, 16, 16)
    model = settled(TutorialNet(), shape)
    calib = data(shape)
    q = studio(model, ptq_recipe(mode), calib)
    x = data(shape, 4).inputs
    if mode == "eager":
        bare = bare_eager_ptq(model, calib)
        assert set(int8_layers(model, q)) == {"conv1", "conv2", "fc"}
    else:
        bare = quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        assert int8_layers(model, q) == ["fc"]
    assert cosine(bare, q.module, x) > 0.99


def test_fuse_model_groups_follow_what_it_fused_not_module_order():
    """QuantizableBottleneck registers relu1/relu2 after conv3/bn3 and the downsample: the ReLU objects kept inside
    the fused modules, not their position, say which group they belong to."""
    from torchvision.models.quantization.resnet import QuantizableBottleneck

    down = nn.Sequential(nn.Conv2d(32, 64, 1), nn.BatchNorm2d(64))
    block = QuantizableBottleneck(32, 16, downsample=down).eval()
    s = fusion.suggest_groups(block)
    assert s.method == fusion.FUSE_MODEL and s.notes == []
    assert s.groups == [
        ["conv1", "bn1", "relu1"],
        ["conv2", "bn2", "relu2"],
        ["conv3", "bn3"],
        ["downsample.0", "downsample.1"],
    ]


class OddFuse(TutorialNet):
    """A fuse_model that does more than fuse: its groups cannot say it, so data flow suggests them."""

    def fuse_model(self, is_qat: bool | None = None) -> None:
        super().fuse_model(is_qat)
        self.fc = nn.Linear(16, 4)


class BrokenFuse(TutorialNet):
    def fuse_model(self, is_qat: bool | None = None) -> None:
        torch.ao.quantization.fuse_modules(self, [["conv1", "fc"]], inplace=True)  # no such pattern: torch raises


@pytest.mark.parametrize(("cls", "said"), [(OddFuse, "changes more than"), (BrokenFuse, "fuse_model() failed")])
def test_a_fuse_model_that_cannot_be_read_falls_back_to_data_flow(cls, said):
    s = fusion.suggest_groups(cls().eval())
    assert s.method == "data flow" and said in s.notes[0]
    assert s.groups == [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]]


# -- torch's own test models with stubs -------------------------------------------------------------------------------
TORCH_MODELS = {
    "AnnotatedConvModel": (lambda: cq().AnnotatedConvModel("x86"), (1, 3, 5, 5)),
    "AnnotatedConvBnModel": (lambda: cq().AnnotatedConvBnModel(), (1, 3, 5, 5)),
    "AnnotatedConvBnReLUModel": (lambda: cq().AnnotatedConvBnReLUModel(), (1, 3, 5, 5)),
    "QuantStubModel": (lambda: cq().QuantStubModel(), (1, 5)),
    "ManualConvLinearQATModel": (lambda: cq().ManualConvLinearQATModel(), (1, 3, 10, 10)),
    "ModelWithSequentialFusion": (lambda: cq().ModelWithSequentialFusion(), (1, 3, 10, 10)),
    "ModelForFusion": (lambda: cq().ModelForFusion(torch.ao.quantization.default_qconfig), (1, 3, 1, 19)),
    "ResNetBase": (lambda: cq().ResNetBase(), (1, 3, 8, 8)),
    "ActivationsTestModel": (lambda: cq().ActivationsTestModel(), (1, 3, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_torch_test_models_with_stubs_eager_ptq(name):
    build, shape = TORCH_MODELS[name]
    torch.manual_seed(0)
    model = settled(build(), shape)
    calib = data(shape)
    q = studio(model, ptq_recipe(), calib)
    groups = fusion.suggest_groups(model).groups
    bare = bare_eager_ptq(
        model, calib, fuse=None if hasattr(model, "fuse_model") else lambda m: fusion.apply_fusion(m, groups)
    )
    x = data(shape, 4).inputs
    assert cosine(bare, q.module, x) > 0.99
    assert cosine(model, q.module, x) > 0.98
    if any(p.numel() for p in model.parameters()):
        assert int8_layers(model, q)
    if name == "ModelForFusion":  # the model's own qconfig = None on the layers after its DeQuantStub is kept
        assert {"sub2.conv", "fc"} <= set(compare.coverage(model, q, []).float_layers)
        assert any("'sub2', 'fc' in float" in n for n in q.notes)


# -- eager QAT ------------------------------------------------------------------------------------------------------
QAT = QATSettings(epochs=2, lr=1e-3, batch_size=8, graph="eager", freeze_bn_epoch=1, freeze_observer_epoch=1)


def bare_eager_qat(model: nn.Module, train: Dataset, fuse=None) -> nn.Module:
    """The QAT script of the seeds: fuse for QAT, default QAT qconfig, prepare_qat, train as qstudio trains, convert.

    One batch per epoch (the whole set), so qstudio's shuffling cannot change what a step sees.
    """
    torch.backends.quantized.engine = "x86"
    m = copy.deepcopy(model).train()
    if fuse is not None:
        fuse(m)
    elif hasattr(m, "fuse_model"):
        m.fuse_model(is_qat=True)
    if not any(isinstance(x, (QuantStub, QuantWrapper)) for x in m.modules()):
        m = QuantWrapper(m)
    m.qconfig = get_default_qat_qconfig("x86")
    prepare_qat(m, inplace=True)
    opt = torch.optim.SGD(m.parameters(), lr=QAT.lr, momentum=0.9, weight_decay=1e-5)
    x, y = train.inputs, train.labels
    for epoch in range(QAT.epochs):
        if epoch >= QAT.freeze_observer_epoch:
            m.apply(disable_observer)
        if epoch >= QAT.freeze_bn_epoch:
            m.apply(nniqat.freeze_bn_stats)
        m.train()
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return convert(m.eval())


@pytest.mark.parametrize("name", ["resnet18", "tutorial", "seed000", "ManualConvLinearQATModel"])
def test_eager_qat_matches_the_pytorch_script(name):
    shape = (1, 3, *{"resnet18": (64, 64), "seed000": (64, 64), "tutorial": (16, 16)}.get(name, (10, 10)))
    torch.manual_seed(0)
    model, classes, fuse = {
        "resnet18": lambda: (tv_quantizable("resnet18"), 1000, None),
        "tutorial": lambda: (TutorialNet(), 4, None),
        "seed000": lambda: (
            seed000_model(),
            2,
            lambda m: torch.ao.quantization.fuse_modules_qat(m, seed000_groups(), inplace=True),
        ),
        "ManualConvLinearQATModel": lambda: (cq().ManualConvLinearQATModel(), 10, None),
    }[name]()
    model = settled(model, shape)
    train = data(shape, 8, classes=classes)
    recipe = Recipe(mode="qat", qat=QAT, settings=QuantSettings(calib_batches=CALIB_BATCHES, batch_size=BATCH))
    q = studio(model, recipe, data(shape), train)
    assert [h.epoch for h in q.history] == [1, 2] and q.prefix == ""
    assert int8_layers(model, q)
    bare = bare_eager_qat(model, train, fuse)
    x = data(shape, 4).inputs
    assert cosine(bare, q.module, x) > 0.99


# -- ConvTranspose: per-tensor weights where torch.ao has no per-channel observer ------------------------------------
CONV_T = {
    "ConvTransposeModel": (lambda: cq().ConvTransposeModel(), (1, 3, 5, 5), ["conv"]),
    "AnnotatedConvTransposeModel": (lambda: cq().AnnotatedConvTransposeModel("x86"), (1, 3, 5, 5), ["conv"]),
    "ModelForConvTransposeBNFusion": (
        lambda: cq().ModelForConvTransposeBNFusion(),
        (1, 3, 6),
        ["conv1", "conv2", "conv3"],
    ),
}


def bare_fx_ptq(model: nn.Module, calib: Dataset) -> nn.Module:
    """The FX script with torch's default mapping (which gives ConvTranspose per-tensor weights itself)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    m = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (calib.sample(1),))
    with torch.no_grad():
        for x, _ in calib.batches(BATCH, CALIB_BATCHES):
            m(x)
    return convert_fx(m)


def _per_tensor_for_transposed(m: nn.Module) -> None:
    """torch's default mapping's rule, by hand for eager: per-tensor weights on ConvTranspose."""
    from torch.ao.quantization import QConfig, default_weight_observer

    fuse_groups = fusion.suggest_groups(m).groups
    fusion.apply_fusion(m, fuse_groups)
    for mod in m.modules():
        if isinstance(mod, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            mod.qconfig = QConfig(activation=get_default_qconfig("x86").activation, weight=default_weight_observer)


@pytest.mark.parametrize("mode", ["eager", "fx"])
@pytest.mark.parametrize("name", sorted(CONV_T))
def test_conv_transpose_gets_per_tensor_weights_and_says_so(name, mode):
    build, shape, transposed = CONV_T[name]
    if mode == "fx" and name == "AnnotatedConvTransposeModel":
        pytest.skip("a model with its own stubs is eager-mode code")
    torch.manual_seed(0)
    model = settled(build(), shape)
    calib = data(shape)
    q = studio(model, ptq_recipe(mode), calib)  # per-channel is on (the default) and nothing is refused
    assert set(transposed) <= set(int8_layers(model, q))
    note = next(n for n in q.notes if "per-tensor weights" in n)
    assert all(f"'{t}'" in note for t in transposed)
    bare = bare_fx_ptq(model, calib) if mode == "fx" else bare_eager_ptq(model, calib, fuse=_per_tensor_for_transposed)
    x = data(shape, 4).inputs
    assert cosine(bare, q.module, x) > 0.99
    # torch's x86 kernel is wrong for ConvTranspose2d(3, 5) (the bare script's output too): qstudio says so
    kernel_wrong = cosine(model, bare, x) < 0.9
    assert any("computes wrong results" in n and "--skip conv" in n for n in q.notes) == kernel_wrong


def test_conv_transpose_per_tensor_fallback_is_accurate_where_the_kernel_is():
    """torch 2.x's x86/onednn quantized ConvTranspose kernels go wrong when in_channels != out_channels (the bare
    script's output too); qnnpack computes it right, and there the fallback keeps the model close to FP32."""
    build, shape, _ = CONV_T["ConvTransposeModel"]
    torch.manual_seed(0)
    model = settled(build(), shape)
    for mode in ("eager", "fx"):
        q = studio(model, ptq_recipe(mode, backend="qnnpack"), data(shape))
        assert cosine(model, q.module, data(shape, 4).inputs) > 0.99, mode


def test_eager_qat_on_conv_transpose():
    model = settled(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 8, 3), nn.Flatten(),
                                  nn.LazyLinear(4)), (1, 3, 8, 8))  # fmt: skip
    recipe = Recipe(mode="qat", qat=QAT, settings=QuantSettings(calib_batches=CALIB_BATCHES, batch_size=BATCH))
    q = studio(model, recipe, data((1, 3, 8, 8)), data((1, 3, 8, 8), 8, classes=4))
    assert "2" in int8_layers(model, q) and any("'2'" in n and "per-tensor" in n for n in q.notes)


def test_a_refused_module_becomes_a_flow_error_whose_fixes_work():
    """What torch.ao refuses (here: per-channel weights on ConvTranspose, asked for by hand) names the module
    and offers fixes; each of them goes through."""
    from qstudio.core.flows.base import refusals

    build, shape, _ = CONV_T["ConvTransposeModel"]
    model = settled(build(), shape)
    wrapped = QuantWrapper(copy.deepcopy(model))
    wrapped.qconfig = static_qconfig(QuantSettings())  # per-channel everywhere, as qstudio once did
    with pytest.raises(FlowError) as err, refusals("prepare", wrapped, "module."):
        prepare(wrapped, inplace=True)
    msg = str(err.value)
    assert "'conv' (ConvTranspose2d)" in msg and "--skip conv" in msg and "--no-per-channel" in msg
    assert "Traceback" not in msg
    for settings in ({"skip": ["conv"]}, {"per_channel": False}):
        q = studio(model, ptq_recipe(**settings), data(shape))
        assert q.module(data(shape, 2).inputs).shape == (2, 5, 7, 7)


# -- recurrent models: static eager says what works, dynamic does it --------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rnn_dynamic_model_in_eager_mode_points_to_dynamic_which_works(kind):
    from qstudio.core.tensors import first_tensor

    torch.manual_seed(0)
    model = cq().RNNDynamicModel(kind).eval()
    shape = (1, 3, 2)  # samples x (batch 3, features 2); nn.LSTM takes dim 0 as time
    calib = data(shape)
    with pytest.raises(FlowError) as err:
        studio(model, ptq_recipe("eager"), calib)
    assert "--mode dynamic" in str(err.value)
    q = studio(model, ptq_recipe("dynamic"), calib)
    assert int8_layers(model, q) == ["mod"]
    bare = quantize_dynamic(copy.deepcopy(model), {nn.LSTM, nn.GRU, nn.Linear})
    x = data(shape, 4).inputs
    with torch.no_grad():
        a, b = first_tensor(bare(x)).flatten(), first_tensor(q.module(x)).flatten()
    assert float(nn.functional.cosine_similarity(a, b, dim=0)) > 0.99


# -- the eager diagnosis ----------------------------------------------------------------------------------------------
class HalfReady(nn.Module):
    """FloatFunctional for one residual, a plain ``+`` for the other: only the plain one is a blocker."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.skip_add = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.skip_add.add(self.conv1(x), x)
        return self.conv2(x) + x


def test_eager_diagnosis_blames_plain_arithmetic_not_float_functional():
    from qstudio.core.flows.eager import blockers

    model = HalfReady().eval()
    found = blockers(model, set())
    assert len(found) == 1 and "self.conv2(x) + x" in found[0]
    assert blockers(tv_quantizable("resnet18").eval(), set()) == []
    with pytest.raises(FlowError) as err:
        studio(model, ptq_recipe(), data((1, 3, 8, 8)))
    assert "self.conv2(x) + x" in str(err.value) and "skip_add" not in str(err.value) and "--mode fx" in str(err.value)


# -- the command line -------------------------------------------------------------------------------------------------
def test_cli_eager_on_torchvision_quantizable_resnet18_exits_cleanly(tmp_path):
    import json

    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "qstudio.cli", "quantize", "torchvision:quantized_resnet18", "--mode", "eager",
           "--input-shape", "1,3,64,64", "--calib-data", "random", "--calib-batches", "2", "--batch-size", "4",
           "--iters", "2", "--batch-sizes", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(out.read_text())
    cov = result["coverage"]
    assert cov["float_layers"] == [] and len(cov["quantized_layers"]) == 21  # 20 convs and fc
    assert result["fusion"]["groups"][0] == ["conv1", "bn1", "relu"] and len(result["fusion"]["groups"]) == 20
    assert result["cosine"] > 0.95
