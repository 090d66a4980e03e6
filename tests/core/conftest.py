"""Fixtures the engine tests share: real models and real data (the demo once per session, the others per module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from engine_checks import SmallConvNet, quantize_fx_x86
from torch import nn
from user_model import write_model_py

from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.recipe import BenchmarkSettings, ModelSource
from qstudio.core.torchscript import freeze_fp32


@pytest.fixture(scope="session")
def demo() -> LoadedModel:
    return load_model(ModelSource("demo"))


@pytest.fixture
def quick_bench() -> BenchmarkSettings:
    """Enough iterations for a figure, few enough for a test."""
    return BenchmarkSettings(batch_sizes=[1], warmup=3, iters=10)


# -- real models for benchmark, TorchScript and export tests: one copy per test module ------------------------------
@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 3, 224, 224)


@pytest.fixture(scope="module")
def resnet18_frozen(resnet18: nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    return freeze_fp32(resnet18, image)


@pytest.fixture(scope="module")
def small_input() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(1, 3, 96, 96)


@pytest.fixture(scope="module")
def small_fp32() -> nn.Module:
    torch.manual_seed(4)
    return SmallConvNet().eval()


@pytest.fixture(scope="module")
def small_int8(small_fp32: nn.Module, small_input: torch.Tensor) -> nn.Module:
    return quantize_fx_x86(small_fp32, small_input)


@pytest.fixture()
def model_py(tmp_path: Path) -> Path:
    """The user's model.py (tests/core/user_model.py) in its own folder of tmp_path."""
    return write_model_py(tmp_path / "code")
