"""Quantization flows behind one interface.

``get_flow(recipe)`` dispatches on ``recipe.mode`` (and, for QAT, on
``recipe.qat.graph``).  This package is the only place that calls
``torch.ao.quantization``'s prepare/convert APIs; a successor flow (torchao
``quantize_``, PT2E) is added by registering a class here.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from qstudio.core.flows.base import ISLAND_ATTR, EpochStats, Flow, FlowInput, QuantizedModel
from qstudio.core.flows.dynamic import Dynamic
from qstudio.core.flows.eager import EagerPTQ, EagerQAT
from qstudio.core.flows.fx import FxPTQ, FxQAT
from qstudio.core.recipe import Recipe

_FLOWS: dict[tuple[str, str], type] = {
    ("eager", ""): EagerPTQ,
    ("fx", ""): FxPTQ,
    ("qat", "fx"): FxQAT,
    ("qat", "eager"): EagerQAT,
    ("dynamic", ""): Dynamic,
}


def get_flow(recipe: Recipe) -> Flow:
    key = (recipe.mode, recipe.qat.graph if recipe.mode == "qat" else "")
    return _FLOWS[key]()


def register_flow(mode: str, variant: str, flow: type) -> None:
    """Add a flow (for example a torchao one) without touching callers."""
    _FLOWS[(mode, variant)] = flow


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


__all__ = ["EpochStats", "Flow", "FlowInput", "QuantizedModel", "get_flow", "module_for", "register_flow"]
