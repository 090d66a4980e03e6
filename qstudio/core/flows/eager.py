"""Eager mode: static PTQ and QAT with QuantStub/DeQuantStub.

A model written for eager quantization (its own QuantStub/DeQuantStub or
QuantWrapper, FloatFunctional for its additions, often a ``fuse_model()``:
torchvision's quantizable models, PyTorch's tutorials) goes through exactly
as the PyTorch script takes it: its stubs are used as they are, and the
fusion groups are the ones its ``fuse_model()`` fuses (qstudio.core.fusion).
Any other model is wrapped whole (``QuantWrapper``: quant -> model ->
dequant), so everything between the stubs runs on quantized tensors.

A module the user keeps in float is put on a *float island* (DeQuantStub ->
module -> QuantStub).  What eager mode cannot do is tensor arithmetic between
quantized modules written as plain Python (a residual ``out + identity``,
``torch.cat``): those need FloatFunctional in the model's source.  The
preflight quantizes a copy and runs it; when that fails it names the module
and source line and points to FX mode.  Every torch.ao call (fuse, prepare,
convert) is guarded: what it refuses becomes a FlowError naming the module.
"""

from __future__ import annotations

import copy
import operator
import os
from collections.abc import Generator

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper, convert, prepare, prepare_qat

from qstudio.core import graph as graphs
from qstudio.core.errors import FlowError, QStudioError
from qstudio.core.flows.base import FlowInput, QuantizedModel, check_memory, convert_step, quantized_engine
from qstudio.core.flows.failures import forward_error, refusal, refusals
from qstudio.core.flows.names import ISLAND_ATTR, user_name
from qstudio.core.flows.qconfig import PER_TENSOR_ONLY, per_tensor_note, qconfig, weight_is_per_channel
from qstudio.core.flows.training import calibrate_or_train
from qstudio.core.flows.traits import ModeTraits, mode_traits
from qstudio.core.fusion import apply_fusion
from qstudio.core.progress import Progress
from qstudio.core.recipe import QuantSettings

PREFIX = "module."

_ARITH_FUNCTIONS = {
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    operator.truediv, operator.matmul, torch.add, torch.mul, torch.sub, torch.cat, torch.stack,
    torch.matmul, torch.bmm, torch.div,
}  # fmt: skip
_ARITH_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "matmul"}


class FloatIsland(nn.Module):
    """Runs one module in float inside an otherwise quantized eager model."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.dequant = DeQuantStub()
        setattr(self, ISLAND_ATTR, module)
        self.quant = QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(getattr(self, ISLAND_ATTR)(self.dequant(x)))


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _float_islands(model: nn.Module, skip: list[str], groups: list[list[str]]) -> None:
    """Keep ``skip`` modules in float.  A skipped member of a fusion group skips the fused module.

    A module the model itself keeps in float (``qconfig = None`` on it or a
    parent: it runs outside the model's own stubs) needs no island.
    """
    declared = [n for n, m in model.named_modules() if n and "qconfig" in m.__dict__ and m.qconfig is None]
    targets: list[str] = []
    for name in skip:
        group = next((g for g in groups if name in g), None)
        target = group[0] if group else name
        if target not in targets and not any(target == d or target.startswith(d + ".") for d in declared):
            targets.append(target)
    for name in targets:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise FlowError(
                f"module '{name}' to keep in float does not exist", "check the name in the module tree"
            ) from None
        module.qconfig = None  # type: ignore[assignment]
        _set_module(model, name, FloatIsland(module))


_FLOAT_FUNCTIONAL_FILE = os.path.join("torch", "ao", "nn", "quantized", "modules", "functional_modules.py")


def _in_float_functional(node: torch.fx.Node) -> bool:
    """Whether ``node`` is the op inside a FloatFunctional call (``self.skip_add.add``), which eager converts."""
    return _FLOAT_FUNCTIONAL_FILE in (node.stack_trace or "")


def has_own_stubs(model: nn.Module) -> bool:
    """Whether the model places its own QuantStub/DeQuantStub (or QuantWrapper): then qstudio adds none."""
    return any(isinstance(m, (QuantStub, DeQuantStub, QuantWrapper)) for m in model.modules())


def blockers(model: nn.Module, leaves: set[str]) -> list[str]:
    """Tensor arithmetic in ``forward`` that eager mode cannot run on quantized tensors."""
    traced = graphs.trace(model, leaves, stack_traces=True)
    if isinstance(traced, graphs.TraceFailure):
        return []
    found = []
    for node in traced.nodes:
        is_arith = (node.op == "call_function" and node.target in _ARITH_FUNCTIONS) or (
            node.op == "call_method" and node.target in _ARITH_METHODS
        )
        tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if not is_arith or not tensor_args or _in_float_functional(node):
            continue
        src = graphs.node_source(node)
        module = graphs.node_module(node) or "(model)"
        found.append(f"'{module}' at {src}" if src else f"'{module}' ({node.target})")
    return found


class _ModuleTracker:
    """Remembers which module was running when a dry run failed."""

    def __init__(self, model: nn.Module) -> None:
        self.stack: list[str] = []
        self.failed: str | None = None
        self.handles = []
        for name, m in model.named_modules():
            self.handles.append(m.register_forward_pre_hook(lambda _m, _a, n=name: self._push(n)))
            self.handles.append(m.register_forward_hook(lambda *_: self._pop()))

    # hooks must return None, or they would replace the module's output
    def _push(self, name: str) -> None:
        self.stack.append(name)

    def _pop(self) -> None:
        self.stack.pop()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


#: Recurrent layers return tuples: eager static mode can neither observe them nor keep them on a float island.
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)


def _hints(model: nn.Module) -> list[str]:
    if any(isinstance(m, _RECURRENT) for m in model.modules()):
        return ["use dynamic quantization (--mode dynamic), which quantizes LSTM/GRU and Linear weights"]
    return []


def _assign_qconfigs(model: nn.Module, qat: bool, s: QuantSettings, notes: list[str]) -> None:
    """Give ``model`` qstudio's qconfig before stubs are added and ``prepare`` propagates it.

    The recipe's qconfig replaces the one a model sets on itself (torch's test
    models carry a default one); a submodule the model keeps in float
    (``qconfig = None``, e.g. a head after its DeQuantStub) stays float, and a
    qconfig it sets on one submodule stays there.  Module types torch.ao cannot
    observe per channel (ConvTranspose) get per-tensor weights instead of
    being refused.
    """
    model.qconfig = qconfig(s, qat=qat)  # type: ignore[assignment]
    per_tensor = qconfig(s, qat=qat, per_channel=False)
    own_floats: list[str] = []
    fallbacks: list[str] = []

    def walk(module: nn.Module, inherited: object, name: str) -> None:
        q = module.__dict__.get("qconfig", inherited)
        user = name.replace(f".{ISLAND_ATTR}", "")
        kept = name and "qconfig" in module.__dict__ and q is None and not name.endswith(ISLAND_ATTR)
        if kept and not any(user == k or user.startswith(k + ".") for k in s.skip):
            own_floats.append(user)
        if isinstance(module, PER_TENSOR_ONLY) and q is not None and weight_is_per_channel(q):  # type: ignore[arg-type]
            module.qconfig = q = per_tensor  # type: ignore[assignment]
            fallbacks.append(user)
        for child_name, child in module.named_children():
            walk(child, q, f"{name}.{child_name}" if name else child_name)

    walk(model, None, "")
    if own_floats:
        shown = ", ".join(f"'{n}'" for n in own_floats[:5]) + (
            f" and {len(own_floats) - 5} more" if len(own_floats) > 5 else ""
        )
        notes.append(f"the model keeps {shown} in float (qconfig = None in its source)")
    if fallbacks:
        notes.append(per_tensor_note(fallbacks))


def _prepare_static(inp: FlowInput, qat: bool, notes: list[str] | None = None) -> tuple[nn.Module, str]:
    """Fuse, place stubs (the model's own, or a QuantWrapper), assign qconfigs, insert observers.

    Returns the prepared model and the prefix qstudio put before the user's
    module names (``module.`` under a QuantWrapper, nothing when the model has
    its own stubs).
    """
    s = inp.recipe.settings
    model = copy.deepcopy(inp.model)
    own = has_own_stubs(model)  # before the float islands bring stubs of their own
    with refusals("fuse_modules_qat" if qat else "fuse_modules", model, hints=[_UNGROUP]):
        model = apply_fusion(model, inp.groups, qat=qat)
    _float_islands(model, s.skip, inp.groups)
    _assign_qconfigs(model, qat, s, notes if notes is not None else [])
    root = model if own else QuantWrapper(model)  # its stubs take the model's qconfig, set just above
    root.qconfig = model.qconfig
    prefix = "" if own else PREFIX
    hints = _hints(model)
    if qat:
        root.train()
        with refusals("prepare_qat", root, prefix, hints, _RECURRENT):
            return prepare_qat(root, inplace=True), prefix
    root.eval()
    with refusals("prepare", root, prefix, hints, _RECURRENT):
        return prepare(root, inplace=True), prefix


_UNGROUP = "remove that module's fusion group (edit the groups in the tree, or give --fusion)"


def _check_int_input(inp: FlowInput) -> None:
    if not inp.example.is_floating_point():
        raise FlowError(
            "static quantization quantizes the model's input, but this model takes integer token ids",
            "use dynamic quantization (--mode dynamic), which quantizes Linear/LSTM weights and suits token models",
        )


def dry_run(inp: FlowInput) -> None:
    """Quantize a copy with one calibration batch and run it: the only sure test for eager mode."""
    with quantized_engine(inp.recipe.settings.backend):
        _dry_run(inp)


def _dry_run(inp: FlowInput) -> None:
    prepared, prefix = _prepare_static(inp, qat=False)
    hints = _hints(inp.model)
    try:
        with torch.no_grad():
            prepared(inp.example)
    except Exception as exc:
        raise _observed_failure(exc, inp, prepared, prefix) from exc
    with refusals("convert", prepared, prefix, hints, _RECURRENT):
        quantized = convert(prepared.eval(), inplace=True)
    tracker = _ModuleTracker(quantized)
    try:
        with torch.no_grad():
            quantized(inp.example)
    except Exception as exc:
        _explain(exc, inp, tracker, prefix)
    finally:
        tracker.close()


def _observed_failure(exc: BaseException, inp: FlowInput, prepared: nn.Module, prefix: str) -> QStudioError:
    """Why the model failed with observers in it: its own fault if it fails in float too, else an observer's."""
    try:
        with torch.no_grad():
            inp.model(inp.example)
    except Exception:
        return forward_error(exc, prepared, "the dry run", 0, 0, len(inp.example), "settings.batch_size", prefix)
    return refusal(exc, "eager mode's observers", prepared, prefix, _hints(inp.model), _RECURRENT)


def _explain(exc: BaseException, inp: FlowInput, tracker: _ModuleTracker, prefix: str) -> None:
    """Raise the FlowError for a model that fails to run once converted."""
    where = graphs.user_frame(exc)
    module = next((n for n in reversed(tracker.stack) if n), "")
    # outside the prefix: one of the stubs qstudio put around the model
    module = "" if prefix and not module.startswith(prefix) else user_name(module, prefix)
    found = blockers(inp.model, set(inp.recipe.settings.skip))
    listing = (
        f"; eager mode cannot run tensor arithmetic between quantized modules, found at {', '.join(found[:3])}"
        + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        if found
        else ""
    )
    at = f" at {where}" if where else ""
    problem = f"eager mode fails in '{module or 'the model'}'{at}: {graphs.first_line(exc)}{listing}"
    hints = _hints(inp.model)
    if found:
        fix = (
            "use FX graph mode (--mode fx), which handles residual additions and concatenation automatically, "
            "or replace those operations with torch.ao.nn.quantized.FloatFunctional in the model"
        )
    elif hints:
        fix = hints[0]
    else:
        keep = f"keep '{module}' in float (--skip {module}, or tick it in the tree), or " if module else ""
        stubs = (
            "check that the model's QuantStub/DeQuantStub surround exactly the modules that run quantized, or "
            if has_own_stubs(inp.model)
            else ""
        )
        fix = f"{keep}{stubs}use FX graph mode (--mode fx)"
    raise FlowError(problem, fix) from None


def _convert(prepared: nn.Module) -> nn.Module:
    return convert(prepared, inplace=True)


class EagerFlow:
    """Eager mode; what PTQ and QAT do differently is in the class's ``traits`` (calibrate, or train)."""

    traits: ModeTraits

    @property
    def mode(self) -> str:
        return self.traits.mode

    def preflight(self, inp: FlowInput) -> list[str]:
        _check_int_input(inp)
        dry_run(inp)
        check_memory(inp)
        return []

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        qat = self.traits.trains
        what = (
            "fusing for QAT, adding stubs and fake-quant"
            if qat
            else "fusing, adding QuantStub/DeQuantStub and observers"
        )
        with quantized_engine(inp.recipe.settings.backend):
            yield Progress("prepare", 0, 1, what)
            notes: list[str] = []
            prepared, prefix = _prepare_static(inp, qat=qat, notes=notes)
            yield Progress("prepare", 1, 1)
            seconds, history = yield from calibrate_or_train(prepared, inp, prefix=prefix)
            return (
                yield from convert_step(
                    prepared,
                    _convert,
                    inp,
                    prefix,
                    seconds,
                    history,
                    hints=_hints(inp.model),
                    notes=notes,
                    no_skip=_RECURRENT,
                )
            )


class EagerPTQ(EagerFlow):
    """Post-training static quantization: stubs, prepare, calibrate, convert."""

    traits = mode_traits("eager")


class EagerQAT(EagerFlow):
    """Quantization-aware training: stubs, prepare_qat, train with fake quantization, convert."""

    traits = mode_traits("qat")
