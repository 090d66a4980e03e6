"""What went wrong, said so the user can fix it: a model's fault in a forward, a torch.ao pass's refusal.

An exception from the model's own forward during calibration or training
(:func:`forward_error`) names the module and source line, or the batch size
to lower when memory ran out.  Whatever a torch.ao pass (fuse, prepare,
convert, quantize_dynamic) raises (:func:`refusals`) becomes a
:class:`~qstudio.core.errors.FlowError` naming the module it refused and
what goes around it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.fx
from torch import nn

from qstudio.core import memory
from qstudio.core.errors import Cancelled, DataError, FlowError, QStudioError
from qstudio.core.flows.names import user_name


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
    return user_name(found, prefix)


#: The command line's flag for a recipe key an error asks the user to change (the window's settings use the key).
_FLAGS = {
    "settings.batch_size": "--batch-size",
    "benchmark.batch_sizes": "--batch-sizes",
}


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
    fed = f" ({batch_size} samples per batch)" if batch_size > 1 else ""
    setting = f"{_FLAGS[key]} ({key})" if key in _FLAGS else key
    one = f", or, if the model takes one sample at a time, set {setting} to 1" if batch_size > 1 else ""
    return FlowError(
        f"{name} raised {type(exc).__name__} in {where_in}{fed}{at}: {graphs.first_line(exc)}",
        f"fix that line of the model, or check that the data fits the model (shape, dtype, value range){one}",
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
    # outside the prefix: one of the stubs qstudio added around the model, not the user's module
    name = "" if prefix and found and not found.startswith(prefix) else user_name(found, prefix)
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


__all__ = ["forward_error", "refusal", "refusals"]
