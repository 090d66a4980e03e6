"""TorchScript: the conversion qstudio benchmarks and exports, and the honest FP32 baseline.

* :func:`to_torchscript` — trace (or script) and freeze a model: the INT8
  model that is timed and exported;
* :func:`freeze_fp32` — the FP32 baseline path (trace + freeze +
  ``optimize_for_inference``), kept only when it reproduces eager;
* :func:`output_max_abs_diff` — how far two models' outputs (any nesting) differ.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from qstudio.core.benchmark import eval_mode
from qstudio.core.errors import ExportError

log = logging.getLogger(__name__)

#: model classes already warned about using a trace where scripting failed
_SAID_TRACE_ONLY: set[str] = set()

# The FP32 TorchScript baseline must reproduce the eager output within this
# (on the example input, relative to the output's largest magnitude when that
# exceeds 1: float32 reassociation in folded/fused kernels scales with it);
# optimize_for_inference likewise, or we keep the plain frozen module.
# resnet50's random-weight logits reach ~90, where a 1.2e-4 difference is
# 1.4e-6 relative: an absolute 1e-4 wrongly rejected the faster baseline.
_FP32_ATOL = 1e-4


def _example_tuple(example: Any) -> tuple[Any, ...]:
    return example if isinstance(example, tuple) else (example,)


def _trace(model: nn.Module, example: Any) -> torch.jit.ScriptModule:
    """``torch.jit.trace``; again with ``strict=False`` when the output is a dict (a transformers ModelOutput).

    A strict trace refuses dict and list outputs because their structure could
    change with the input; a model output's keys are fixed for a given
    configuration, so the non-strict trace is right (and verified by callers).
    """
    try:
        # check_trace re-traces and compares graphs, tripling the cost (seconds
        # for resnet18); callers verify outputs themselves instead.
        return torch.jit.trace(model, _example_tuple(example), check_trace=False)
    except RuntimeError as exc:
        if "strict=False" not in str(exc):
            raise
        log.info("tracing %s strictly failed on its output container; tracing with strict=False", type(model).__name__)
        return torch.jit.trace(model, _example_tuple(example), check_trace=False, strict=False)


#: How a model becomes TorchScript: ``auto`` traces and scripts when tracing fails or is unsafe;
#: ``trace`` and ``script`` use that one way only.
EXPORT_METHODS = ("auto", "trace", "script")


def _script(model: nn.Module) -> torch.jit.ScriptModule:
    try:
        with eval_mode(model):
            return torch.jit.script(model)
    except Exception as exc:
        raise ExportError(
            f"could not script {type(model).__name__} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
            "use the trace instead (export method auto or trace)",
        ) from exc


def _trace_or_script(model: nn.Module, example: Any, method: str = "auto") -> tuple[torch.jit.ScriptModule, str]:
    """Trace ``model`` (eval mode, no grad); script it when tracing fails or is unsafe.

    ``method`` (:data:`EXPORT_METHODS`) forces one way: ``"script"`` only
    scripts, ``"trace"`` keeps the trace even where the model branches on
    tensor values (or raises :class:`ExportError` when tracing fails).

    Tracing is preferred because it handles far more Python (FX GraphModules,
    torchvision models) and gives freeze a flat graph.  But a trace records one
    path through data-dependent control flow.  When the tracer warns that a
    tensor became a Python *boolean* (an ``if``/``while`` on data) we try
    scripting, which keeps the control flow, and keep the trace only if
    scripting is impossible.  Tensor-to-float/int warnings do not count: FX
    quantized models raise them for every stored scale and zero point, which
    are constants, so the trace is right.
    """
    if method not in EXPORT_METHODS:
        raise ExportError(f"unknown export method {method!r}", f"use one of {', '.join(EXPORT_METHODS)}")
    if method == "script":
        return _script(model), "scripted"
    trace_error: Exception | None = None
    traced: torch.jit.ScriptModule | None = None
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            traced = _trace(model, example)
        except Exception as exc:  # tracing fails for many reasons (dict outputs, non-tensor args...)
            trace_error = exc
            log.info("tracing %s failed (%s); trying torch.jit.script", type(model).__name__, exc)
    for w in caught:  # recorded so TracerWarnings can steer us; keep them visible in the log
        log.debug("while tracing: %s: %s", w.category.__name__, w.message)
    control_flow = [
        w for w in caught if issubclass(w.category, torch.jit.TracerWarning) and "Python boolean" in str(w.message)
    ]
    if traced is not None and (not control_flow or method == "trace"):
        return traced, "traced"
    if method == "trace":
        raise ExportError(
            f"could not trace {type(model).__name__} ({_first_line(trace_error)})",
            "use scripting instead (export method auto or script)",
        ) from trace_error
    try:
        with eval_mode(model):
            scripted = torch.jit.script(model)
    except Exception as exc:
        if traced is not None:
            said = type(model).__qualname__ in _SAID_TRACE_ONLY
            _SAID_TRACE_ONLY.add(type(model).__qualname__)  # once per process: a search converts the model per trial
            (log.info if said else log.warning)(
                "%s branches on tensor values (%s) and scripting failed (%s); using the trace, "
                "which is only valid for inputs that take the same path",
                type(model).__name__,
                control_flow[0].message,
                str(exc).splitlines()[0] if str(exc) else exc,
            )
            return traced, "traced"
        raise ExportError(
            f"could not convert {type(model).__name__} to TorchScript: tracing failed ({trace_error}) "
            f"and scripting failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
            "make forward() take and return tensors (or tuples/dicts of tensors) without Python-only logic",
        ) from exc
    return scripted, "scripted"


def _freeze(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freeze a converted module: inline weights and attributes as constants.

    Freezing lets the JIT fold conv+bn, drop attribute look-ups and (for
    quantized models) pre-pack weights once; it requires eval mode.
    """
    module.eval()
    try:
        return torch.jit.freeze(module)
    except Exception as exc:  # freezing is an optimisation; a working unfrozen module beats an error
        log.warning("torch.jit.freeze failed (%s); keeping the unfrozen module", exc)
        return module


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def to_torchscript(model: nn.Module, example: Any, method: str = "auto") -> tuple[torch.jit.ScriptModule, str]:
    """Convert a (typically quantized) model to a frozen TorchScript module.

    Returns ``(module, "traced" | "scripted")``.  Measured on an FX INT8
    resnet18 (x86 backend, batch 1, 1 thread, AMD EPYC with AVX512-VNNI) the
    frozen trace runs in ~10 ms against ~12 ms for the eager GraphModule
    (15-25% faster: the per-node Python dispatch goes away and weights are
    constants), and its outputs are bit-identical, so we always freeze.  Raises :class:`ExportError` when the model can
    neither be traced nor scripted (or not the one way ``method`` asks for).
    """
    module, used = _trace_or_script(model, example, method)
    return _freeze(module), used


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_quantized:
        a = a.dequantize()
    if b.is_quantized:
        b = b.dequantize()
    if a.shape != b.shape:
        return float("inf")
    if not a.is_floating_point():
        return 0.0 if torch.equal(a, b) else float("inf")
    diff = (a.double() - b.double()).abs()
    both_nan = torch.isnan(a) & torch.isnan(b)
    diff = torch.where(both_nan, torch.zeros_like(diff), diff)
    diff = torch.nan_to_num(diff, nan=float("inf"))
    return float(diff.max()) if diff.numel() else 0.0


def output_max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two model outputs of the same structure.

    Handles tensors, (named)tuples/lists and dicts of them; a structural
    mismatch counts as ``inf`` so a caller's tolerance check fails loudly.
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return _max_abs_diff(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return float("inf")
        return max((output_max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return float("inf")
        return max((output_max_abs_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return float("inf")
    try:
        return 0.0 if bool(a == b) else float("inf")
    except Exception:  # objects without a usable ==
        return float("inf")


def _largest_magnitude(output: Any) -> float:
    """Largest finite absolute value among the floating-point tensors in a model output."""
    if isinstance(output, torch.Tensor):
        if output.is_quantized:
            output = output.dequantize()
        if not output.is_floating_point() or not output.numel():
            return 0.0
        finite = output[torch.isfinite(output)]
        return float(finite.abs().max()) if finite.numel() else 0.0
    if isinstance(output, (tuple, list)):
        return max((_largest_magnitude(o) for o in output), default=0.0)
    if isinstance(output, dict):
        return max((_largest_magnitude(o) for o in output.values()), default=0.0)
    return 0.0


def freeze_fp32(model: nn.Module, example: torch.Tensor, *, optimize: bool = True) -> torch.jit.ScriptModule:
    """The FP32 baseline INT8 is compared against: trace (or script) + freeze + optimize_for_inference.

    Comparing INT8 with eager FP32 flatters quantization, so the baseline is
    the fastest FP32 deployment path we can build without extra dependencies.
    Measured on resnet18, batch 1, AMD EPYC (AVX512) with torch 2.14, medians
    of interleaved rounds, 1 thread: eager ~58 ms, traced ~54, frozen ~53,
    frozen + ``torch.jit.optimize_for_inference`` ~45 (it moves convolutions
    to oneDNN/MKLDNN layout and fuses conv+relu); 2 threads: 30 / 30 / 27 /
    23.5 ms.  channels_last helps eager (~10%) but adds nothing reliable once
    optimize_for_inference is applied (±5%, within noise) and would make
    callers convert inputs, so the default is ``optimize=True`` in NCHW.  Its output is
    checked against the eager model on ``example``; if it differs by more
    than 1e-4 (relative, for outputs above 1) or fails, the plain frozen module is returned instead.

    The result is for measuring in this process, not for saving: after
    optimize_for_inference the weights are MKLDNN constants, which
    ``torch.jit.save`` drops (the file reloads with an error and
    :func:`model_size_mb` reports ~2 MB for resnet18).  Export uses
    :func:`to_torchscript`; measure size on the eager model.  Raises
    :class:`ExportError` when even the plain frozen copy does not reproduce the
    model's output within 1e-4, because a wrong baseline is worse than none.
    """
    module, method = _trace_or_script(model, example)
    args = _example_tuple(example)
    with eval_mode(model), torch.no_grad():
        reference = model(*args)
    tolerance = _FP32_ATOL * max(1.0, _largest_magnitude(reference))
    frozen = _freeze(module)
    with torch.no_grad():
        diff = output_max_abs_diff(reference, frozen(*args))
    if not diff <= tolerance:
        raise ExportError(
            f"the {method} TorchScript copy of {type(model).__name__} differs from the model by {diff:.3g}",
            "make forward() deterministic in eval mode, without data-dependent Python control flow",
        )
    if not optimize:
        return frozen
    try:
        # optimize_for_inference rewrites its argument in place, so give it its own frozen copy.
        optimized = torch.jit.optimize_for_inference(_freeze(module))
        with torch.no_grad():
            diff = output_max_abs_diff(reference, optimized(*args))
    except Exception as exc:  # an optional speed-up must never break the baseline
        log.warning("torch.jit.optimize_for_inference failed (%s); using the frozen module", exc)
        return frozen
    if not diff <= tolerance:
        log.warning("optimize_for_inference changed outputs by %.3g (> %g); using the frozen module", diff, tolerance)
        return frozen
    log.debug("FP32 baseline: %s + frozen + optimize_for_inference (max abs diff %.3g)", method, diff)
    return optimized
