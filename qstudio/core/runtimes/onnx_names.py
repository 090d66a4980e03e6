"""Which ONNX nodes run the user's PyTorch modules: so layers kept in float stay float in ONNX Runtime's INT8 model.

Both ONNX exporters are read: the TorchScript-based one names nodes by module
scope (``/layer1/layer1.0/conv1/Conv``), the torch.export-based one keeps
``pkg.torch.onnx.name_scopes`` metadata and parameter names.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from torch import nn


def _legacy_path(node_name: str, modules: set[str]) -> str | None:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``.

    The TorchScript exporter names each scope by its module's name from the
    last non-numeric part on (``layer1.0``, ``downsample.0``, ``conv1``), and
    a module's second call with ``_1`` (``relu_1``).
    """
    parts = node_name.split("/")
    if len(parts) < 3 or parts[0]:
        return None
    path: list[str] = []
    for seg in parts[1:-1]:
        if path and seg.startswith(path[-1] + "."):
            path[-1] = seg
        else:
            path.append(seg)
        if ".".join(path) not in modules:
            base = re.sub(r"_\d+$", "", path[-1])
            if ".".join([*path[:-1], base]) in modules:
                path[-1] = base
    return ".".join(path)


def node_modules(node: Any, modules: set[str]) -> set[str]:
    """The user's module names an ONNX node comes from, whichever exporter made it."""
    owners: set[str] = set()
    legacy = _legacy_path(node.name, modules)
    if legacy:
        owners.add(legacy)
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            with contextlib.suppress(ValueError, SyntaxError):
                owners.update(s for s in ast.literal_eval(prop.value) if s in modules)
    for name in node.input:  # the torch.export exporter keeps parameter names; a conv with BN folded in is bn's scope
        owner, _, param = name.rpartition(".")
        if owner in modules and param in ("weight", "bias"):
            owners.add(owner)
    return owners


def float_nodes(graph_nodes: Sequence[Any], model: nn.Module, skip: Sequence[str], groups: Sequence[Sequence[str]]):
    """The nodes to keep float for ``skip`` and one note per skip name saying what became of it.

    A skipped member of a fusion group keeps the whole group float, as in the
    torch.ao flows (its ops are one node after folding).
    """
    modules = {name for name, _ in model.named_modules() if name}
    owners = {node.name: node_modules(node, modules) for node in graph_nodes}
    exclude: list[str] = []
    notes: list[str] = []
    for name in skip:
        if name not in modules:
            notes.append(f"ONNX Runtime INT8: '{name}' is not a module of this model; nothing kept float for it")
            continue
        group = next((list(g) for g in groups if name in g), [name])
        hits = [n for n, own in owners.items() if any(o == k or o.startswith(k + ".") for o in own for k in group)]
        if not hits:
            notes.append(f"ONNX Runtime INT8: '{name}' matched no ONNX node (it was folded away); nothing kept float")
            continue
        exclude += [h for h in hits if h not in exclude]
        notes.append(f"ONNX Runtime INT8: kept '{name}' float ({len(hits)} ONNX node{'s' * (len(hits) != 1)})")
    return exclude, notes
