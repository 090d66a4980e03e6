"""Shared fixtures: real models and real data, loaded once per session."""

from __future__ import annotations

import warnings

import pytest

from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.recipe import BenchmarkSettings, ModelSource

# torch.ao and TorchScript announce their own deprecation on every call; our tests are about our code.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")


@pytest.fixture(scope="session")
def demo() -> LoadedModel:
    return load_model(ModelSource("demo"))


@pytest.fixture
def quick_bench() -> BenchmarkSettings:
    """Enough iterations for a figure, few enough for a test."""
    return BenchmarkSettings(batch_sizes=[1], warmup=3, iters=10)
