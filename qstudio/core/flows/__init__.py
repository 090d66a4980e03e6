"""Quantization flows behind one interface.

``get_flow(recipe)`` dispatches on ``recipe.mode`` (and, for QAT, on
``recipe.qat.graph``).  This package is the only place that calls
``torch.ao.quantization``'s prepare/convert APIs; a successor flow (torchao
``quantize_``, PT2E) is added by registering a class here.  What each mode
needs and does (fusion, calibration, training data, the settings it reads)
is asked of :func:`mode_traits`.

Where things are: ``traits`` (what each mode needs and does), ``registry``
(which flow runs a recipe), ``base`` (a flow's input and result, the steps
the static flows share, torch's quantized engine), ``fx`` / ``eager`` /
``dynamic`` (the flows), ``regions`` and ``module_calls`` (FX on a model it
cannot trace whole), ``qconfig`` (observers), ``training`` (calibrate or
train), ``failures`` (errors that name the module), ``names`` (the user's
module names inside a quantized model).

Importing this package costs nothing beyond the traits: the rest (torch.ao's
FX and eager machinery) is imported on first use of a name below, so the
window's settings panel can ask :func:`mode_traits` on every edit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qstudio.core.flows.traits import ModeTraits, known_modes, mode_traits

if TYPE_CHECKING:
    from qstudio.core.flows.base import EpochStats, Flow, FlowInput, QuantizedModel, module_for, quantized_engine
    from qstudio.core.flows.names import ISLAND_ATTR
    from qstudio.core.flows.registry import get_flow, register_flow

#: The names imported on first use, and the module that defines each.
_LAZY = {
    "EpochStats": "base",
    "Flow": "base",
    "FlowInput": "base",
    "QuantizedModel": "base",
    "quantized_engine": "base",
    "ISLAND_ATTR": "names",
    "module_for": "base",
    "get_flow": "registry",
    "register_flow": "registry",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ISLAND_ATTR",
    "EpochStats",
    "Flow",
    "FlowInput",
    "ModeTraits",
    "QuantizedModel",
    "get_flow",
    "known_modes",
    "mode_traits",
    "module_for",
    "quantized_engine",
    "register_flow",
]
