"""Honest verdicts on a run: the figures that must not be read as results without a word.

A :class:`~qstudio.core.run_result.RunResult` holds numbers; some of them
describe a failure rather than a result.  This module says so, as typed
:class:`Verdict` objects (severity, code, text) that the pipeline appends to
the run's warnings, so the CLI, the JSON, the HTML report and the window all
show them:

* ``slowdown`` - INT8 is slower than FP32 eager or than the fastest FP32 path
  measured; the cause comes from a per-operator profile of the INT8 model
  (share of time converting between INT8 and float, in ops still running in
  float, in layout copies: :mod:`qstudio.core.int8_profile`) and the remedy
  names the blocks to keep in float or another backend;
* ``collapse`` - INT8 outputs far from FP32 (cosine, agreement), or FP32
  outputs themselves near zero (untrained BatchNorm statistics), naming the
  first layer whose SQNR falls below :data:`LAYER_SQNR_DB`;
* ``agreement-resolution`` - the data cannot resolve top-1 agreement: FP32
  gives every sample the same answer, or its answers are near-ties that any
  change in arithmetic flips (:data:`~qstudio.core.compare.TIE_MARGIN`);
* ``unreliable-timing`` - the benchmark measured twice and its figures were
  still unstable (see :func:`~qstudio.core.stability.check_timing`);
* ``export-failed`` - the run was kept but its export failed.

Qt-free; nothing here changes a model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from qstudio.core.benchmark import LatencyStat
from qstudio.core.compare import TIE_MARGIN
from qstudio.core.flows import mode_traits
from qstudio.core.formatting import fmt_db
from qstudio.core.int8_profile import (
    FLOAT,
    INT8,
    LAYOUT,
    OTHER,
    PROFILE_RUNS,
    QDQ,
    OpProfile,
    float_op_modules,
    op_category,
    profile_ops,
)
from qstudio.core.run_result import RunResult, Verdict  # Verdict is defined with the run's record, which holds them

log = logging.getLogger(__name__)

#: The engine's words for the two data notices: the pipeline records them in ``warnings``, the summary types them.
RANDOM_DATA_TEXT = "RANDOM DATA was used: accuracy, agreement and per-layer figures do not describe real inputs."
NO_EVAL_DATA_TEXT = "No evaluation data was given: agreement is measured on the calibration data."

#: Severities, loudest first.  ``critical`` verdicts are shown in red and bold everywhere.
CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)

#: Below this cosine to FP32 the INT8 outputs are not the model's any more.
COLLAPSE_COSINE = 0.9
#: Below this top-1 agreement (where chance agreement is at most :data:`CHANCE_LIMIT`) INT8 predicts something else.
COLLAPSE_AGREEMENT = 0.5
CHANCE_LIMIT = 0.25
#: FP32 outputs whose largest magnitude is below this are no signal: an untrained (random BatchNorm) model.
NEAR_ZERO = 1e-6
#: The layer named as where a collapse starts: the first (in model order) below this activation SQNR.
LAYER_SQNR_DB = 15.0


# -- the verdicts -------------------------------------------------------------------------------
def _by_batch(stats: Sequence[LatencyStat]) -> dict[int, LatencyStat]:
    return {s.batch_size: s for s in stats}


def _slow_batches(result: RunResult) -> list[tuple[int, float, list[tuple[str, float]]]]:
    """``(batch, int8 ms, [(baseline, ms) INT8 is slower than])`` for each batch size INT8 lost at."""
    eager, deploy = _by_batch(result.fp32.latency), _by_batch(result.fp32_deploy)
    out = []
    for s in sorted(result.int8.latency, key=lambda s: s.batch_size):
        lost = [
            (label, base[s.batch_size].median_ms)
            for label, base in (("FP32 eager", eager), ("frozen TorchScript FP32", deploy))
            if s.batch_size in base and s.median_ms > base[s.batch_size].median_ms > 0
        ]
        if lost:
            out.append((s.batch_size, s.median_ms, lost))
    return out


def _names(names: Sequence[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def _other_backend(result: RunResult) -> str:
    backend = result.recipe.settings.backend
    return "onednn" if backend in ("x86", "fbgemm") else "x86"


def slowdown(
    result: RunResult,
    int8_model: Callable[..., Any] | None = None,
    make_input: Callable[[int], Any] | None = None,
) -> list[Verdict]:
    """A loud verdict when INT8's median latency is above FP32 eager's or the fastest FP32 path's."""
    slow = _slow_batches(result)
    if not slow:
        return []
    worst_batch = max(slow, key=lambda t: t[1] / min(ms for _l, ms in t[2]))[0]
    figures = "; ".join(
        f"batch {b}: INT8 {ms:.3g} ms vs "
        + ", ".join(f"{label} {base:.3g} ms ({ms / base:.2f}x as long)" for label, base in lost)
        for b, ms, lost in slow
    )
    text = f"INT8 IS SLOWER THAN FP32 on this machine ({figures})."
    profile = None
    if int8_model is not None:
        try:
            example = make_input(worst_batch) if make_input is not None else result.example
            profile = profile_ops(int8_model, example, batch_size=worst_batch)
            if result.quantized is not None:
                found = float_op_modules(result.quantized, result.example)
                profile.float_modules = [f"{name or 'forward()'} ({op})" for _block, name, op in found]
                profile.float_blocks = list(dict.fromkeys(block for block, _name, _op in found if block))
        except Exception as exc:  # a profile is an explanation; its failure must not lose the run
            log.warning("profiling the INT8 model failed: %s", exc)
            profile = None
    text += " " + _cause_and_remedy(result, profile, worst_batch)
    return [Verdict(CRITICAL, "slowdown", text)]


#: FP32 faster than this per call (ms): fixed per-call costs of INT8 (quantize, dequantize, kernel set-up) dominate,
#: whatever a profile of so short a call says (its shares swing with machine load)
TINY_MS = 0.05


def _tiny(result: RunResult, batch: int) -> bool:
    fp32 = [s.median_ms for s in [*result.fp32.latency, *result.fp32_deploy] if s.batch_size == batch]
    return bool(fp32) and min(fp32) < TINY_MS


def _cause_and_remedy(result: RunResult, profile: OpProfile | None, batch: int) -> str:
    """The profile's reading of a slowdown, then what to do about it, chosen by where the time goes."""
    other = _other_backend(result)
    cov = result.coverage
    if profile is None:
        return (
            "Cause unknown (the INT8 model could not be profiled). "
            f"Try another backend (--backend {other}), or keep the model in FP32."
        )
    s = profile.shares
    qdq, flt, layout, int8 = (s.get(c, 0.0) for c in (QDQ, FLOAT, LAYOUT, INT8))
    cause = f"Cause: a profile of the INT8 model at batch {batch} puts {profile.describe()}."
    floats, blocks = profile.float_modules, profile.float_blocks
    keep = (
        f"Keep those blocks in float (--skip {' '.join(blocks[:5])}) so fewer conversions remain"
        if blocks
        else "They sit in the model's own forward(), outside any block --skip could keep in float: "
        "write them as modules (nn.ReLU rather than torch.relu) so they can be fused or quantized, keep the model in FP32"
    )
    float_ops = [op.split("::")[-1] for op, cat, _share in profile.top_ops if cat == FLOAT][:3]
    mostly_float = (
        f"Most of the time goes to ops that stay in float ({', '.join(float_ops) or 'float ops'}); INT8 only "
        f"speeds up the {int8:.0%} in INT8 kernels, and the FP32 baseline runs the rest as fast or faster. "
    )
    if not mode_traits(result.recipe.mode).static_activations:  # INT8 time includes quantizing the input
        if flt >= max(int8 + qdq, layout):
            remedy = (
                mostly_float + "Use static quantization (--mode fx) to quantize more of the model, or keep it in FP32."
            )
        else:
            remedy = (
                "Dynamic quantization converts every Linear input to INT8 on each call (inside the INT8 kernels); at "
                "these sizes that costs more than the INT8 arithmetic saves. Keep the small layers in float (--skip), "
                "benchmark a larger batch, or use static quantization (--mode fx)."
            )
    elif _tiny(result, batch) and not floats:
        remedy = (
            "The model does too little arithmetic for INT8 to pay: FP32 needs under "
            f"{TINY_MS * 1000:.0f} µs per call, less than converting its input to INT8 and its output back "
            "(quantize/dequantize) plus the INT8 kernels' fixed cost per call. Keep it in FP32, or benchmark a larger "
            "batch size."
        )
    elif qdq >= max(flt, layout, int8, 0.2) or (flt >= max(layout, int8) and floats):
        if floats:
            remedy = (
                f"Ops run in float between INT8 layers in {_names(floats)}, each needing a dequantize before and a "
                f"quantize after. {keep}, or try another backend (--backend {other})."
            )
        else:
            remedy = (
                "The model does too little arithmetic for INT8 to pay: converting its input to INT8 and its output back "
                "costs more than the INT8 kernels save. Keep it in FP32, or benchmark a larger batch size."
            )
    elif flt >= max(layout, int8):
        remedy = mostly_float + "Quantize more of the model (check coverage and the skip list) or keep it in FP32."
    elif layout >= int8:
        remedy = (
            "Layout copies (permute/contiguous) between INT8 kernels carry the time: the kernels want another memory "
            f"layout. Try another backend (--backend {other})."
        )
    else:
        remedy = (
            "The INT8 kernels themselves are slower than FP32's here: this CPU may lack fast INT8 instructions "
            f"(VNNI/AMX, see the environment). Try another backend (--backend {other}) or keep the model in FP32."
        )
    if cov.float_layers and len(cov.quantized_layers) < len(cov.float_layers):
        remedy += (
            f" Note that most weighted layers stay in float ({_names(cov.float_layers)}): they gain nothing from INT8."
        )
    return f"{cause} {remedy}"


def _initial_batchnorms(model: nn.Module | None) -> int:
    """BatchNorm layers still holding their initial statistics (mean 0, variance 1): never trained."""
    if model is None:
        return 0
    return sum(
        1
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.running_mean is not None
        and m.running_var is not None
        and bool((m.running_mean == 0).all())
        and bool((m.running_var == 1).all())
    )


def first_bad_layer(result: RunResult, limit_db: float = LAYER_SQNR_DB) -> str | None:
    """The first layer, in model order, whose activation (else weight) SQNR is below ``limit_db``: 'name (type, x dB)'."""
    order = {name: i for i, name in enumerate(result.coverage.quantized_layers)}
    bad = [e for e in result.layers if e.worst_db() < limit_db]
    if not bad:
        return None
    first = min(bad, key=lambda e: order.get(e.name, math.inf))
    return f"{first.name} ({first.type}, {fmt_db(first.worst_db())} dB)"


def collapse(result: RunResult, fp32_model: nn.Module | None = None) -> list[Verdict]:
    """A loud verdict when INT8's outputs are far from FP32's, or FP32's own outputs are near zero."""
    ev = result.evaluation
    chance = 1 / ev.classes if ev.classes else None
    where = first_bad_layer(result)
    start = (
        f" The first layer below {LAYER_SQNR_DB:g} dB SQNR is {where}: the error starts there."
        if where
        else f" No layer falls below {LAYER_SQNR_DB:g} dB SQNR: the error builds up over the model or in ops between its layers."
    )
    if ev.fp32_max_abs is not None and ev.fp32_max_abs < NEAR_ZERO:
        bns = _initial_batchnorms(fp32_model)
        why = (
            f" {bns} BatchNorm layers still hold their initial statistics (mean 0, variance 1): the model was never "
            "trained or its trained weights were not loaded."
            if bns
            else " The model looks untrained (random weights, or BatchNorm statistics that were never set)."
        )
        text = (
            f"FP32 OUTPUTS ARE NEAR ZERO: the float model's largest output is {ev.fp32_max_abs:.2g} (below {NEAR_ZERO:g}), "
            f"so cosine {ev.cosine:.4f} and agreement {ev.agreement:.0%} compare noise, not the model.{why} "
            "Load trained weights; for a random-weight trial, run a few batches in train mode first so BatchNorm "
            f"has realistic statistics.{start}"
        )
        return [Verdict(CRITICAL, "collapse", text)]
    reasons = []
    if ev.cosine < COLLAPSE_COSINE:
        reasons.append(f"cosine to FP32 {ev.cosine:.4f} (below {COLLAPSE_COSINE:g})")
    if ev.agreement < COLLAPSE_AGREEMENT and chance is not None and chance <= CHANCE_LIMIT:
        reasons.append(f"top-1 agreement {ev.agreement:.0%} (chance is {chance:.0%})")
    if not reasons:
        return []
    text = (
        f"INT8 OUTPUTS COLLAPSED: {' and '.join(reasons)}; these figures describe a broken model, not a result.{start} "
        "Keep that layer (or its block) in float (--skip, or --skip-worst K), or calibrate with more, real data."
    )
    return [Verdict(CRITICAL, "collapse", text)]


#: Near-ties on more than this share of the samples make top-1 agreement a measure of the data, not of INT8.
TIE_SHARE = 0.05
#: Fewer samples than this say too little for "every sample got the same answer" to mean anything.
SAME_ANSWER_SAMPLES = 8


def resolution(result: RunResult) -> list[Verdict]:
    """A verdict when top-1 agreement on this data cannot tell a good INT8 model from a bad one."""
    ev = result.evaluation
    if not ev.classes or ev.classes < 2:
        return []
    if ev.fp32_max_abs is not None and ev.fp32_max_abs < NEAR_ZERO:
        return []  # FP32's outputs are no signal at all: the collapse verdict says so, and why
    reading = f"read cosine ({ev.cosine:.4f}) and output SQNR ({fmt_db(ev.output_sqnr_db)} dB) instead"
    fix = "measure on real inputs (--eval-data), with labels where you have them (--eval-labels)"
    if ev.fp32_top1_distinct == 1 and ev.samples >= SAME_ANSWER_SAMPLES:
        text = (
            f"AGREEMENT MEASURES NOTHING HERE: FP32 gives all {ev.samples} evaluation samples the same top-1 answer, "
            f"so any model that always gives that answer agrees 100% ({ev.agreement:.0%} now). "
            f"The data does not exercise the model; {reading}, or {fix}."
        )
        return [Verdict(WARNING, "agreement-resolution", text)]
    if ev.near_ties is not None and ev.near_ties > TIE_SHARE:
        text = (
            f"AGREEMENT IS DOMINATED BY NEAR-TIES: on {ev.near_ties:.0%} of the evaluation samples FP32's top-1 leads "
            f"its runner-up by less than {TIE_MARGIN:.0%} of the outputs' spread, so any change in arithmetic "
            f"(INT8, even BF16) flips some of them. Top-1 agreement ({ev.agreement:.2%}) says little about quality on "
            f"this data and cannot resolve a budget of a point or two; {reading}, or {fix}. "
            "(A trained model on real inputs has few near-ties: the demo digits have 0.5%.)"
        )
        return [Verdict(WARNING, "agreement-resolution", text)]
    return []


def unreliable_timing(result: RunResult) -> list[Verdict]:
    """A loud verdict when the benchmark measured twice and was still unstable."""
    timing = getattr(result, "timing", None)
    if timing is None or timing.stable:
        return []
    again = " (measured twice: still unstable)" if timing.remeasured else ""
    text = (
        f"UNRELIABLE TIMING: the latencies and speedups may be off by a large factor{again}: "
        f"{'; '.join(timing.reasons)}. Re-run on an idle machine (close other programs), or with fewer --threads."
    )
    return [Verdict(CRITICAL, "unreliable-timing", text)]


def export_failed(result: RunResult) -> list[Verdict]:
    error = getattr(result, "export_error", None)
    if not error:
        return []
    return [Verdict(CRITICAL, "export-failed", f"EXPORT FAILED, the run's figures were kept: {error}")]


def judge(
    result: RunResult,
    int8_model: Callable[..., Any] | None = None,
    make_input: Callable[[int], Any] | None = None,
    fp32_model: nn.Module | None = None,
) -> list[Verdict]:
    """Every verdict on ``result``, loudest kinds first.  ``int8_model`` (what was benchmarked) is profiled on a slowdown."""
    return [
        *export_failed(result),
        *collapse(result, fp32_model),
        *resolution(result),
        *slowdown(result, int8_model, make_input),
        *unreliable_timing(result),
    ]


def apply(
    result: RunResult,
    int8_model: Callable[..., Any] | None = None,
    make_input: Callable[[int], Any] | None = None,
    fp32_model: nn.Module | None = None,
) -> list[Verdict]:
    """:func:`judge` ``result`` and record the verdicts on it: ``result.verdicts`` and, as text, ``result.warnings``."""
    found = judge(result, int8_model, make_input, fp32_model)
    for v in found:
        if v not in result.verdicts:
            result.verdicts.append(v)
        if v.text not in result.warnings:
            result.warnings.append(v.text)
    return found


def severity_of(result: Any, text: str) -> str | None:
    """The severity of one of ``result.warnings`` when it is a verdict's text, else None."""
    for v in getattr(result, "verdicts", None) or ():
        if v.text == text:
            return v.severity
    return None


__all__ = [  # Verdict (qstudio.core.run_result) and the profile's names (qstudio.core.int8_profile) too: defined here once
    "CHANCE_LIMIT",
    "COLLAPSE_AGREEMENT",
    "COLLAPSE_COSINE",
    "CRITICAL",
    "FLOAT",
    "INFO",
    "INT8",
    "LAYER_SQNR_DB",
    "LAYOUT",
    "NEAR_ZERO",
    "NO_EVAL_DATA_TEXT",
    "OTHER",
    "PROFILE_RUNS",
    "QDQ",
    "RANDOM_DATA_TEXT",
    "SEVERITIES",
    "TIE_SHARE",
    "TINY_MS",
    "WARNING",
    "OpProfile",
    "Verdict",
    "apply",
    "collapse",
    "export_failed",
    "first_bad_layer",
    "float_op_modules",
    "judge",
    "op_category",
    "profile_ops",
    "resolution",
    "severity_of",
    "slowdown",
    "unreliable_timing",
]
