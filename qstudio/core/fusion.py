"""Fusion groups: suggest them from data flow, validate edits, fuse, and check nothing changed.

A group is a list of module names (``["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"]``)
whose types form a pattern PyTorch can fuse.  Suggestions follow the fx data
flow graph, so a ReLU module that a block calls twice (torchvision's
BasicBlock does) is never fused into one call site; when the model cannot be
traced, module order is the fallback and is reported as such.  A model that
brings its own ``fuse_model()`` (torchvision's quantizable models, PyTorch's
tutorial models) gets exactly the groups that method fuses, read by running it
on a copy, so the tree shows them and they stay editable.
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
        return (
            f"fusion {verdict}: max abs difference {self.max_abs_diff:.2e} (outputs up to {self.reference_scale:.2e})"
        )


class _Flow:
    """Call sites and consumers of each module, read from an fx graph."""

    def __init__(self, g: fx.Graph) -> None:
        self.calls = Counter(n.target for n in g.nodes if n.op == "call_module")
        self.node: dict[str, fx.Node] = {n.target: n for n in g.nodes if n.op == "call_module"}  # type: ignore[misc]

    def feeds(self, a: str, b: str) -> str | None:
        """None if ``a``'s only consumer is ``b``; else the reason it is not."""
        if self.calls.get(a, 0) != 1:
            n = self.calls.get(a, 0)
            return (
                "is never called in forward"
                if n == 0
                else f"is called {n} times, so fusing it would change its other call sites"
            )
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


#: ``Suggestion.method`` for groups read from the model's own ``fuse_model()``.
FUSE_MODEL = "the model's fuse_model()"


def suggest_groups(model: nn.Module, leaves: set[str] | frozenset[str] = frozenset()) -> Suggestion:
    """The groups of the model's own ``fuse_model()``; else groups found in the data flow (fx), else in module order."""
    own, notes = groups_from_fuse_model(model)
    if own is not None:
        return Suggestion(own, FUSE_MODEL, notes)
    suggestion = _suggest_by_flow(model, leaves)
    suggestion.notes[:0] = notes
    return suggestion


def groups_from_fuse_model(model: nn.Module) -> tuple[list[list[str]] | None, list[str]]:
    """The groups ``model.fuse_model()`` fuses, or None (and why) when it has none or they cannot be read.

    ``fuse_model`` runs on an eval-mode copy (PTQ fusion; torchvision's
    ``fuse_model(is_qat=None)`` and torch's test models pick it from
    ``training``), and the copy is compared with the model: fuse_modules puts
    the fused module at a group's first name and ``nn.Identity`` at the
    others.  A fused module holds the very ReLU (or BatchNorm) objects it
    took, which names them; a BatchNorm folded into a new conv goes to the
    nearest conv of the same parent module.  The groups are kept only if
    fusing them reproduces what ``fuse_model`` made: the same module types
    and the same weights, name for name.
    """
    fuse = getattr(model, "fuse_model", None)
    if not callable(fuse):
        return None, []
    before = _leaf_modules(model)
    memo: dict[int, object] = {}
    try:
        fused = copy.deepcopy(model, memo).eval()
        copies = {name: memo[id(m)] for name, m in before.items()}
        fused.fuse_model()  # type: ignore[operator]
    except Exception as exc:  # user code
        return None, [
            f"the model's fuse_model() failed ({graphs.first_line(exc)}); groups suggested from data flow instead"
        ]
    cannot = [
        "the model's fuse_model() changes more than fusion groups can say; groups suggested from data flow instead"
    ]
    groups = _read_groups(before, copies, dict(fused.named_modules()))
    try:
        regrouped = apply_fusion(copy.deepcopy(model).eval(), groups) if groups is not None else None
    except Exception:  # a misread group that torch cannot fuse
        regrouped = None
    if groups is None or regrouped is None or not _same_modules(fused, regrouped):
        return None, cannot
    # Groups the data flow rejects (googlenet's aux classifiers, which forward never calls in eval mode) would
    # make any edit of the list fail validation; fusing them changes no output, so they are left out.
    problems = validate_groups(model, groups)
    dropped = {"+".join(p.group): p for p in problems}
    if dropped:
        shown = "; ".join(str(p) for p in list(dropped.values())[:3]) + (
            f" and {len(dropped) - 3} more" if len(dropped) > 3 else ""
        )
        notes = [f"{len(dropped)} of the groups fuse_model() fuses are left out ({shown})"]
        return [g for g in groups if "+".join(g) not in dropped], notes
    return groups, []


def _read_groups(
    before: dict[str, nn.Module], copies: dict[str, object], after: dict[str, nn.Module]
) -> list[list[str]] | None:
    """Groups from a model's leaves (``before``), their copies, and the copy's modules after ``fuse_model``."""
    order = {name: i for i, name in enumerate(before)}
    origin = {id(obj): name for name, obj in copies.items()}
    heads: dict[str, list[str]] = {}
    members: list[str] = []
    for name in before:
        new = after.get(name)
        if new is None or new is copies[name]:
            continue
        if isinstance(new, nn.Identity):
            members.append(name)
        else:  # the fused module: the originals it kept inside name the members they came from
            heads[name] = [origin[id(m)] for m in new.modules() if id(m) in origin and origin[id(m)] != name]
    claimed = {m for taken in heads.values() for m in taken}
    for member in members:
        if member in claimed:
            continue
        parent = member.rpartition(".")[0]
        near = [h for h in heads if h.rpartition(".")[0] == parent] or list(heads)
        if not near:
            return None
        before_it = [h for h in near if order[h] < order[member]]
        head = max(before_it, key=order.__getitem__) if before_it else min(near, key=order.__getitem__)
        heads[head].append(member)
    groups = []
    for head, taken in heads.items():
        orders = [[head, *perm] for perm in itertools.permutations(taken)]
        group = next((g for g in orders if tuple(type(before[n]) for n in g) in PATTERNS), None)
        if group is None:
            return None
        groups.append(group)
    return groups


def _same_modules(a: nn.Module, b: nn.Module) -> bool:
    """Same module types under the same names, and equal parameters and buffers."""
    if {n: type(m) for n, m in a.named_modules()} != {n: type(m) for n, m in b.named_modules()}:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _suggest_by_flow(model: nn.Module, leaves: set[str] | frozenset[str]) -> Suggestion:
    traced = graphs.trace(model, leaves)
    modules = dict(model.named_modules())
    if isinstance(traced, graphs.TraceFailure):
        return _suggest_by_order(
            model, [f"data flow unavailable ({traced.describe()}); groups follow module order, check them"]
        )
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
                problems.append(
                    GroupProblem(
                        group, n, f"is already in group {'+'.join(groups[seen[n]])}; a module can be in one group"
                    )
                )
            seen[n] = gi
        types = tuple(type(modules[n]) for n in group)
        if types not in PATTERNS:
            problems.append(
                GroupProblem(
                    group,
                    group[0],
                    f"makes {pattern_name(types)}, a pattern PyTorch cannot fuse; supported: {SUPPORTED_TEXT}",
                )
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
        raise FusionError(
            f"invalid fusion {problems[0]}{more}", "remove or edit that group, or use Suggest to start again"
        )


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
