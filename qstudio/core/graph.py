"""Data flow of a model, read with torch.fx, and what to say when tracing fails.

Fusion suggestions, eager-mode checks and FX error messages all need the same
thing: which module feeds which, and where in the user's source a given
operation is.  :func:`trace` gives a graph whose nodes carry their module path
and source line; :class:`TraceFailure` says which module and line stopped
tracing.
"""

from __future__ import annotations

import linecache
import os
import re
import traceback
from dataclasses import dataclass

import torch
from torch import fx, nn

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

    def describe(self) -> str:
        where = f"module '{self.module}' ({self.module_type})" if self.module else f"the model's own forward ({self.module_type})"
        at = f" at {self.source}" if self.source else ""
        return f"torch.fx cannot trace {where}{at}: {self.reason}"


class _Tracer(fx.Tracer):
    """An fx tracer that remembers the innermost module being traced when an error happens."""

    def __init__(self, leaves: set[str] = frozenset(), stack_traces: bool = False) -> None:  # type: ignore[assignment]
        super().__init__()
        # Source lines cost ~10x the trace time (and hold the GIL in C++ while capturing), so only on request.
        self.record_stack_traces = stack_traces
        self.leaves = set(leaves)
        self.failed_in: tuple[str, str] | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):  # type: ignore[override]
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self.path_of_module(m), type(m).__name__)
            raise


def trace(
    model: nn.Module, leaves: set[str] | frozenset[str] = frozenset(), *, stack_traces: bool = False
) -> fx.Graph | TraceFailure:
    """Trace ``model``; return its graph, or a :class:`TraceFailure` explaining why not.

    ``stack_traces`` records each node's source line (for messages that point at user code).
    """
    tracer = _Tracer(set(leaves), stack_traces)
    try:
        return tracer.trace(model)
    except Exception as exc:  # tracing user code can raise anything
        module, mtype = tracer.failed_in or ("", type(model).__name__)
        return TraceFailure(module, mtype, user_frame(exc), first_line(exc))


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
        found = SourceLine(m["file"], int(m["line"]), code or linecache.getline(m["file"], int(m["line"])).strip(), m["func"])
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
