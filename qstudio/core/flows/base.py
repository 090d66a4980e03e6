"""What every quantization flow takes and returns, and the steps the static flows share.

A flow turns a float model into a quantized one.  Callers never import a flow
directly: :func:`qstudio.core.flows.get_flow` dispatches on ``recipe.mode``, so
a torchao / PT2E flow can be registered later without touching the pipeline,
the CLI or the window.  What a mode needs and does is in
:mod:`qstudio.core.flows.traits`; how failures are explained in
:mod:`qstudio.core.flows.failures`.

torch's quantized engine (``torch.backends.quantized.engine``) is process-wide
state: the flows set it only inside :func:`quantized_engine` and put it back.
A converted model's kernels run under any engine, but copying, TorchScript
conversion and export repack its weights with the engine current at the time:
whoever does that enters :meth:`QuantizedModel.engine` first.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from qstudio.core import memory
from qstudio.core.data import Dataset
from qstudio.core.errors import Cancelled, DataError, QStudioError
from qstudio.core.flows.failures import forward_error, refusals
from qstudio.core.flows.names import ISLAND_ATTR, user_name
from qstudio.core.flows.traits import ModeTraits, mode_traits
from qstudio.core.progress import Progress
from qstudio.core.recipe import Recipe


@contextlib.contextmanager
def quantized_engine(backend: str) -> Iterator[None]:
    """Run with torch's quantized engine set to ``backend`` (the kernels that pack weights use it), then put it back."""
    before = torch.backends.quantized.engine
    if backend != before:
        torch.backends.quantized.engine = backend
    try:
        yield
    finally:
        if torch.backends.quantized.engine != before:
            torch.backends.quantized.engine = before


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

    @property
    def traits(self) -> ModeTraits:
        return mode_traits(self.recipe.mode)


@dataclass
class QuantizedModel:
    """A flow's result.

    ``reference`` is a float model whose module names match ``module``'s (fused,
    with observers inert), so per-layer errors compare like with like; dynamic
    quantization prepares nothing, and its reference is the user's float model.
    ``prefix`` is what the flow put in front of the user's module names (eager
    mode wraps the model in QuantStub/DeQuantStub under ``module.``).
    ``backend`` is the quantized engine its weights were packed for: enter
    :meth:`engine` to copy, convert or export it.
    """

    module: nn.Module
    reference: nn.Module
    mode: str
    backend: str
    prefix: str = ""
    calibration_seconds: float = 0.0
    convert_seconds: float = 0.0
    history: list[EpochStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def traits(self) -> ModeTraits:
        return mode_traits(self.mode)

    def engine(self) -> contextlib.AbstractContextManager[None]:
        """torch's quantized engine set to this model's backend while the block runs (then put back)."""
        return quantized_engine(self.backend)

    def user_name(self, name: str) -> str:
        return user_name(name, self.prefix)

    def reference_name(self, name: str) -> str:
        """The name in ``reference`` of ``module``'s module ``name``."""
        # static flows' reference is the prepared model (names as in ``module``); dynamic's is the user's model
        return name if self.traits.static_activations else self.user_name(name)


def module_for(q: QuantizedModel, name: str, modules: Mapping[str, nn.Module] | None = None) -> nn.Module | None:
    """The module of ``q.module`` that runs the user's layer ``name``, or None (fused away, or removed by convert).

    The inverse of :meth:`QuantizedModel.user_name`: the name under the
    flow's prefix (eager's QuantWrapper, dynamic's wrapper), else the float
    module inside the island that keeps the layer in float.  ``modules`` is
    ``dict(q.module.named_modules())``, passed in to look up many names.
    """
    modules = dict(q.module.named_modules()) if modules is None else modules
    found = modules.get(q.prefix + name)
    return found if found is not None else modules.get(f"{q.prefix}{name}.{ISLAND_ATTR}")


class Flow(Protocol):
    mode: str
    traits: ModeTraits

    def preflight(self, inp: FlowInput) -> list[str]:
        """Check the model can go through this flow before any long work; raise FlowError if not."""

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        """Quantize, yielding progress between batches; torch's quantized engine is as it was afterwards."""


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
    if inp.traits.trains and inp.train is not None:  # training keeps activations and gradients
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
    inp: FlowInput,
    prefix: str,
    seconds: float,
    history: list[EpochStats] | None = None,
    label: str = "converting to INT8",
    *,
    step: str = "convert",
    hints: list[str] | None = None,
    notes: list[str] | None = None,
    no_skip: tuple[type, ...] = (),
) -> Generator[Progress, None, QuantizedModel]:
    """The last step every static flow shares: keep a float reference, convert, package the result.

    Runs under the recipe's quantized engine (the flow's run has set it).  A module ``convert`` refuses
    becomes a :class:`FlowError` naming it (``step`` names the torch.ao call).
    """
    prepared.eval()
    start = time.perf_counter()
    yield Progress("convert", 0, 1, label)
    reference = float_reference(prepared)
    with refusals(step, prepared, prefix, hints, no_skip):
        quantized = convert(prepared)
    notes = [*(notes or []), *transposed_kernel_notes(quantized, prefix)]
    yield Progress("convert", 1, 1)
    return QuantizedModel(
        quantized.eval(),
        reference,
        inp.recipe.mode,
        inp.recipe.settings.backend,
        prefix,
        seconds,
        time.perf_counter() - start,
        history or [],
        list(notes or []),
    )


def transposed_kernel_notes(quantized: nn.Module, prefix: str = "") -> list[str]:
    """Check each INT8 ConvTranspose against float math on the same int8 values; a note for each that disagrees.

    Some of torch's quantized ConvTranspose kernels compute wrong results for
    some shapes (torch 2.14, x86/onednn engines: whenever in_channels !=
    out_channels, cosine to the float math 0.0-0.45; fbgemm: 2-D with some
    stride-2 shapes), and the bare PyTorch script gives the same wrong
    output.  Nothing raises, so the check runs the layer once on a small input
    and compares with ``conv_transpose`` on the dequantized input and weight.
    """
    import torch.ao.nn.quantized as nnq
    from torch.nn import functional as F

    kinds = {
        nnq.ConvTranspose1d: F.conv_transpose1d,
        nnq.ConvTranspose2d: F.conv_transpose2d,
        nnq.ConvTranspose3d: F.conv_transpose3d,
    }
    notes = []
    gen = torch.Generator().manual_seed(0)
    for name, m in quantized.named_modules():
        fn = kinds.get(type(m))  # type: ignore[call-overload]
        if fn is None:
            continue
        dims = len(m.kernel_size)
        xq = torch.quantize_per_tensor(
            torch.rand(1, m.in_channels, *[6] * dims, generator=gen), 1 / 255, 0, torch.quint8
        )
        try:
            weight, bias = m.weight(), m.bias()
            with torch.no_grad():
                ref = fn(
                    xq.dequantize(),
                    weight.dequantize(),
                    bias,
                    m.stride,
                    m.padding,
                    m.output_padding,
                    m.groups,
                    m.dilation,
                )
                probe = copy.copy(m)  # shares the packed weight; its own output scale fits this input
                lo, hi = min(float(ref.min()), 0.0), max(float(ref.max()), 1e-6)
                probe.scale, probe.zero_point = (hi - lo) / 255, round(-lo / ((hi - lo) / 255))
                out = probe(xq).dequantize()
        except Exception:  # a layer the engine cannot even run (qnnpack has no 3-D kernel): running the model says so
            continue
        cos = float(nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0))
        if cos < 0.98:
            user = user_name(name, prefix)
            engine = torch.backends.quantized.engine
            others = " or ".join(
                b for b in ("fbgemm", "qnnpack", "x86") if b != engine and not (engine == "onednn" and b == "x86")
            )
            notes.append(
                f"torch's {engine} kernel for {type(m).__name__} '{user}' computes wrong results for this layer's shape "
                f"(cosine {cos:.2f} to the same arithmetic in float), as the bare PyTorch script does: keep it in float "
                f"(--skip {user}), or try another backend (--backend {others})"
            )
    return notes


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
