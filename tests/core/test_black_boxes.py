"""FX mode on models torch.fx cannot trace whole: the untraceable parts stay float, the rest is quantized, in one run.

Real models, nothing downloaded: Hugging Face encoders and GPT-2 from small configs, timm's
MobileViT with random weights, and small models written here.  This file is also the factory
file the runs load (``load_model("test_black_boxes.py:bert")``).
"""

from __future__ import annotations

import time

import pytest
import torch
from engine_checks import zoo
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import QConfigMapping
from torch.ao.quantization.quantize_fx import prepare_fx

from qstudio.core import compare
from qstudio.core import graph as graphs
from qstudio.core.data import Dataset
from qstudio.core.errors import FlowError
from qstudio.core.flows import FlowInput, get_flow, module_for, regions
from qstudio.core.flows.qconfig import static_qconfig
from qstudio.core.loading import load_model
from qstudio.core.pipeline import RunResult, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QATSettings, QuantSettings, Recipe

HERE = __file__


# -- factories ----------------------------------------------------------------------------------------------------
class Helper(nn.Module):
    """No weights, one branch on tensor values: FX cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 0.5
        return x


class HelperNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.helper = Helper()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.helper(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(self.relu2(self.conv2(x))), 1))


def helper_net() -> nn.Module:
    torch.manual_seed(0)
    return HelperNet()


helper_net.input_shape = [1, 1, 16, 16]  # type: ignore[attr-defined]


class Mixer(nn.Module):
    """A Linear inside code whose control flow depends on the input's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            x = nn.functional.pad(x, (0, 1))
        return self.proj(x)


class MixerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 16)
        self.mix = Mixer()
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.fc2(self.relu(self.fc1(x)))))


def mixer_net() -> nn.Module:
    torch.manual_seed(0)
    return MixerNet()


mixer_net.input_shape = [1, 16]  # type: ignore[attr-defined]


class RootShape(nn.Module):
    """The model's own forward cannot be traced: its children are quantized each on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            x = nn.functional.pad(x, (0, 1, 0, 1))
        x = self.body(self.stem(x))
        return self.fc(x.mean((2, 3)))


def root_shape() -> nn.Module:
    torch.manual_seed(0)
    return RootShape()


root_shape.input_shape = [1, 1, 15, 15]  # type: ignore[attr-defined]


class Tokens(nn.Module):
    """Wraps a transformers model so it takes token ids and returns the hidden states."""

    def __init__(self, model: nn.Module, **kwargs: object) -> None:
        super().__init__()
        self.model = model
        self.kwargs = kwargs

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, **self.kwargs).last_hidden_state


def bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    return Tokens(BertModel(config))


bert.input_shape = [1, 16]  # type: ignore[attr-defined]


def distilbert() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    return Tokens(DistilBertModel(DistilBertConfig(vocab_size=500, dim=64, n_layers=2, n_heads=2, hidden_dim=128)))


distilbert.input_shape = [1, 16]  # type: ignore[attr-defined]


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=500, n_embd=64, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    return Tokens(GPT2Model(config), use_cache=False)


gpt2.input_shape = [1, 16]  # type: ignore[attr-defined]


def mobilevit() -> nn.Module:
    """timm's mobilevitv2_050, random weights with BatchNorm statistics settled on random batches."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mobilevitv2_050", pretrained=False)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 128, 128, generator=gen))
    return model.eval()


mobilevit.input_shape = [1, 3, 128, 128]  # type: ignore[attr-defined]


# -- helpers ------------------------------------------------------------------------------------------------------
def quantize(name: str, batch_sizes: tuple[int, ...] = (1, 4)) -> tuple[RunResult, float]:
    loaded = load_model(ModelSource(f"{HERE}:{name}"))
    recipe = Recipe(
        mode="fx",
        calib=DataSource(kind="random", limit=32),
        settings=QuantSettings(calib_batches=2, batch_size=16),
        benchmark=BenchmarkSettings(batch_sizes=list(batch_sizes), warmup=2, iters=5),
    )
    start = time.perf_counter()
    result = run(run_recipe(recipe, loaded))
    return result, time.perf_counter() - start


def note(result: RunResult, *words: str) -> str:
    found = [w for w in result.warnings if all(word in w for word in words)]
    assert found, f"no warning with {words}: {result.warnings}"
    return found[0]


def int8(result: RunResult, prefix: str) -> list[str]:
    return [n for n in result.coverage.quantized_layers if n.startswith(prefix)]


def floats(result: RunResult, prefix: str) -> list[str]:
    return [n for n in result.coverage.float_layers if n.startswith(prefix)]


# -- small models ------------------------------------------------------------------------------------------------
def test_untraceable_helper_is_a_black_box_and_the_rest_is_int8() -> None:
    result, _ = quantize("helper_net")
    assert sorted(result.coverage.quantized_layers) == ["conv1", "conv2", "fc"]
    said = note(result, "black boxes", "'helper'")
    assert "test_black_boxes.py:" in said and "if x.sum() > 0" in said
    assert result.skipped == []  # nothing asked for by hand
    assert result.evaluation.cosine > 0.95
    assert any(e.name == "conv2" for e in result.layers)  # per-layer figures across the black box


def test_linear_inside_untraceable_code_is_quantized_dynamically() -> None:
    result, _ = quantize("mixer_net")
    assert sorted(result.coverage.quantized_layers) == ["fc1", "fc2", "head", "mix.proj"]
    assert isinstance(module_for(result.quantized, "mix.proj"), DynamicLinear)
    assert "'mix.proj'" in note(result, "dynamically")
    assert "if x.shape[-1] % 2:" in note(result, "black boxes", "'mix'")
    assert result.evaluation.cosine > 0.98
    assert {"mix.proj", "fc1"} <= {e.name for e in result.layers}


def test_untraceable_top_level_forward_quantizes_its_children_separately() -> None:
    result, _ = quantize("root_shape")
    assert sorted(result.coverage.quantized_layers) == ["body.0", "fc", "stem.0"]
    said = note(result, "black boxes", "the model's own forward")
    assert "if x.shape[-1] % 2:" in said and "2 traced region(s)" in said
    assert result.evaluation.cosine > 0.95
    assert [s.batch_size for s in result.int8.latency] == [1, 4]  # the regions take other batch sizes than traced


def test_qat_trains_the_regions_and_keeps_the_black_box_float() -> None:
    model = helper_net().eval()
    gen = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(16, 1, 16, 16, generator=gen), torch.randint(0, 10, (16,), generator=gen), "random")
    recipe = Recipe(
        mode="qat", settings=QuantSettings(calib_batches=2, batch_size=8), qat=QATSettings(epochs=1, batch_size=8)
    )
    inp = FlowInput(model, recipe, [], data, data.sample(1), data, data)
    flow = get_flow(recipe)
    flow.preflight(inp)
    q = run(flow.run(inp))
    assert compare.coverage(model, q, []).quantized_layers == ["conv1", "conv2", "fc"]
    assert q.history and any("'helper'" in n for n in q.notes)


def test_a_region_torch_ao_refuses_stays_float_and_the_rest_is_quantized() -> None:
    model = root_shape()
    model.body = nn.Sequential(nn.ConvTranspose2d(8, 8, 3, padding=1), nn.ReLU())
    model.eval()
    x = torch.randn(2, 1, 15, 15)
    plan = regions.plan(model, x[:1])
    assert [r.path for r in plan.regions] == ["stem", "body"] and plan.dynamic == ["fc"]
    per_channel = QConfigMapping().set_global(static_qconfig(QuantSettings(per_channel=True)))  # ConvTranspose: refused

    def prepare_one(gm: nn.Module, leaves: list[str], inputs: tuple[torch.Tensor, ...]) -> nn.Module:
        return prepare_fx(gm, per_channel, inputs, prepare_custom_config=regions.custom_config(leaves))

    expected = model(x)
    prepared = regions.prepare(model, plan, [], prepare_one)
    assert [r.path for r in plan.regions] == ["stem"] and "body.0" in plan.left_float
    assert "'body.0' (ConvTranspose2d)" in plan.refused["body"]
    assert isinstance(prepared.body, nn.Sequential) and isinstance(prepared.stem, torch.fx.GraphModule)
    torch.testing.assert_close(prepared(x), expected)  # observers only watch
    assert any("'body' stays float" in n for n in regions.notes(plan))


def test_branch_on_values_around_layers_is_the_users_call() -> None:
    """A gate (``if x.mean() > 0`` around a conv) would leave its layers float: refused, naming the line and the fix."""
    model = load_model(zoo("gated_cnn")).module
    first = graphs.trace(model)
    assert isinstance(first, graphs.TraceFailure) and first.branches_on_values
    plan = regions.plan(model, torch.randn(1, 1, 16, 16))
    assert plan.left_float == ["gate.conv"]
    with pytest.raises(FlowError) as info:
        regions.check(plan, first)
    assert "branches on tensor values" in info.value.problem and "--skip gate" in info.value.fix


def test_a_value_that_changes_with_the_batch_size_is_not_baked_into_a_region() -> None:
    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, rows: int, scale: float = 1.0) -> torch.Tensor:
            return self.fc(x.reshape(rows, -1)) * scale

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = Body()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x, int(x.shape[0]), scale=2.0)

    calls = regions.capture_calls(Outer(), [torch.randn(1, 4), torch.randn(2, 4)], {"body", "body.fc"})
    assert "different values for 'rows'" in calls["body"].problem
    assert calls["body.fc"].problem == "" and list(calls["body.fc"].tensors) == ["input"]
    one = regions.capture_calls(Outer(), [torch.randn(1, 4)], {"body"})["body"]
    assert one.constants == {"rows": 1, "scale": 2.0} and list(one.tensors) == ["x"]


def test_black_boxes_are_the_innermost_failing_modules() -> None:
    found = graphs.find_black_boxes(bert().eval())
    assert found.root is None and found.graph is not None
    assert sorted(found.leaves) == [
        "model.embeddings", "model.encoder.layer.0.attention.self", "model.encoder.layer.1.attention.self",
    ]  # fmt: skip
    assert found.boxes[0].source is not None and found.boxes[0].source.file.endswith("modeling_bert.py")
    assert not any(b.branches_on_values for b in found.boxes)  # reshapes and slices, not branches on values


# -- transformers and timm ---------------------------------------------------------------------------------------
def test_bert_encoder_quantizes_statically_in_one_run() -> None:
    result, seconds = quantize("bert")
    linears = [n for n in result.coverage.quantized_layers if n.startswith("model.encoder.") and "dense" in n]
    assert len(linears) == 2 * 3  # attention output, intermediate, output: static INT8 in the traced region
    q = result.quantized
    assert q is not None
    assert type(module_for(q, "model.encoder.layer.0.output.dense")).__module__.startswith(
        "torch.ao.nn.quantized.modules"
    )
    assert isinstance(module_for(q, "model.encoder.layer.1.attention.self.query"), DynamicLinear)
    assert len(int8(result, "model.encoder.")) >= 12  # every encoder Linear
    assert floats(result, "model.embeddings.")  # the embeddings box stays float
    said = note(result, "black boxes", "'model.embeddings' (BertEmbeddings)")
    assert "modeling_bert.py:" in said
    assert result.skipped == [] and result.evaluation.cosine > 0.9
    assert result.to_json()["warnings"] == result.warnings
    assert any(e.name == "model.encoder.layer.0.intermediate.dense" for e in result.layers)
    print(f"bert: {seconds:.1f} s, cosine {result.evaluation.cosine:.4f}")


@pytest.mark.slow
def test_distilbert_quantizes_in_one_run() -> None:
    result, seconds = quantize("distilbert")
    linears = [n for n, m in distilbert().named_modules() if isinstance(m, nn.Linear)]
    assert set(linears) <= set(result.coverage.quantized_layers)
    assert "modeling_distilbert.py:" in note(result, "black boxes", "'model.embeddings'")
    assert result.evaluation.cosine > 0.9
    print(f"distilbert: {seconds:.1f} s, cosine {result.evaluation.cosine:.4f}")


@pytest.mark.slow
def test_gpt2_untraceable_model_forward_quantizes_its_blocks() -> None:
    # batch 1 only: torch.jit.trace bakes GPT-2's batch size in (its FP32 trace fails at batch 4 as well)
    result, seconds = quantize("gpt2", batch_sizes=(1,))
    conv1d = [n for n, m in gpt2().named_modules() if type(m).__name__ == "Conv1D"]
    assert len(conv1d) == 8 and set(conv1d) <= set(result.coverage.quantized_layers)
    said = note(result, "black boxes", "'model' (GPT2Model)")
    assert "masking_utils.py:" in said and "2 traced region(s)" in said
    assert "'model.h.0.attn.c_attn'" in note(result, "dynamically")
    assert result.evaluation.cosine > 0.9
    print(f"gpt2: {seconds:.1f} s, cosine {result.evaluation.cosine:.4f}")


@pytest.mark.slow
def test_mobilevit_quantizes_with_its_attention_blocks_float() -> None:
    result, seconds = quantize("mobilevit")
    blocks = ("stages.2.1.", "stages.3.1.", "stages.4.1.")
    assert int8(result, "stem.") and int8(result, "stages.1.") and int8(result, "head.fc")
    assert all(floats(result, b) and not int8(result, b) for b in blocks)
    said = note(result, "black boxes", "(MobileVitV2Block)")
    assert "mobilevit.py:" in said and "'stages.2.1'" in said
    assert result.evaluation.cosine > 0.9
    print(f"mobilevit: {seconds:.1f} s, cosine {result.evaluation.cosine:.4f}")
