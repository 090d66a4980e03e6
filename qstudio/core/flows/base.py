"""What every quantization flow takes and returns.

A flow turns a float model into a quantized one.  Callers never import a flow
directly: :func:`qstudio.core.flows.get_flow` dispatches on ``recipe.mode``, so
a torchao / PT2E flow can be registered later without touching the pipeline,
the CLI or the window.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from qstudio.core.data import Dataset
from qstudio.core.progress import Progress
from qstudio.core.recipe import Recipe

#: Attribute under which eager mode keeps a skipped module between a DeQuantStub and a QuantStub.
ISLAND_ATTR = "float_module"


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    eval_accuracy: float | None


@dataclass
class FlowInput:
    """The float model and data a flow works on.  ``model`` is never modified."""

    model: nn.Module
    recipe: Recipe
    groups: list[list[str]]
    calib: Dataset
    example: torch.Tensor
    train: Dataset | None = None
    eval: Dataset | None = None


@dataclass
class QuantizedModel:
    """A flow's result.

    ``reference`` is a float model whose module names match ``module``'s (fused,
    with observers inert), so per-layer errors compare like with like.
    ``prefix`` is what the flow put in front of the user's module names (eager
    mode wraps the model in QuantStub/DeQuantStub under ``module.``).
    """

    module: nn.Module
    reference: nn.Module
    mode: str
    prefix: str = ""
    calibration_seconds: float = 0.0
    convert_seconds: float = 0.0
    history: list[EpochStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def user_name(self, name: str) -> str:
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        return ".".join(part for part in name.split(".") if part != ISLAND_ATTR)


class Flow(Protocol):
    mode: str

    def preflight(self, inp: FlowInput) -> list[str]:
        """Check the model can go through this flow before any long work; raise FlowError if not."""

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        """Quantize, yielding progress between batches."""


def calibrate(
    prepared: nn.Module, data: Dataset, batch_size: int, max_batches: int, stage: str = "calibrate"
) -> Generator[Progress, None, float]:
    """Run calibration batches through an observed model; return the seconds it took."""
    total = data.num_batches(batch_size, max_batches)
    start = time.perf_counter()
    yield Progress(stage, 0, total)
    with torch.no_grad():
        for i, (x, _) in enumerate(data.batches(batch_size, max_batches)):
            prepared(x)
            yield Progress(stage, i + 1, total)
    return time.perf_counter() - start


def convert_step(
    prepared: nn.Module,
    convert: Callable[[nn.Module], nn.Module],
    mode: str,
    prefix: str,
    seconds: float,
    history: list[EpochStats] | None = None,
    label: str = "converting to INT8",
) -> Generator[Progress, None, QuantizedModel]:
    """The last step every static flow shares: keep a float reference, convert, package the result."""
    prepared.eval()
    start = time.perf_counter()
    yield Progress("convert", 0, 1, label)
    reference = float_reference(prepared)
    quantized = convert(prepared)
    yield Progress("convert", 1, 1)
    return QuantizedModel(quantized.eval(), reference, mode, prefix, seconds, time.perf_counter() - start, history or [])


def float_reference(prepared: nn.Module) -> nn.Module:
    """A copy of an observed/fake-quant model that computes plain float.

    Observers and fake-quant modules become Identity, so running the reference
    for per-layer comparison neither updates statistics nor pays for
    histogram observers.
    """
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    ref = copy.deepcopy(prepared)
    for name, module in list(ref.named_modules()):
        if name and isinstance(module, (ObserverBase, FakeQuantizeBase)):
            parent_name, _, attr = name.rpartition(".")
            parent = ref.get_submodule(parent_name) if parent_name else ref
            setattr(parent, attr, nn.Identity())
    return ref.eval()
