"""Every flow on full-size torchvision models (random weights: nothing is downloaded).

Random weights make accuracy meaningless, so these check the mechanics a user
relies on: the flow runs, the coverage is what it should be, INT8 stays close
to FP32 on the same inputs, and the exported file reloads and reproduces the
in-memory model.  Inputs are 96x96 so the suite stays within minutes.
"""

from __future__ import annotations

import pytest
import torch

from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QATSettings, QuantSettings, Recipe

SHAPE = [1, 3, 96, 96]
BENCH = BenchmarkSettings(batch_sizes=[1], warmup=2, iters=5)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    g = torch.Generator().manual_seed(0)
    torch.save(torch.randn(48, 3, 96, 96, generator=g), d / "x.pt")
    torch.save(torch.randint(0, 1000, (48,), generator=g), d / "y.pt")
    return DataSource(kind="tensor", path=str(d / "x.pt"), labels=str(d / "y.pt"))


def _load(name: str):
    """Random init leaves BatchNorm's running statistics at 0/1, so deep nets' activations collapse
    (mobilenet_v2's outputs are ~1e-9).  A few train-mode batches give the statistics a trained net has."""
    loaded = load_model(ModelSource(f"torchvision:{name}"))
    m = loaded.module.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, *SHAPE[1:]))
    m.eval()
    return loaded


def _check_export(result, path):
    reloaded = torch.jit.load(str(path))
    x = torch.randn(2, *SHAPE[1:])
    ours = result.quantized.module(x)
    assert torch.allclose(reloaded(x), ours.dequantize() if ours.is_quantized else ours, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_fx_ptq_end_to_end(name, labeled, tmp_path):
    loaded = _load(name)
    recipe = Recipe(
        mode="fx", input_shape=SHAPE, calib=labeled, settings=QuantSettings(calib_batches=2), benchmark=BENCH
    )
    result = run(run_recipe(recipe, loaded, export=tmp_path / "m.pt"))
    assert not result.coverage.float_layers, result.coverage.float_layers
    assert result.evaluation.cosine > 0.98
    assert result.int8.size_mb < result.fp32.size_mb / 3.5
    assert result.export.verified
    _check_export(result, tmp_path / "m.pt")


def test_eager_on_torchvision_resnet18_points_to_fx(labeled):
    from qstudio.core.errors import FlowError

    loaded = load_model(ModelSource("torchvision:resnet18"))
    recipe = Recipe(mode="eager", input_shape=SHAPE, calib=labeled, benchmark=BENCH)
    with pytest.raises(FlowError, match=r"resnet\.py.*out \+= identity.*--mode fx"):
        run(run_recipe(recipe, loaded))


def test_eager_ptq_on_mobilenet_v2_with_its_additions_reported(labeled):
    """mobilenet_v2's inverted residual uses ``x + self.conv(x)``: eager must say so, FX must work."""
    from qstudio.core.errors import FlowError

    loaded = load_model(ModelSource("torchvision:mobilenet_v2"))
    recipe = Recipe(mode="eager", input_shape=SHAPE, calib=labeled, benchmark=BENCH)
    with pytest.raises(FlowError, match=r"mobilenetv2\.py"):
        run(run_recipe(recipe, loaded))


def test_qat_resnet18_one_short_epoch(labeled, tmp_path):
    loaded = _load("resnet18")
    recipe = Recipe(mode="qat", input_shape=SHAPE, calib=labeled, train=labeled, eval=labeled,
                    qat=QATSettings(epochs=1, batch_size=16, lr=1e-4), benchmark=BENCH)  # fmt: skip
    result = run(run_recipe(recipe, loaded, export=tmp_path / "q.pt"))
    assert len(result.history) == 1 and result.history[0].loss > 0
    assert not result.coverage.float_layers
    _check_export(result, tmp_path / "q.pt")


def test_dynamic_on_resnet18_quantizes_only_the_head(labeled):
    loaded = load_model(ModelSource("torchvision:resnet18"))
    recipe = Recipe(mode="dynamic", input_shape=SHAPE, calib=labeled, benchmark=BENCH)
    result = run(run_recipe(recipe, loaded))
    assert result.coverage.quantized_layers == ["fc"]
    assert any("Only 1 of 21" in w for w in result.warnings)  # the loud "far less than expected" warning
