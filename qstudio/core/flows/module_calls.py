"""How each module of a model is called, so a module FX traces on its own gets the arguments it really gets.

:func:`capture_calls` runs the model (batch sizes 1 and 2) with hooks on
the modules that hold layers and records each call as a :class:`Call`:
tensors become the traced region's inputs, everything else (flags, sizes,
``None``) is baked into the trace.  A module called in ways one trace
cannot stand for (a value that changes with the batch size, an argument
FX cannot pass in, an output a traced module would turn into a dict)
gets a ``problem`` instead, and :mod:`qstudio.core.flows.regions` plans
inside it.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_SIMPLE = (
    type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
    torch.memory_format, type(Ellipsis), slice, enum.Enum,
)  # fmt: skip


def _is_constant(value: object) -> bool:
    """A value a trace can bake in: no tensors, nothing mutable that the model could change between calls."""
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list)):
        return all(_is_constant(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_constant(v) for k, v in value.items())
    return False


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # a value whose == is not a bool
        return False


@dataclass
class Call:
    """How a module's forward was called: tensors become the region's inputs, everything else is baked in.

    ``constants`` is keyed by parameter name (``*args`` / ``**kwargs`` with
    their stars) and holds every parameter not given a tensor, defaults
    included.  ``problem`` says why the calls cannot be traced as one region.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def _bind(module: nn.Module, args: tuple, kwargs: dict) -> Call:
    try:
        sig = inspect.signature(module.forward)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return Call(problem=f"its call does not match its forward's signature ({exc})")
    call = Call()
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_POSITIONAL:
            key, value = "*" + name, tuple(bound.arguments.get(name, ()))
        elif p.kind is p.VAR_KEYWORD:
            key, value = "**" + name, dict(bound.arguments.get(name, {}))
        else:
            key, value = name, bound.arguments.get(name, p.default)
        if value is inspect.Parameter.empty:
            return Call(problem=f"its argument '{name}' has no value")
        if isinstance(value, torch.Tensor) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            call.tensors[key] = value
        elif p.kind is p.VAR_KEYWORD and all(isinstance(v, torch.Tensor) or _is_constant(v) for v in value.values()):
            call.constants[key] = value  # the tracer reads each tensor out of **kwargs
        elif _is_constant(value):
            call.constants[key] = value
        else:
            return Call(problem=f"its argument '{name}' is a {type(value).__name__} FX cannot pass in")
    return call


def _traceable_output(out: object) -> bool:
    """Whether a traced module returns ``out`` as it is (fx turns a dict subclass, transformers' ModelOutput, into a dict)."""
    if out is None or isinstance(out, (torch.Tensor, *_SIMPLE)):
        return True
    if isinstance(out, (tuple, list)):
        return all(_traceable_output(v) for v in out)
    if type(out) is dict:
        return all(_traceable_output(v) for v in out.values())
    return False


def _merge(calls: list[Call]) -> Call:
    """One region for all the calls of a module, if they differ only in their tensors' values."""
    first = calls[0]
    for call in calls:
        if call.problem:
            return call
    for call in calls[1:]:
        if call.tensors.keys() != first.tensors.keys():
            return Call(problem="it is called with tensors for different arguments")
        for key, value in first.constants.items():
            if key not in call.constants or not _same(value, call.constants[key]):
                return Call(
                    problem=f"it is called with different values for '{key.lstrip('*')}' (or with another batch size)"
                )
    return first


def capture_calls(model: nn.Module, inputs: Sequence[torch.Tensor], names: set[str]) -> dict[str, Call]:
    """Run ``model`` on each input (batch sizes 1 and 2) and record how each module in ``names`` is called.

    A value that changes with the batch size (``batch_size=2``) cannot be baked
    into a region, so a module called so is not one.
    """
    modules = dict(model.named_modules())
    seen: dict[str, list[Call]] = {}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            seen.setdefault(name, []).append(_bind(module, args, kwargs))

        return hook

    def output_hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            calls = seen.get(name)
            if calls and not calls[-1].problem and not _traceable_output(output):
                calls[-1] = Call(
                    problem=f"it returns a {type(output).__name__}, which a traced module would return as a dict"
                )

        return hook

    for name in names:
        if name in modules:
            handles.append(modules[name].register_forward_pre_hook(hook_for(name), with_kwargs=True))
            handles.append(modules[name].register_forward_hook(output_hook_for(name)))
    try:
        with torch.no_grad():
            for i, x in enumerate(inputs):
                try:
                    model(x)
                except Exception:
                    if i == 0:
                        raise
                    break  # a model that only takes batch 1 still has its batch-1 calls
    finally:
        for h in handles:
            h.remove()
    return {name: _merge(calls) for name, calls in seen.items()}


__all__ = ["Call", "capture_calls"]
