"""Fusion groups: suggest them from data flow, validate edits, fuse, and check nothing changed.

A group is a list of module names (``["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"]``)
whose types form a pattern PyTorch can fuse.  Suggestions follow the fx data
flow graph, so a ReLU module that a block calls twice (torchvision's
BasicBlock does) is never fused into one call site; when the model cannot be
traced, module order is the fallback and is reported as such.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.ao.quantization import fuse_modules, fuse_modules_qat
from torch.ao.quantization.fuser_method_mappings import _DEFAULT_OP_LIST_TO_FUSER_METHOD

from qstudio.core import graph as graphs
from qstudio.core.errors import FusionError

#: The type patterns PyTorch can fuse, read from torch itself so they never drift.
PATTERNS: tuple[tuple[type, ...], ...] = tuple(_DEFAULT_OP_LIST_TO_FUSER_METHOD.keys())


def pattern_name(types: tuple[type, ...]) -> str:
    return "+".join(t.__name__ for t in types)


SUPPORTED_TEXT = ", ".join(sorted({pattern_name(p) for p in PATTERNS if not p[0].__name__.startswith("ConvTranspose")}))


@dataclass
class Suggestion:
    groups: list[list[str]]
    method: str  # "data flow" or "module order"
    notes: list[str] = field(default_factory=list)


@dataclass
class GroupProblem:
    group: list[str]
    module: str
    reason: str

    def __str__(self) -> str:
        return f"group {'+'.join(self.group)}: '{self.module}' {self.reason}"


@dataclass
class FusionCheck:
    """Fused vs unfused model on the same input (the seed tutorials' equivalence check)."""

    max_abs_diff: float
    reference_scale: float
    ok: bool

    def describe(self) -> str:
        verdict = "equivalent" if self.ok else "CHANGED THE OUTPUTS"
        return f"fusion {verdict}: max abs difference {self.max_abs_diff:.2e} (outputs up to {self.reference_scale:.2e})"


class _Flow:
    """Call sites and consumers of each module, read from an fx graph."""

    def __init__(self, g: fx.Graph) -> None:
        self.calls = Counter(n.target for n in g.nodes if n.op == "call_module")
        self.node: dict[str, fx.Node] = {n.target: n for n in g.nodes if n.op == "call_module"}  # type: ignore[misc]

    def feeds(self, a: str, b: str) -> str | None:
        """None if ``a``'s only consumer is ``b``; else the reason it is not."""
        if self.calls.get(a, 0) != 1:
            n = self.calls.get(a, 0)
            return "is never called in forward" if n == 0 else f"is called {n} times, so fusing it would change its other call sites"
        if self.calls.get(b, 0) != 1:
            n = self.calls.get(b, 0)
            return f"feeds '{b}', which is {'never called' if n == 0 else f'called {n} times'}"
        users = list(self.node[a].users)
        if len(users) != 1 or users[0] is not self.node[b]:
            if self.node[b] not in users:
                return f"does not feed '{b}' directly"
            return f"has other consumers besides '{b}'"
        return None


def _leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and not list(m.children())}


def suggest_groups(model: nn.Module, leaves: set[str] | frozenset[str] = frozenset()) -> Suggestion:
    """Fusion groups found in the data flow (fx), or in module order when tracing fails."""
    traced = graphs.trace(model, leaves)
    modules = dict(model.named_modules())
    if isinstance(traced, graphs.TraceFailure):
        return _suggest_by_order(model, [f"data flow unavailable ({traced.describe()}); groups follow module order, check them"])
    flow = _Flow(traced)
    used: set[str] = set()
    groups: list[list[str]] = []
    for node in traced.nodes:
        if node.op != "call_module" or node.target in used:
            continue
        chain = [node.target]
        cur = node
        while len(chain) < 3:
            users = list(cur.users)
            if len(users) != 1 or users[0].op != "call_module":
                break
            nxt = users[0]
            types = tuple(type(modules[n]) for n in [*chain, nxt.target])
            if not any(p[: len(types)] == types for p in PATTERNS) or flow.feeds(cur.target, nxt.target):
                break
            chain.append(nxt.target)
            cur = nxt
        # take the longest prefix that is a complete pattern
        while len(chain) >= 2 and tuple(type(modules[n]) for n in chain) not in PATTERNS:
            chain.pop()
        if len(chain) >= 2 and flow.calls[chain[0]] == 1:
            groups.append(list(chain))  # type: ignore[arg-type]
            used.update(chain)  # type: ignore[arg-type]
    return Suggestion(groups, "data flow")


def _suggest_by_order(model: nn.Module, notes: list[str]) -> Suggestion:
    leaves = list(_leaf_modules(model).items())
    groups: list[list[str]] = []
    i = 0
    while i < len(leaves):
        for size in (3, 2):
            window = leaves[i : i + size]
            if len(window) == size and tuple(type(m) for _, m in window) in PATTERNS:
                parents = {n.rpartition(".")[0] for n, _ in window}
                if len(parents) == 1:
                    groups.append([n for n, _ in window])
                    i += size
                    break
        else:
            i += 1
    return Suggestion(groups, "module order", notes)


def validate_groups(
    model: nn.Module, groups: list[list[str]], leaves: set[str] | frozenset[str] = frozenset()
) -> list[GroupProblem]:
    """Every problem with ``groups``: unknown names, unsupported patterns, overlap, not adjacent."""
    modules = dict(model.named_modules())
    problems: list[GroupProblem] = []
    seen: dict[str, int] = {}
    traced = graphs.trace(model, leaves)
    flow = None if isinstance(traced, graphs.TraceFailure) else _Flow(traced)
    for gi, group in enumerate(groups):
        missing = [n for n in group if n not in modules or not n]
        if missing:
            problems.append(GroupProblem(group, missing[0], "is not a module of this model"))
            continue
        for n in group:
            if n in seen and seen[n] != gi:
                problems.append(GroupProblem(group, n, f"is already in group {'+'.join(groups[seen[n]])}; a module can be in one group"))
            seen[n] = gi
        types = tuple(type(modules[n]) for n in group)
        if types not in PATTERNS:
            problems.append(
                GroupProblem(group, group[0], f"makes {pattern_name(types)}, a pattern PyTorch cannot fuse; supported: {SUPPORTED_TEXT}")
            )
            continue
        if flow is not None:
            for a, b in itertools.pairwise(group):
                reason = flow.feeds(a, b)
                if reason:
                    problems.append(GroupProblem(group, a, reason))
                    break
    return problems


def check_groups(model: nn.Module, groups: list[list[str]], leaves: set[str] | frozenset[str] = frozenset()) -> None:
    problems = validate_groups(model, groups, leaves)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FusionError(f"invalid fusion {problems[0]}{more}", "remove or edit that group, or use Suggest to start again")


def apply_fusion(model: nn.Module, groups: list[list[str]], *, qat: bool = False) -> nn.Module:
    """Fuse ``groups`` in ``model`` (in place) and return it.  PTQ fusion folds BN, so eval mode is required."""
    if not groups:
        return model
    if qat:
        model.train()
        return fuse_modules_qat(model, groups, inplace=True)
    model.eval()
    return fuse_modules(model, groups, inplace=True)


def check_equivalence(unfused: nn.Module, fused: nn.Module, example: torch.Tensor) -> FusionCheck:
    """Run both models on the same input in eval mode and compare outputs."""
    from qstudio.core.tensors import first_tensor

    unfused_mode, fused_mode = unfused.training, fused.training
    unfused.eval()
    fused.eval()
    try:
        with torch.no_grad():
            a = first_tensor(unfused(example)).float()
            b = first_tensor(fused(example)).float()
    finally:
        unfused.train(unfused_mode)
        fused.train(fused_mode)
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(a.abs().max()) if a.numel() else 0.0
    return FusionCheck(diff, scale, diff <= 1e-4 * max(1.0, scale))


def fused_copy(model: nn.Module, groups: list[list[str]]) -> nn.Module:
    return apply_fusion(copy.deepcopy(model).eval(), groups)
