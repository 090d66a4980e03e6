"""Where an INT8 model's time goes: the per-operator profile behind a slowdown verdict.

:func:`profile_ops` runs the INT8 model under ``torch.profiler`` and sorts
each operator's self CPU time into :data:`QDQ` (converting between INT8 and
float), :data:`FLOAT` (ops still running in float), :data:`LAYOUT` (layout
copies), :data:`INT8` (INT8 kernels) and :data:`OTHER`;
:func:`float_op_modules` names the modules and blocks where float ops run
between INT8 ones.  :func:`qstudio.core.verdicts.slowdown` reads both to say
why INT8 is slower than FP32 and what to keep in float.

Qt-free; nothing here changes a model.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qstudio.core.benchmark import call_model, eval_mode
from qstudio.core.compare import is_quantized_module
from qstudio.core.native_output import native_streams_captured

if TYPE_CHECKING:
    from qstudio.core.flows import QuantizedModel

#: Forward passes profiled for the cause of a slowdown (after two untimed ones).
PROFILE_RUNS = 5


# -- the profile behind a slowdown ------------------------------------------------------------
QDQ, FLOAT, LAYOUT, INT8, OTHER = "quantize/dequantize", "float ops", "layout copies", "INT8 kernels", "other"
_LAYOUT_OPS = {
    "aten::contiguous",
    "aten::permute",
    "aten::transpose",
    "aten::clone",
    "aten::copy_",
    "aten::_to_copy",
    "aten::to",
    "aten::reshape",
    "aten::t",
    "aten::expand",
    "aten::repeat",
    "aten::as_strided",
    "aten::view",
    "aten::flatten",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::select",
    "aten::slice",
    "aten::narrow",
    "aten::chunk",
    "aten::split",
    "aten::unbind",
    "aten::_reshape_alias",
    "aten::channel_shuffle",
    "aten::pixel_shuffle",
    "aten::contiguous_format",
}
_BOOKKEEPING_OPS = {
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::_empty_affine_quantized",
    "aten::_empty_per_channel_affine_quantized",
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::q_scale",
    "aten::q_zero_point",
    "aten::qscheme",
    "aten::resize_",
    "aten::size",
    "aten::zeros",
    "aten::fill_",
    "aten::zero_",
    "aten::detach",
    "aten::lift_fresh",
    "aten::scalar_tensor",
}
_FLOAT_DTYPES = ("float", "double", "c10::Half", "c10::BFloat16")


def op_category(name: str, input_dtypes: Sequence[str] = ()) -> str:
    """Which of :data:`QDQ`, :data:`LAYOUT`, :data:`INT8`, :data:`FLOAT`, :data:`OTHER` a profiled op belongs to."""
    if "quantize_per" in name or name.endswith("::dequantize") or "choose_qparams" in name:
        return QDQ
    if name in _LAYOUT_OPS:
        return LAYOUT
    if (
        name.startswith(("quantized::", "_quantized::", "aten::quantized_", "aten::q_"))
        and name not in _BOOKKEEPING_OPS
    ):
        return INT8
    if name in _BOOKKEEPING_OPS or not name.startswith("aten::"):
        return OTHER  # allocation and scale look-ups, the TorchScript interpreter ("forward"), Python frames
    dtypes = [d for d in input_dtypes if d]
    if any(d.startswith(("c10::quint", "c10::qint")) for d in dtypes):
        return INT8  # an aten op dispatched to its quantized kernel (relu, pooling on quint8)
    if any(d in _FLOAT_DTYPES for d in dtypes):
        return FLOAT
    return OTHER


@dataclass
class OpProfile:
    """Where an INT8 model's time goes: share per category, the costliest ops, and the float ops' owners."""

    batch_size: int
    shares: dict[str, float]  # category -> share of the profiled self CPU time (sums to 1)
    top_ops: list[tuple[str, str, float]]  # (op, category, share), costliest first
    float_modules: list[str] = field(default_factory=list)  # where float ops run between INT8 ones: "layer1.0 (add)"
    float_blocks: list[str] = field(default_factory=list)  # the blocks holding them: what --skip would keep in float

    def describe(self) -> str:
        parts = [
            f"{self.shares.get(c, 0.0):.0%} {c}" for c in (QDQ, FLOAT, LAYOUT, INT8) if self.shares.get(c, 0.0) >= 0.005
        ]
        ops = ", ".join(f"{op.split('::')[-1]} {share:.0%}" for op, _c, share in self.top_ops[:3])
        return f"{', '.join(parts) or 'no op stands out'} of its time (costliest: {ops})"


def profile_ops(model: Callable[..., Any], example: Any, *, runs: int = PROFILE_RUNS, batch_size: int = 1) -> OpProfile:
    """Self CPU time per operator over ``runs`` forward passes of ``model`` (two untimed first), by category."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(2):
            call_model(model, example)
        chatter = io.StringIO()  # kineto's profiler_start/stop lines, printed from C++ (see native_output)
        with native_streams_captured(chatter), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(runs):
                call_model(model, example)
    by_cat: Counter[str] = Counter()
    by_op: Counter[tuple[str, str]] = Counter()
    for event in prof.events():
        t = float(event.self_cpu_time_total)
        if t <= 0:
            continue
        cat = op_category(event.name, event.input_dtypes or ())
        by_cat[cat] += t
        by_op[(event.name, cat)] += t
    total = sum(by_cat.values()) or 1.0
    shares = {c: t / total for c, t in by_cat.items()}
    top = [(op, cat, t / total) for (op, cat), t in by_op.most_common(8)]
    return OpProfile(batch_size, shares, top)


# -- which modules run float ops between INT8 ones ------------------------------------------------
_NOT_COMPUTE = (nn.Identity, nn.Dropout, nn.Flatten, nn.Unflatten)
_TRIVIAL_TARGETS = {
    "size",
    "dim",
    "view",
    "reshape",
    "flatten",
    "getitem",
    "getattr",
    "dequantize",
    "shape",
    "numel",
    "contiguous",
    "to",
    "type",
}


def _target_name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _is_float(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not value.is_quantized
    if isinstance(value, (list, tuple)):
        return any(_is_float(v) for v in value)
    if isinstance(value, dict):
        return any(_is_float(v) for v in value.values())
    return False


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def float_op_modules(q: QuantizedModel, example: Any) -> list[tuple[str, str, str]]:
    """``(block, module, op)`` for every op of ``q.module`` that computes on float inputs, in model order.

    An FX GraphModule is run node by node (``torch.fx.Interpreter``): a node
    whose inputs hold a float tensor is a float op.  A float leaf module is
    named by itself (``module``) and its parent (``block``); a function by the
    module whose forward calls it (both; ``""`` for the model's own forward).
    Other models (eager mode) are watched with forward hooks on their leaf
    modules.  Dynamic quantization is left out: its layers take float inputs
    by design.  Names are the user's (see :meth:`QuantizedModel.user_name`).
    """
    if not q.traits.static_activations:
        return []
    found: list[tuple[str, str]] = []
    graph_modules = [(n, m) for n, m in q.module.named_modules() if isinstance(m, torch.fx.GraphModule)]
    if graph_modules:
        prefix, gm = graph_modules[0]
        modules = dict(gm.named_modules())

        class Watch(torch.fx.Interpreter):
            def run_node(self, node: torch.fx.Node) -> Any:
                args, kwargs = self.fetch_args_kwargs_from_env(node)
                if node.op in ("call_function", "call_method", "call_module") and _is_float((args, kwargs)):
                    target = _target_name(node.target)
                    sub = modules.get(node.target) if node.op == "call_module" else None
                    if node.op == "call_module":
                        if sub is not None and not isinstance(sub, _NOT_COMPUTE) and not is_quantized_module(sub):
                            name = f"{prefix}.{target}" if prefix else target
                            found.append((_parent(name), name, type(sub).__name__))
                    elif target not in _TRIVIAL_TARGETS and "quantize" not in target:
                        stack = node.meta.get("nn_module_stack") or {}
                        owner = next(reversed(stack), "") if stack else ""
                        owner = f"{prefix}.{owner}" if prefix and owner else (owner or prefix)
                        found.append((owner, owner, target))
                return super().run_node(node)

        with eval_mode(gm), torch.no_grad():
            Watch(gm).run(*(example if isinstance(example, tuple) else (example,)))
    else:
        handles = []
        for name, module in q.module.named_modules():
            if list(module.children()) or is_quantized_module(module) or isinstance(module, _NOT_COMPUTE):
                continue
            if type(module).__name__ in ("QuantStub", "DeQuantStub", "Quantize", "DeQuantize"):
                continue

            def hook(_m: nn.Module, inputs: Any, _out: Any, name: str = name) -> None:
                if _is_float(inputs):
                    found.append((_parent(name), name, type(_m).__name__))

            handles.append(module.register_forward_hook(hook))
        try:
            with eval_mode(q.module), torch.no_grad():
                call_model(q.module, example)
        finally:
            for h in handles:
                h.remove()
    seen: dict[tuple[str, str, str], None] = {}
    for block, name, op in found:
        seen[(q.user_name(block) if block else "", q.user_name(name) if name else "", op)] = None
    return list(seen)
