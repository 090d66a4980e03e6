"""Data flow of a model, read with torch.fx, and what to say when tracing fails.

Fusion suggestions, eager-mode checks and FX error messages all need the same
thing: which module feeds which, and where in the user's source a given
operation is.  :func:`trace` gives a graph whose nodes carry their module path
and source line; :class:`TraceFailure` says which module and line stopped
tracing.
"""

from __future__ import annotations

import copy
import inspect
import linecache
import operator
import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.utils import _pytree as pytree

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


@dataclass
class SourceLine:
    file: str
    line: int
    code: str
    function: str

    def __str__(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line} `{self.code}`"


@dataclass
class TraceFailure:
    """Why symbolic tracing failed: the innermost module being traced and the user's source line."""

    module: str
    module_type: str
    source: SourceLine | None
    reason: str
    branches_on_values: bool = False  # an ``if`` on tensor values (not on shapes): a choice the model makes per input

    def describe(self) -> str:
        where = (
            f"module '{self.module}' ({self.module_type})"
            if self.module
            else f"the model's own forward ({self.module_type})"
        )
        at = f" at {self.source}" if self.source else ""
        return f"torch.fx cannot trace {where}{at}: {self.reason}"


class _Tracer(fx.Tracer):
    """An fx tracer that remembers the innermost module being traced when an error happens.

    ``constants`` specialises the root's forward to one way of calling it:
    each parameter named there (``*args`` / ``**kwargs`` with their stars)
    still gets a placeholder, so the traced module keeps the original
    signature and its callers need not change, but the code sees the given
    value instead of a proxy (``attention_mask=None`` takes the ``None``
    branch).  A ``**kwargs`` dict may hold tensors: each becomes a lookup in
    that placeholder.
    """

    def __init__(
        self,
        leaves: set[str] = frozenset(),
        stack_traces: bool = False,
        constants: Mapping[str, Any] | None = None,  # type: ignore[assignment]
    ) -> None:
        super().__init__()
        # Source lines cost ~10x the trace time (and hold the GIL in C++ while capturing), so only on request.
        self.record_stack_traces = stack_traces
        self.leaves = set(leaves)
        self.constants = dict(constants) if constants is not None else None
        self.failed_in: tuple[str, str] | None = None

    def trace(self, root, concrete_args=None):  # type: ignore[no-untyped-def, override]
        if isinstance(root, nn.Module):
            root = _plain_forward(root)
        graph = super().trace(root, concrete_args)
        info = getattr(graph._codegen, "pytree_info", None)
        if self.constants is not None and concrete_args is None and info is not None:
            # fx flattens the root's arguments as a pytree; a constant tuple or dict among them makes it
            # generate a signature that flattens them and return the outputs flattened, where the
            # placeholders (the original parameters) and the forward's own output structure are wanted
            output = next(n for n in reversed(graph.nodes) if n.op == "output")
            if info.out_spec is not None:
                output.args = (pytree.tree_unflatten(list(output.args[0]), info.out_spec),)
            graph.set_codegen(fx.graph.CodeGen())
        return graph

    def to_bool(self, obj: fx.Proxy) -> bool:
        try:
            return super().to_bool(obj)
        except Exception as exc:
            exc._qstudio_branches_on_values = _reads_values(obj.node)  # type: ignore[attr-defined]
            raise

    def _proxy_placeholder(self, name, concrete_args, sig, fn_for_analysis):  # type: ignore[no-untyped-def]
        proxy = super()._proxy_placeholder(name, concrete_args, sig, fn_for_analysis)
        if self.constants is None or name not in self.constants:
            return proxy
        value = self.constants[name]
        if name.startswith("**") and isinstance(value, dict):
            return {
                k: self.create_proxy("call_function", operator.getitem, (proxy, k), {})
                if isinstance(v, torch.Tensor)
                else v
                for k, v in value.items()
            }
        return value

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # a fused module (ConvReLU2d) is one layer, as for prepare_fx's tracer, though it is a Sequential
        return qualname in self.leaves or isinstance(m, _FusedModule) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):  # type: ignore[override]
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self.path_of_module(m), type(m).__name__)
            raise


def is_leaf(module: nn.Module) -> bool:
    """Whether tracing keeps ``module`` whole (torch.nn's own modules, fused ones), as prepare_fx's tracer does."""
    return _Tracer().is_leaf_module(module, "")


def decorated_forward(module: nn.Module) -> bool:
    """Whether fx can trace ``module`` as the root only through :func:`_plain_forward` (torch.ao's tracer cannot)."""
    return _plain_forward(module) is not module


def _plain_forward(module: nn.Module) -> nn.Module:
    """``module``, or a shallow copy whose forward fx can trace as the root.

    fx reads the parameters of a decorated forward (``functools.wraps``: HF's
    ``@deprecate_kwarg``) from the function inside, then rewrites the code
    of the wrapper outside to pass ``**kwargs`` and keyword-only arguments by
    position, which fails ("co_varnames is too small").  The copy's forward
    has the inner function's signature and calls the decorated one.
    """
    fn = type(module).forward
    inner = inspect.unwrap(fn)
    code = getattr(inner, "__code__", None)
    if (
        inner is fn
        or code is None
        or not (code.co_kwonlyargcount or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS))
    ):
        return module
    params = list(inspect.signature(inner).parameters.values())
    names: list[str] = []
    passed: list[str] = []
    defaults: list[Any] = []
    kwdefaults: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            passed.append(p.name)
            if p.default is not p.empty:
                defaults.append(p.default)
        elif p.kind is p.VAR_POSITIONAL:
            names.append("*" + p.name)
            passed.append("*" + p.name)
        elif p.kind is p.KEYWORD_ONLY:
            if not any(n.startswith("*") for n in names):
                names.append("*")
            names.append(p.name)
            passed.append(f"{p.name}={p.name}")
            if p.default is not p.empty:
                kwdefaults[p.name] = p.default
        else:
            names.append("**" + p.name)
            passed.append("**" + p.name)
    scope: dict[str, Any] = {"__decorated__": fn}
    exec(f"def forward({', '.join(names)}):\n    return __decorated__({', '.join(passed)})\n", scope)
    plain = scope["forward"]
    plain.__defaults__ = tuple(defaults) or None
    plain.__kwdefaults__ = kwdefaults or None
    plain.__qualname__ = getattr(inner, "__qualname__", "forward")
    try:
        cls = type(type(module).__name__, (type(module),), {"__module__": type(module).__module__})
        cls.forward = plain  # after creation: an __init_subclass__ may wrap the forward it is given (transformers does)
        twin = copy.copy(module)
        twin.__class__ = cls
    except Exception:  # a class that refuses to be subclassed: fx's own error says why
        return module
    return twin


def trace(
    model: nn.Module,
    leaves: set[str] | frozenset[str] = frozenset(),
    *,
    stack_traces: bool = False,
    constants: Mapping[str, Any] | None = None,
) -> fx.Graph | TraceFailure:
    """Trace ``model``; return its graph, or a :class:`TraceFailure` explaining why not.

    ``stack_traces`` records each node's source line (for messages that point at user code);
    ``constants`` fixes the non-tensor arguments of the root's forward (see :class:`_Tracer`).
    """
    tracer = _Tracer(set(leaves), stack_traces, constants)
    try:
        return tracer.trace(model)
    except Exception as exc:  # tracing user code can raise anything
        module, mtype = tracer.failed_in or ("", type(model).__name__)
        return TraceFailure(
            module, mtype, user_frame(exc), first_line(exc), getattr(exc, "_qstudio_branches_on_values", False)
        )


#: What a value computed only from these says about a tensor: its shape and kind, not its values.
_SHAPE_ATTRS = frozenset({"shape", "ndim", "dtype", "device", "layout", "is_cuda", "is_quantized", "requires_grad"})
_SHAPE_METHODS = frozenset({"size", "dim", "ndimension", "numel", "nelement", "element_size", "get_device", "type"})


def _reads_values(node: fx.Node) -> bool:
    """Whether ``node`` depends on tensor values, not only on shapes (``x.mean() > 0`` vs ``x.shape[-1] != w``)."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_function" and n.target is getattr and len(n.args) > 1 and n.args[1] in _SHAPE_ATTRS:
            continue
        if n.op == "call_method" and n.target in _SHAPE_METHODS:
            continue
        if n.op in ("placeholder", "get_attr", "call_module"):
            return True
        stack.extend(n.all_input_nodes)
    return False


@dataclass
class BlackBoxes:
    """What :func:`find_black_boxes` found.

    ``graph`` is the trace with the ``leaves`` kept whole (None when the root
    itself cannot be traced); ``boxes`` says why each module added to them
    could not be traced, in the order found; ``root`` why the model's own
    forward cannot be (then ``graph`` is None).
    """

    graph: fx.Graph | None
    leaves: set[str]
    boxes: list[TraceFailure] = field(default_factory=list)
    root: TraceFailure | None = None


def find_black_boxes(
    model: nn.Module,
    leaves: set[str] | frozenset[str] = frozenset(),
    *,
    constants: Mapping[str, Any] | None = None,
    limit: int = 200,
) -> BlackBoxes:
    """The smallest set of submodules to keep whole (untraced) so the rest of ``model`` traces.

    Each failed trace names the innermost module whose forward stopped it;
    that module joins the leaves and tracing starts again, so every box is a
    module that cannot be traced itself, never its parent.  It stops when the
    trace goes through, or when the failure sits in the root's own forward
    (``root``), which no box can fix.
    """
    found = set(leaves)
    boxes: list[TraceFailure] = []
    for _ in range(limit):
        traced = trace(model, found, constants=constants)
        if not isinstance(traced, TraceFailure):
            return BlackBoxes(traced, found, boxes)
        if not traced.module or traced.module in found:  # the root's own code (or a leaf's call that cannot be boxed)
            return BlackBoxes(None, found, boxes, traced)
        found.add(traced.module)
        boxes.append(traced)
    return BlackBoxes(
        None, found, boxes, TraceFailure("", type(model).__name__, None, f"more than {limit} parts cannot be traced")
    )


def user_frame(exc: BaseException) -> SourceLine | None:
    """The deepest traceback frame outside torch itself: the line of the user's model."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if _is_internal(fr.filename):
            continue
        code = (fr.line or linecache.getline(fr.filename, fr.lineno or 0)).strip()
        return SourceLine(fr.filename, fr.lineno or 0, code, fr.name)
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if len(line) > 160 and ". " in line[40:]:
        line = line[: line.index(". ", 40) + 1]  # torch's dispatcher errors go on for paragraphs
    return line[:300]


def node_source(node: fx.Node) -> SourceLine | None:
    """The user's source line for an fx node, from its recorded stack trace."""
    st = node.stack_trace
    if not st:
        return None
    found = None
    lines = st.splitlines()
    for i, raw in enumerate(lines):
        m = _FRAME.match(raw.strip())
        if not m or _is_internal(m["file"]):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) else ""
        found = SourceLine(
            m["file"], int(m["line"]), code or linecache.getline(m["file"], int(m["line"])).strip(), m["func"]
        )
    return found


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def _is_internal(filename: str) -> bool:
    own_dir = os.path.dirname(os.path.dirname(__file__)) + os.sep
    return filename.startswith((_TORCH_DIR, own_dir, "<"))


def node_module(node: fx.Node) -> str:
    """Qualified name of the innermost module whose forward produced ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    last = list(stack.values())[-1]
    path = last[0] if isinstance(last, tuple) else str(last)
    return path
