"""Quantization flows behind one interface.

``get_flow(recipe)`` dispatches on ``recipe.mode`` (and, for QAT, on
``recipe.qat.graph``).  This package is the only place that calls
``torch.ao.quantization``'s prepare/convert APIs; a successor flow (torchao
``quantize_``, PT2E) is added by registering a class here.
"""

from __future__ import annotations

from qstudio.core.flows.base import EpochStats, Flow, FlowInput, QuantizedModel
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


__all__ = ["EpochStats", "Flow", "FlowInput", "QuantizedModel", "get_flow", "register_flow"]
