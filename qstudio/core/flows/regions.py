"""FX quantization of a model torch.fx cannot trace whole: black boxes and separately traced regions.

When tracing stops, :func:`plan` keeps the smallest set of submodules whole
(:func:`~qstudio.core.graph.find_black_boxes`: each box is a module whose
own forward cannot be traced, never its parent) and FX quantizes the rest
as one *region*.  A box stays float; the Linear layers inside it are
quantized dynamically (BERT's query/key/value, inside a self-attention
whose reshapes FX cannot follow), as static quantization needs FX's graph
to place its quant/dequant points.  Where a module's own forward cannot be
traced (GPT-2's ``GPT2Model.forward`` builds its masks with control flow),
or one box holds most of the layers, its children are planned the same
way, each traced on its own with the arguments it really gets (recorded by
:mod:`qstudio.core.flows.module_calls`).

Each region goes through ``prepare_fx``/``convert_fx`` by itself and is
put back where its module was, keeping that module's signature, so the
float code around it calls it unchanged; one calibration pass over the
whole model observes every region.  A region keeps its submodules' names,
so per-layer comparison and coverage match it to the float model.

A module that branches on tensor *values* around layers that would stay
float (a gate: ``if x.mean() > 0: return self.conv(x)``) is not kept in
float silently: :func:`check` refuses, naming the line, and the user
chooses (``--skip`` it, or rewrite the branch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

from qstudio.core import graph as graphs
from qstudio.core.errors import FlowError
from qstudio.core.flows.failures import refusal
from qstudio.core.flows.module_calls import Call, capture_calls
from qstudio.core.recipe import QuantSettings


def _is_layer(m: nn.Module) -> bool:
    """A layer static quantization turns into an INT8 kernel (a fused conv counts through its conv)."""
    return isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path and name else path or name


def _relative(names: Iterable[str], path: str) -> list[str]:
    if not path:
        return list(names)
    return [n[len(path) + 1 :] for n in names if n.startswith(path + ".")]


# -- the plan ---------------------------------------------------------------------------------
@dataclass
class Region:
    """A module traced on its own: ``leaves`` (relative names) are kept whole, float."""

    path: str
    graph: fx.Graph
    leaves: list[str]
    inputs: tuple[torch.Tensor, ...]
    class_name: str
    layers: list[str] = field(default_factory=list)  # the quantizable layers it holds (outside its leaves)


@dataclass
class Plan:
    regions: list[Region] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)  # Linear layers in float code: quantized dynamically
    float_parts: dict[str, graphs.TraceFailure] = field(default_factory=dict)  # path -> why its own code runs in float
    left_float: list[str] = field(default_factory=list)  # quantizable layers that stay float
    refused: dict[str, str] = field(default_factory=dict)  # region path -> why prepare_fx refused it (it stays float)
    total_layers: int = 0

    def quantized_layers(self) -> int:
        return self.total_layers - len(self.left_float)


class _Planner:
    def __init__(self, model: nn.Module, example: torch.Tensor, skip: Sequence[str]) -> None:
        self.model = model
        self.skip = list(skip)
        self.modules = dict(model.named_modules())
        self.layers = {n: m for n, m in self.modules.items() if n and _is_layer(m) and not _under(n, self.skip)}
        holders = {n for n, m in self.modules.items() if not _under(n, self.skip) and self._weights(n)}
        try:
            batch2 = torch.cat([example, example])
        except Exception:
            batch2 = None
        self.calls = capture_calls(model, [example] if batch2 is None else [example, batch2], holders)
        self.plan = Plan()
        self.quantized: set[str] = set()

    def _weights(self, path: str, outside: Sequence[str] = ()) -> int:
        """The weights of the quantizable layers under ``path`` (all of them for ""), except those under ``outside``."""
        return sum(
            _weights(m) or 1
            for n, m in self.layers.items()
            if (not path or n == path or n.startswith(path + ".")) and not _under(n, outside)
        )

    def visit(self, path: str) -> None:
        """Plan the quantizable layers under ``path``: trace it as a region, else its children, each on its own."""
        module = self.modules[path]
        if _under(path, self.skip) or not self._weights(path):
            return
        if _is_leaf(module):  # a layer alone between untraceable code: no FX region can hold it
            self._float_code(path)
            return
        call = self.calls.get(path)
        if call is None or call.problem:
            # never called as a whole (a ModuleList), or called in ways one trace cannot stand for
            if call is not None:
                self._float_part(path, graphs.TraceFailure(path, type(module).__name__, None, call.problem))
            self._children(path, module)
            return
        found = graphs.find_black_boxes(module, set(_relative(self.skip, path)), constants=call.constants)
        if found.graph is None:  # its own forward cannot be traced: its children can, each on its own
            assert found.root is not None
            self._float_part(path, found.root)
            self._children(path, module)
            return
        self.plan.float_parts.pop(path, None)  # traced with the arguments it really gets: quantized after all
        boxes = [_join(path, f.module) for f in found.boxes]
        total = self._weights(path)
        for f, box in zip(found.boxes, boxes, strict=True):
            self._float_part(box, f)
        leaves = sorted(found.leaves)
        outside = [_join(path, leaf) for leaf in leaves]
        kept = self._weights(path, outside)
        if kept:
            inside = [n for n in self.layers if (not path or n.startswith(path + ".")) and not _under(n, outside)]
            self.plan.regions.append(
                Region(path, found.graph, leaves, tuple(call.tensors.values()), type(module).__name__, inside)
            )
            self.quantized.update(inside)
        for box in boxes:
            if (
                not kept or 2 * self._weights(box) > total
            ):  # the boxes hold the layers (GPT-2 in a wrapper): plan inside
                self.visit(box)
            else:
                self._float_code(box)

    def _float_part(self, path: str, failure: graphs.TraceFailure) -> None:
        self.plan.float_parts.setdefault(path, dataclasses.replace(failure, module=path))

    def _float_code(self, path: str) -> None:
        """``path`` runs as plain PyTorch code: its Linear layers can still be quantized dynamically."""
        for name, m in self.layers.items():
            if (name == path or name.startswith(path + ".")) and type(m) is nn.Linear:
                self.plan.dynamic.append(name)
                self.quantized.add(name)

    def _children(self, path: str, module: nn.Module) -> None:
        for name, _child in module.named_children():
            self.visit(_join(path, name))

    def run(self) -> Plan:
        self.visit("")
        self.plan.left_float = [n for n in self.layers if n not in self.quantized]
        self.plan.total_layers = len(self.layers)
        return self.plan


def _is_leaf(m: nn.Module) -> bool:
    """A module FX never traces into (torch.nn's own), not a container without a forward (ModuleList)."""
    return type(m).forward is not nn.Module.forward and graphs.is_leaf(m)


def _weights(m: nn.Module) -> int:
    w = getattr(m, "weight", None)
    return w.numel() if isinstance(w, torch.Tensor) else 0


def plan(model: nn.Module, example: torch.Tensor, skip: Sequence[str] = ()) -> Plan:
    """Which parts of ``model`` FX quantizes (regions), which stay float (and why), which Linears go dynamic."""
    return _Planner(model, example, skip).run()


def check(p: Plan, first: graphs.TraceFailure | None, *, branches: bool = True) -> None:
    """Refuse what the user should decide: layers float around a branch on tensor values, or nothing quantized.

    A module that cannot be traced for its shapes (transformers' reshapes,
    timm's patch sizes) is kept in float on its own.  One that branches on
    tensor *values* (``if x.mean() > 0``) chooses per input, and its layers
    would stay float: that is the user's call (keep it float, or rewrite the
    branch, e.g. with ``torch.where``).  The message is the one for the first
    place tracing stopped, as when FX could not go on at all.
    """
    branching = [
        (path, failure) for path, failure in p.float_parts.items()
        if branches and failure.branches_on_values and any(_under(n, [path]) or not path for n in p.left_float)
    ]  # fmt: skip
    if branching:
        path, failure = branching[0]
        inside = [n for n in p.left_float if not path or _under(n, [path])]
        problem = f"{failure.describe()}; it branches on tensor values around {len(inside)} layer(s) that would stay float ({_names(inside)})"
        named = [q for q, _ in branching if q]
        if named and len(named) == len(branching):
            fix = (
                f"keep {_names(named, 8)} in float (--skip {' '.join(named)}, or tick it in the tree) so FX treats it as "
                "a black box, or rewrite that code so control flow does not depend on tensor values"
            )
        else:
            fix = "rewrite that code so control flow does not depend on tensor values, or use eager mode (--mode eager)"
        raise FlowError(problem, fix)
    if p.total_layers and p.quantized_layers() == 0:
        why = first.describe() if first is not None else "torch.ao's prepare_fx refused every traced part"
        raise FlowError(
            f"{why}; keeping the parts FX cannot trace in float would leave all {p.total_layers} quantizable layers float",
            "rewrite that code so control flow does not depend on tensor values, or use eager mode (--mode eager)",
        )


# -- prepare, convert ---------------------------------------------------------------------------
def _set(root: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """Put ``module`` at ``path`` under ``root``; returns the (new) root."""
    if not path:
        return module
    parent, _, attr = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)
    return root


def _get(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path) if path else root


def prepare(
    model: nn.Module,
    p: Plan,
    skip: Sequence[str],
    prepare_one: Callable[[nn.Module, list[str], tuple[torch.Tensor, ...]], nn.Module],
    step: str = "prepare_fx",
) -> nn.Module:
    """Prepare each region in place (outer regions first); returns the model to calibrate.

    ``prepare_one(graph_module, leaves, inputs)`` calls prepare_fx (or
    prepare_qat_fx) with ``leaves`` non-traceable and in float.  A region it
    refuses stays float, and the plan says why (``refused``): the rest of
    the model is still quantized.
    """
    root = model
    for region in list(p.regions):
        module = _get(root, region.path)
        gm = fx.GraphModule(module, region.graph, class_name=region.class_name)
        leaves = sorted({*region.leaves, *_relative(skip, region.path)})
        try:
            prepared = prepare_one(gm, leaves, region.inputs)
        except Exception as exc:  # torch.ao refuses something inside: that region stays float
            p.refused[region.path] = refusal(exc, step, root).problem
            p.regions.remove(region)
            p.left_float = [n for n in dict.fromkeys([*p.left_float, *region.layers])]
            continue
        root = _set(root, region.path, prepared)
    return root


def convert(prepared: nn.Module, p: Plan, s: QuantSettings, convert_one: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Convert each region (innermost first) and quantize the Linears left in float code dynamically."""
    from qstudio.core.flows.dynamic import _full_range_activations
    from qstudio.core.flows.qconfig import dynamic_qconfig, reduce_range

    root = prepared
    for path in p.dynamic:
        linear = _get(root, path)
        linear.qconfig = dynamic_qconfig(s, linear)
        quantized = DynamicLinear.from_float(linear)
        del linear.qconfig
        if not reduce_range(s, dynamic=True):
            _full_range_activations(quantized)
        root = _set(root, path, quantized)
    for region in sorted(p.regions, key=lambda r: -(r.path.count(".") + bool(r.path))):
        root = _set(root, region.path, convert_one(_get(root, region.path)))
    return root


# -- what to tell the user ---------------------------------------------------------------------
def _names(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def notes(p: Plan) -> list[str]:
    """Which parts stayed float and why (file:line), which Linears were quantized dynamically."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for path, failure in p.float_parts.items():
        at = f" at {failure.source}" if failure.source else ""
        groups.setdefault((failure.module_type, at, failure.reason.rstrip(".")), []).append(path)
    out = []
    if groups:
        parts = []
        for (mtype, at, reason), paths in groups.items():
            named = ", ".join(
                ["the model's own forward"] * ("" in paths) + [_names([n for n in paths if n])] * any(paths)
            )
            parts.append(f"{named} ({mtype}){at}: {reason}")
        out.append(
            f"Kept in float as black boxes (FX cannot trace them; the rest is quantized, {len(p.regions)} traced "
            f"region(s)): " + "; ".join(parts)
        )
    if p.dynamic:
        out.append(
            f"{len(p.dynamic)} Linear layer(s) inside that float code quantized dynamically (int8 weights, activations "
            f"quantized at run time): {_names(p.dynamic)}"
        )
    for path, why in p.refused.items():
        out.append(f"{'The traced model' if not path else repr(path)} stays float as well: {why}")
    if p.left_float:
        out.append(
            f"{len(p.left_float)} of {p.total_layers} quantizable layers stay float: {_names(p.left_float)}"
            + ("" if p.refused else "; rewriting the lines named above would let FX quantize them")
        )
    return out


def custom_config(leaves: Sequence[str]) -> PrepareCustomConfig:
    return PrepareCustomConfig().set_non_traceable_module_names(list(leaves))


__all__ = ["Call", "Plan", "Region", "capture_calls", "check", "convert", "custom_config", "notes", "plan", "prepare"]
