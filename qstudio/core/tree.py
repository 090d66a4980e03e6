"""The module tree as plain nodes: what the window's tree view and ``qstudio inspect`` show.

Nodes are Qt-free dataclasses; the window adapts them with a thin item model.
Output shapes come from one sample forward with hooks; "quantizable" asks
PyTorch's own module mappings whether a quantized kernel exists for the type
in the chosen mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.ao.quantization.quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_static_quant_module_mappings,
)

from qstudio.core.flows import mode_traits
from qstudio.core.tensors import first_tensor

# Fusion folds BN into the conv before it, so BN is "quantized" as part of its group.
_FOLDED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Modules with no weights that run directly on quantized tensors (quantized kernels exist for them).
_PASS_THROUGH = (
    nn.ReLU, nn.ReLU6, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten, nn.Dropout, nn.Identity, nn.Upsample,
)  # fmt: skip


@dataclass
class ModuleNode:
    name: str  # qualified name; "" for the root
    type: str
    params: int  # parameters in this module and below
    output_shape: list[int] | None = None
    quantizable: bool = False
    fusion_group: int | None = None
    weight_sqnr_db: float | None = None
    activation_sqnr_db: float | None = None
    quantized: bool | None = None  # None until a run has happened
    kept_float: bool = False
    children: list[ModuleNode] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rpartition(".")[2] if self.name else "(model)"

    def walk(self) -> Iterator[ModuleNode]:
        yield self
        for c in self.children:
            yield from c.walk()

    def find(self, name: str) -> ModuleNode | None:
        return next((n for n in self.walk() if n.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "children"}
        d["children"] = [c.to_dict() for c in self.children]
        return d


def quantizable_types(mode: str) -> set[type]:
    if not mode_traits(mode).static_activations:  # dynamic quantization: only the layers with dynamic kernels
        return set(get_default_dynamic_quant_module_mappings())
    return set(get_default_static_quant_module_mappings()) | set(_FOLDED) | set(_PASS_THROUGH)


def output_shapes(model: nn.Module, example: Any) -> dict[str, list[int]]:
    """Output shape of every module from one forward pass (empty for TorchScript)."""
    if isinstance(model, torch.jit.ScriptModule):
        return {}
    shapes: dict[str, list[int]] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(_m, _i, out, name=name):
            with contextlib.suppress(TypeError):
                shapes.setdefault(name, list(first_tensor(out).shape))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


def build_tree(
    model: nn.Module,
    example: Any | None = None,
    mode: str = "fx",
    groups: list[list[str]] | None = None,
    skip: list[str] | None = None,
) -> ModuleNode:
    shapes = output_shapes(model, example) if example is not None else {}
    qtypes = quantizable_types(mode)
    group_of = {name: i for i, g in enumerate(groups or []) for name in g}
    skip_set = set(skip or [])
    nodes: dict[str, ModuleNode] = {}
    for name, module in model.named_modules():
        leaf = not list(module.children())
        node = ModuleNode(
            name=name,
            type=type(module).__name__ if not isinstance(module, torch.jit.ScriptModule) else module.original_name,
            params=sum(p.numel() for p in module.parameters()),
            output_shape=shapes.get(name),
            quantizable=leaf and type(module) in qtypes,
            fusion_group=group_of.get(name),
            kept_float=name in skip_set,
        )
        nodes[name] = node
        if name:
            parent = name.rpartition(".")[0]
            nodes[parent].children.append(node)
    return nodes[""]


def annotate(root: ModuleNode, errors: list[Any], quantized: list[str], floats: list[str]) -> None:
    """Attach a run's per-layer SQNR and quantized/float state to the tree."""
    by_name = {e.name: e for e in errors}
    qset, fset = set(quantized), set(floats)
    for node in root.walk():
        e = by_name.get(node.name)
        node.weight_sqnr_db = e.weight_sqnr_db if e else None
        node.activation_sqnr_db = e.activation_sqnr_db if e else None
        node.quantized = True if node.name in qset else False if node.name in fset else None
