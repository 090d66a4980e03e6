"""What every quantization flow takes and returns.

A flow turns a float model into a quantized one.  Callers never import a flow
directly: :func:`qstudio.core.flows.get_flow` dispatches on ``recipe.mode``, so
a torchao / PT2E flow can be registered later without touching the pipeline,
the CLI or the window.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.fx
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
            f"ran out of memory in {where_in} ({batch_size} samples per batch: {graphs.first_line(exc)})",
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


#: Local variable names under which torch.ao's prepare/convert passes hold the module (or fx node) they work on.
_MODULE_LOCALS = ("self", "mod", "module", "float_mod", "observed", "child", "node", "root")


def _refused_module(exc: BaseException, model: nn.Module) -> tuple[str, nn.Module | None]:
    """The innermost module of ``model`` a torch.ao pass was working on when it raised.

    torch.ao's passes hold the module in locals (``swap_module(mod)``,
    ``from_float(mod)``, ``_convert(module)``; FX passes an ``fx.Node`` whose
    target names it), so the traceback says which one it refused.  An observer
    or fake-quant module stands for the layer that owns it.
    """
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    modules = dict(model.named_modules(remove_duplicate=False))
    names = {id(m): n for n, m in modules.items()}
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        for key in _MODULE_LOCALS:
            value = local.get(key)
            name = ""
            if isinstance(value, nn.Module):
                name = names.get(id(value), "")
            elif isinstance(value, torch.fx.Node) and value.op == "call_module" and str(value.target) in modules:
                name = str(value.target)
            if name:
                found = name
                break
        tb = tb.tb_next
    while found and isinstance(modules.get(found), (ObserverBase, FakeQuantizeBase)):
        found = found.rpartition(".")[0]
    return found, modules.get(found) if found else None


def refusal(
    exc: BaseException,
    step: str,
    model: nn.Module,
    prefix: str = "",
    hints: list[str] | None = None,
    no_skip: tuple[type, ...] = (),
) -> FlowError:
    """A :class:`FlowError` for a torch.ao pass (prepare, convert, fuse, quantize_dynamic) that refused the model.

    Names the module it was working on and offers what goes around it: the
    caller's ``hints`` (for example dynamic mode for recurrent layers), keep
    that module in float (unless it is one of the ``no_skip`` types, which the
    flow cannot keep in float), turn per-channel weights off when that is what
    was refused.
    """
    from qstudio.core import graph as graphs

    found, module = _refused_module(exc, model)
    name = found[len(prefix) :] if prefix and found.startswith(prefix) else found
    if prefix and found and not found.startswith(prefix):
        name = ""  # one of the stubs qstudio added around the model, not the user's module
    name = ".".join(part for part in name.split(".") if part != ISLAND_ATTR)
    what = f"'{name}' ({type(module).__name__})" if name and module is not None else "the model"
    fixes = list(hints or [])
    if name and not isinstance(module, no_skip):
        fixes.append(f"keep '{name}' in float (--skip {name}, or tick it in the tree)")
    if "per channel" in str(exc).lower() or "per_channel" in str(exc).lower():
        fixes.append("turn per-channel weights off (--no-per-channel)")
    if not fixes:
        fixes.append("keep the module named above in float (--skip NAME, or tick it in the tree)")
    return FlowError(f"{step} refused {what}: {graphs.first_line(exc)}", ", or ".join(fixes))


@contextlib.contextmanager
def refusals(
    step: str, model: nn.Module, prefix: str = "", hints: list[str] | None = None, no_skip: tuple[type, ...] = ()
) -> Iterator[None]:
    """Run one torch.ao call; whatever it raises (an AssertionError, a RuntimeError) becomes a :class:`FlowError`."""
    try:
        yield
    except (Cancelled, QStudioError):
        raise
    except Exception as exc:
        raise refusal(exc, step, model, prefix, hints, no_skip) from exc


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
    *,
    step: str = "convert",
    hints: list[str] | None = None,
    notes: list[str] | None = None,
    no_skip: tuple[type, ...] = (),
) -> Generator[Progress, None, QuantizedModel]:
    """The last step every static flow shares: keep a float reference, convert, package the result.

    A module ``convert`` refuses becomes a :class:`FlowError` naming it (``step`` names the torch.ao call).
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
        mode,
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
            user = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            user = ".".join(p for p in user.split(".") if p != ISLAND_ATTR)
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
