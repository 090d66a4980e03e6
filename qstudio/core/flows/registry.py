"""Which flow runs a recipe: one class per (mode, variant), registered here."""

from __future__ import annotations

from qstudio.core.flows.base import Flow
from qstudio.core.flows.dynamic import Dynamic
from qstudio.core.flows.eager import EagerPTQ, EagerQAT
from qstudio.core.flows.fx import FxPTQ, FxQAT
from qstudio.core.flows.traits import known_modes, mode_traits, register_traits
from qstudio.core.recipe import Recipe

#: (mode, variant) -> flow class; the variant is QAT's graph (``qat.graph``), "" for the other modes.
_FLOWS: dict[tuple[str, str], type] = {
    ("eager", ""): EagerPTQ,
    ("fx", ""): FxPTQ,
    ("qat", "fx"): FxQAT,
    ("qat", "eager"): EagerQAT,
    ("dynamic", ""): Dynamic,
}


def get_flow(recipe: Recipe) -> Flow:
    variant = recipe.qat.graph if mode_traits(recipe.mode).uses("qat") else ""
    return _FLOWS[(recipe.mode, variant)]()


def register_flow(mode: str, variant: str, flow: type) -> None:
    """Add a flow (for example a torchao one) without touching callers; a new mode brings its ``traits``."""
    if mode not in known_modes():
        register_traits(flow.traits)
    _FLOWS[(mode, variant)] = flow


__all__ = ["get_flow", "register_flow"]
