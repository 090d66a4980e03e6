"""Eager mode: static PTQ and QAT with QuantStub/DeQuantStub placed by qstudio.

qstudio wraps the whole model (``QuantWrapper``: quant -> model -> dequant), so
everything between the stubs runs on quantized tensors.  A module the user
keeps in float is put on a *float island* (DeQuantStub -> module -> QuantStub).
What eager mode cannot do is tensor arithmetic between quantized modules (a
residual ``out + identity``, ``torch.cat``, functional calls): those need
FloatFunctional in the model's source.  The preflight finds them before any
calibration, names module and source line, and points to FX mode.
"""

from __future__ import annotations

import copy
import operator
import time
from collections.abc import Generator

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, QuantWrapper, convert, prepare, prepare_qat

from qstudio.core import graph as graphs
from qstudio.core.errors import FlowError
from qstudio.core.flows.base import ISLAND_ATTR, FlowInput, QuantizedModel, calibrate, check_memory, convert_step
from qstudio.core.flows.qconfig import qat_qconfig, static_qconfig
from qstudio.core.flows.training import train_fake_quant
from qstudio.core.fusion import apply_fusion
from qstudio.core.progress import Progress

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
    """Keep ``skip`` modules in float.  A skipped member of a fusion group skips the fused module."""
    targets: list[str] = []
    for name in skip:
        group = next((g for g in groups if name in g), None)
        target = group[0] if group else name
        if target not in targets:
            targets.append(target)
    for name in targets:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise FlowError(f"module '{name}' to keep in float does not exist", "check the name in the module tree") from None
        module.qconfig = None  # type: ignore[assignment]
        _set_module(model, name, FloatIsland(module))


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
        if not is_arith or not tensor_args:
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


def _prepare_static(inp: FlowInput, qat: bool) -> nn.Module:
    s = inp.recipe.settings
    model = apply_fusion(copy.deepcopy(inp.model), inp.groups, qat=qat)
    _float_islands(model, s.skip, inp.groups)
    wrapped = QuantWrapper(model)
    wrapped.qconfig = qat_qconfig(s) if qat else static_qconfig(s)  # type: ignore[assignment]
    if qat:
        wrapped.train()
        return prepare_qat(wrapped, inplace=True)
    wrapped.eval()
    return prepare(wrapped, inplace=True)


def _check_int_input(inp: FlowInput) -> None:
    if not inp.example.is_floating_point():
        raise FlowError(
            "static quantization quantizes the model's input, but this model takes integer token ids",
            "use dynamic quantization (--mode dynamic), which quantizes Linear/LSTM weights and suits token models",
        )


def dry_run(inp: FlowInput) -> None:
    """Quantize a copy with one calibration batch and run it: the only sure test for eager mode."""
    torch.backends.quantized.engine = inp.recipe.settings.backend
    prepared = _prepare_static(inp, qat=False)
    with torch.no_grad():
        prepared(inp.example)
    quantized = convert(prepared.eval(), inplace=True)
    tracker = _ModuleTracker(quantized)
    try:
        with torch.no_grad():
            quantized(inp.example)
    except Exception as exc:
        where = graphs.user_frame(exc)
        module = next((n for n in reversed(tracker.stack) if n), "")
        module = module[len(PREFIX) :] if module.startswith(PREFIX) else module
        found = blockers(inp.model, set(inp.recipe.settings.skip))
        listing = f"; eager mode cannot run tensor arithmetic between quantized modules, found at {', '.join(found[:3])}" + (
            f" and {len(found) - 3} more" if len(found) > 3 else ""
        ) if found else ""
        at = f" at {where}" if where else ""
        raise FlowError(
            f"eager mode fails in '{module or 'the model'}'{at}: {graphs.first_line(exc)}{listing}",
            "use FX graph mode (--mode fx), which handles residual additions and concatenation automatically, "
            "or replace those operations with torch.ao.nn.quantized.FloatFunctional in the model",
        ) from None
    finally:
        tracker.close()


def _convert(prepared: nn.Module) -> nn.Module:
    return convert(prepared, inplace=True)


class EagerPTQ:
    mode = "eager"

    def preflight(self, inp: FlowInput) -> list[str]:
        _check_int_input(inp)
        dry_run(inp)
        check_memory(inp)
        return []

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        s = inp.recipe.settings
        torch.backends.quantized.engine = s.backend
        yield Progress("prepare", 0, 1, "fusing, adding QuantStub/DeQuantStub and observers")
        prepared = _prepare_static(inp, qat=False)
        yield Progress("prepare", 1, 1)
        seconds = yield from calibrate(prepared, inp.calib, s.batch_size, s.calib_batches, prefix=PREFIX)
        return (yield from convert_step(prepared, _convert, "eager", PREFIX, seconds))


class EagerQAT:
    mode = "qat"

    def preflight(self, inp: FlowInput) -> list[str]:
        _check_int_input(inp)
        dry_run(inp)
        check_memory(inp)
        return []

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        s = inp.recipe.settings
        torch.backends.quantized.engine = s.backend
        assert inp.train is not None
        yield Progress("prepare", 0, 1, "fusing for QAT, adding stubs and fake-quant")
        prepared = _prepare_static(inp, qat=True)
        yield Progress("prepare", 1, 1)
        start = time.perf_counter()
        history = yield from train_fake_quant(prepared, inp.train, inp.recipe.qat, inp.eval, prefix=PREFIX)
        seconds = time.perf_counter() - start
        return (yield from convert_step(prepared, _convert, "qat", PREFIX, seconds, history))
