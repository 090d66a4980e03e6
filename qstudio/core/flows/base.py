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

from qstudio.core import memory
from qstudio.core.data import Dataset
from qstudio.core.errors import Cancelled, DataError, FlowError, QStudioError
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
    prepared: nn.Module,
    data: Dataset,
    batch_size: int,
    max_batches: int,
    stage: str = "calibrate",
    *,
    prefix: str = "",
    key: str = "settings.batch_size",
) -> Generator[Progress, None, float]:
    """Run calibration batches through an observed model; return the seconds it took.

    A batch size larger than the data set uses the whole set as one batch.  An
    exception from the model's forward becomes a :class:`FlowError` naming the
    module and source line; a failed allocation a :class:`DataError` naming
    the batch size (``key``) to lower.
    """
    total = data.num_batches(batch_size, max_batches)
    start = time.perf_counter()
    yield Progress(stage, 0, total)
    i = 0
    try:
        with torch.no_grad():
            for i, (x, _) in enumerate(data.batches(batch_size, max_batches)):
                prepared(x)
                yield Progress(stage, i + 1, total)
    except (Cancelled, QStudioError):
        raise
    except Exception as exc:
        raise forward_error(exc, prepared, stage, i + 1, total, min(batch_size, len(data)), key, prefix) from exc
    return time.perf_counter() - start


def _failing_module(exc: BaseException, model: nn.Module, prefix: str) -> str:
    """The innermost module of ``model`` whose forward is on the traceback (no hooks, no cost until it fails)."""
    names = {id(m): n for n, m in model.named_modules()}
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names and names[id(owner)]:
            found = names[id(owner)]
        tb = tb.tb_next
    if prefix and found.startswith(prefix):
        found = found[len(prefix) :]
    return ".".join(part for part in found.split(".") if part != ISLAND_ATTR)


def forward_error(
    exc: BaseException,
    model: nn.Module,
    stage: str,
    batch: int,
    total: int,
    batch_size: int,
    key: str,
    prefix: str = "",
) -> QStudioError:
    """A clear error for an exception raised while ``model`` ran batch ``batch`` of ``total`` in ``stage``.

    ``total = 0`` means the batch is not known (the stage runs its own loop).
    """
    from qstudio.core import graph as graphs

    where_in = f"{stage} batch {batch} of {total}" if total else stage

    if memory.is_out_of_memory(exc):
        return DataError(
            f"ran out of memory in {where_in} ({batch_size} samples per batch: "
            f"{graphs.first_line(exc)})",
            f"lower {key} (now {batch_size}), e.g. to {max(batch_size // 4, 1)}, or close other programs",
        )
    module = _failing_module(exc, model, prefix)
    where = graphs.user_frame(exc)
    at = f" at {where}" if where else ""
    name = f"'{module}'" if module else "the model"
    return FlowError(
        f"{name} raised {type(exc).__name__} in {where_in}{at}: {graphs.first_line(exc)}",
        "fix that line of the model, or check that the data fits the model (shape, dtype, value range)",
    )


def bytes_per_sample(model: nn.Module, example: torch.Tensor) -> int | None:
    """Input plus every leaf module's output for one sample: an upper bound on what one sample holds in memory."""
    total = example[:1].numel() * example.element_size()

    def add(_m: nn.Module, _inp: object, out: object) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(add) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(example[:1])
    except Exception:  # the flow's own checks explain a model that cannot run
        return None
    finally:
        for h in handles:
            h.remove()
    return total


def check_memory(inp: FlowInput) -> None:
    """Refuse batch sizes whose inputs and activations cannot fit in the memory left, before allocating them."""
    room = memory.available_bytes()
    if room is None:
        return
    per_sample = bytes_per_sample(inp.model, inp.example)
    if not per_sample:
        return
    recipe = inp.recipe
    # (recipe key, batch size asked for, samples it can take, memory factor)
    checks = [("settings.batch_size", recipe.settings.batch_size, len(inp.calib), 1)]
    if recipe.mode == "qat" and inp.train is not None:  # training keeps activations and gradients
        checks.append(("qat.batch_size", recipe.qat.batch_size, len(inp.train), 3))
    bench = max(recipe.benchmark.batch_sizes)
    checks.append(("benchmark.batch_sizes", bench, bench, 1))  # the benchmark repeats samples up to the batch size
    for key, asked, available, factor in checks:
        used = min(asked, available)  # a batch never holds more samples than the data set
        need = used * per_sample * factor
        if need > room * 0.8:
            fits = max(int(room * 0.5) // (per_sample * factor), 1)
            raise DataError(
                f"{key} = {asked} needs about {memory.format_bytes(need)} of memory for one batch of {used} samples "
                f"({memory.format_bytes(per_sample)} each), more than the {memory.format_bytes(room)} available",
                f"lower {key} to {fits} or less",
            )


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
    # remove_duplicate=False: prepare_fx can register one observer instance under several names (ops that
    # share their input's qparams); the default walk visits it once and would leave the other names observing.
    for name, module in list(ref.named_modules(remove_duplicate=False)):
        if name and isinstance(module, (ObserverBase, FakeQuantizeBase)):
            parent_name, _, attr = name.rpartition(".")
            parent = ref.get_submodule(parent_name) if parent_name else ref
            setattr(parent, attr, nn.Identity())
    for module in ref.modules(remove_duplicate=False):
        # QAT qconfigs hold closures over the *prepared* model's modules (torch.ao's
        # get_factory_kwargs_based_on_module_device); deepcopy shares closures, so a qconfig left here
        # would keep the whole prepared model alive as long as the reference lives.
        if "qconfig" in module.__dict__:
            del module.qconfig
    return ref.eval()
