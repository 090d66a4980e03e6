"""FX graph mode: static PTQ (``prepare_fx``/``convert_fx``) and FX QAT.

FX finds the quant/dequant points itself, so residual ``+`` and ``torch.cat``
work without model changes.  Its one trap is tracing: data-dependent control
flow stops it.  When the model does not trace, the parts that stop it are kept
in float as black boxes and the rest is quantized in traced regions
(:mod:`qstudio.core.flows.regions`), in one run; the notes name each part and
its source line.  Only when that would leave most of the model float is the
run refused, naming the module and line and offering the fix.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Generator, Iterator

import torch
import torch.fx
from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

from qstudio.core import graph as graphs
from qstudio.core.errors import FlowError
from qstudio.core.flows import regions
from qstudio.core.flows.base import FlowInput, QuantizedModel, check_memory, convert_step, quantized_engine
from qstudio.core.flows.dynamic import conv1d_as_linear
from qstudio.core.flows.failures import refusal, refusals
from qstudio.core.flows.qconfig import per_tensor_fallbacks, per_tensor_note, qconfig_mapping
from qstudio.core.flows.training import calibrate_or_train
from qstudio.core.flows.traits import ModeTraits, mode_traits
from qstudio.core.fusion import apply_fusion
from qstudio.core.progress import Progress


def explain_trace(inp: FlowInput) -> None:
    """Raise a FlowError that names the module and line if the model cannot be traced."""
    traced = graphs.trace(inp.model, set(inp.recipe.settings.skip))
    if isinstance(traced, graphs.TraceFailure):
        if traced.module:
            fix = (
                f"keep '{traced.module}' in float (--skip {traced.module}, or tick it in the tree) so FX treats it as "
                "a black box, or rewrite that code so control flow does not depend on tensor values"
            )
        else:
            fix = "rewrite that code so control flow does not depend on tensor values, or use eager mode (--mode eager)"
        raise FlowError(traced.describe(), fix)


def _no_stack_traces():
    """prepare_fx records a Python stack trace per graph node by default.

    Capturing them costs seconds on first use (it lazily imports torch's
    compiler stack) and holds the GIL in C++ long enough to freeze the
    window's event loop for ~200 ms.  Nothing downstream reads them: qstudio's
    own messages trace the model separately.
    """
    return _fx_config(do_not_emit_stack_traces=True)


@contextlib.contextmanager
def _fx_config(**values: object) -> Iterator[None]:
    old = {k: getattr(torch.fx.config, k) for k in values}
    for k, v in values.items():
        setattr(torch.fx.config, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(torch.fx.config, k, v)


CONVERT_LABEL = "converting to INT8 (convert_fx)"


def release_fx_caches() -> None:
    """Drop the models torch.ao's FX passes keep alive after they return.

    ``torch.ao.quantization.fx.utils.assert_and_get_unique_device`` is wrapped
    in an unbounded ``functools.cache`` keyed by module, and prepare_fx /
    convert_fx call it on the whole model and on every converted float
    module.  Each run therefore kept its observed model (float weights plus
    histogram observers) for the life of the process: one more copy of the
    model per run in a window session (resnet50: ~100 MB each).  Measured with
    benchmarks/studio.py (copies of the float weights alive after convert).
    """
    from torch.ao.quantization.fx import utils as fx_utils

    cached = getattr(fx_utils.assert_and_get_unique_device, "cache_clear", None)
    if cached is not None:
        cached()


def _drop_prepare_metadata(model: torch.nn.Module) -> None:
    """Remove the qconfig objects prepare_fx leaves in each graph node's ``meta``.

    Under QAT those qconfigs hold closures over the prepared (fake-quant)
    modules, so a converted model or its float reference would keep the whole
    training-time model alive.  Nothing after convert reads them.
    """
    for module in model.modules():
        if isinstance(module, torch.fx.GraphModule):
            module.meta.pop("_observed_graph_module_attrs", None)  # node name -> qconfig, likewise
            for node in module.graph.nodes:
                node.meta.pop("target_dtype_info", None)


def _releasing(steps: Generator[Progress, None, QuantizedModel]) -> Generator[Progress, None, QuantizedModel]:
    try:
        result = yield from steps
        _drop_prepare_metadata(result.module)
        _drop_prepare_metadata(result.reference)
        return result
    finally:
        release_fx_caches()


class FusedAway(torch.nn.Module):
    """Stands where fusion folded a module (BatchNorm, ReLU) into the conv before it.

    Eager fusion leaves an ``nn.Identity`` there, which FX keeps as a graph
    node.  When a group stops short of a ReLU (resnet's BasicBlock calls one
    ReLU module twice, so it cannot join either group), that node sits
    between the fused conv and the ReLU and prepare_fx can no longer fuse the
    pair into ConvReLU2d: on resnet18 that left 8 separate ReLUs and made the
    INT8 model ~8% slower than the PyTorch FX script.  FX traces *through* a
    module defined outside torch.nn, so this one leaves no node at all.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _fuse_for_fx(model: torch.nn.Module, groups: list[list[str]], *, qat: bool = False) -> torch.nn.Module:
    """Apply the user's groups, then let the folded-away members vanish from FX's graph."""
    model = apply_fusion(model, groups, qat=qat)
    for group in groups:
        for name in group[1:]:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if isinstance(getattr(parent, attr, None), torch.nn.Identity):
                setattr(parent, attr, FusedAway())
    return model


def _custom_config(inp: FlowInput) -> PrepareCustomConfig:
    return PrepareCustomConfig().set_non_traceable_module_names(list(inp.recipe.settings.skip))


def _fuse(inp: FlowInput, *, qat: bool) -> torch.nn.Module:
    model = copy.deepcopy(inp.model)
    conv1d_as_linear(model)  # GPT-2's Conv1D is a Linear with its weight transposed: FX only quantizes the Linear
    with refusals("fuse_modules_qat" if qat else "fuse_modules", model, hints=[_UNGROUP]):
        return _fuse_for_fx(model if qat else model.eval(), inp.groups, qat=qat)


_UNGROUP = "remove that module's fusion group (edit the groups in the tree, or give --fusion)"


def _prepare(inp: FlowInput, model: torch.nn.Module, *, qat: bool) -> torch.fx.GraphModule:
    """prepare_fx / prepare_qat_fx; a refusal names the module and says what goes around it."""
    s = inp.recipe.settings
    call = prepare_qat_fx if qat else prepare_fx
    try:
        with _no_stack_traces():
            return call(
                model, qconfig_mapping(s, s.skip, qat=qat), (inp.example,), prepare_custom_config=_custom_config(inp)
            )
    except Exception as exc:
        explain_trace(inp)  # a trace failure has its own, better message
        raise refusal(exc, call.__name__, model) from exc


class _Prepared:
    """A model ready to calibrate or train, and how to convert it."""

    def __init__(self, module: torch.nn.Module, plan: regions.Plan | None = None, settings=None) -> None:
        self.module = module
        self.plan = plan
        self.settings = settings

    def convert(self, prepared: torch.nn.Module) -> torch.nn.Module:
        if self.plan is None:
            return convert_fx(prepared)
        return regions.convert(prepared, self.plan, self.settings, convert_fx)

    def notes(self) -> list[str]:
        return regions.notes(self.plan) if self.plan is not None else []


def _prepare_model(inp: FlowInput, model: torch.nn.Module, *, qat: bool) -> Generator[Progress, None, _Prepared]:
    """prepare_fx the whole model, or, when FX cannot trace it, each region of it with the untraceable parts float."""
    s = inp.recipe.settings
    first = graphs.trace(model, set(s.skip))
    if not isinstance(first, graphs.TraceFailure) and not graphs.decorated_forward(model):
        yield Progress(
            "prepare",
            0,
            1,
            "inserting fake-quant modules (prepare_qat_fx)" if qat else "inserting observers (prepare_fx)",
        )
        return _Prepared(_prepare(inp, model, qat=qat))
    first = first if isinstance(first, graphs.TraceFailure) else None
    yield Progress("prepare", 0, 1, "finding the parts FX cannot trace; they stay float (black boxes)")
    with torch.no_grad():
        plan = regions.plan(model, inp.example, s.skip)
    regions.check(plan, first)
    call = prepare_qat_fx if qat else prepare_fx

    def prepare_one(gm: torch.nn.Module, leaves: list[str], inputs: tuple[torch.Tensor, ...]) -> torch.nn.Module:
        with _no_stack_traces():
            return call(
                gm, qconfig_mapping(s, leaves, qat=qat), inputs, prepare_custom_config=regions.custom_config(leaves)
            )

    prepared = regions.prepare(model, plan, s.skip, prepare_one, call.__name__)
    regions.check(plan, first, branches=False)  # regions torch.ao refused may leave nothing quantized
    return _Prepared(prepared, plan, s)


def _notes(inp: FlowInput) -> list[str]:
    s = inp.recipe.settings
    fallbacks = per_tensor_fallbacks(inp.model, s.skip) if s.per_channel else []
    return [per_tensor_note(fallbacks)] if fallbacks else []


class FxFlow:
    """FX graph mode; what PTQ and QAT do differently is in the class's ``traits`` (calibrate, or train)."""

    traits: ModeTraits

    @property
    def mode(self) -> str:
        return self.traits.mode

    def preflight(self, inp: FlowInput) -> list[str]:
        check_memory(inp)  # a model FX cannot trace is planned around (black boxes) when the run prepares it
        return []

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        return _releasing(self._run(inp))

    def _run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        qat = self.traits.trains
        with quantized_engine(inp.recipe.settings.backend):
            model = _fuse(inp, qat=qat)
            if qat:
                model.train()
            ready = yield from _prepare_model(inp, model, qat=qat)
            yield Progress("prepare", 1, 1)
            seconds, history = yield from calibrate_or_train(ready.module, inp)
            return (
                yield from convert_step(
                    ready.module,
                    ready.convert,
                    inp,
                    "",
                    seconds,
                    history,
                    label=CONVERT_LABEL,
                    step="convert_fx",
                    notes=[*ready.notes(), *_notes(inp)],
                )
            )


class FxPTQ(FxFlow):
    """Post-training static quantization: prepare_fx, calibrate, convert_fx."""

    traits = mode_traits("fx")


class FxQAT(FxFlow):
    """Quantization-aware training: prepare_qat_fx, train with fake quantization, convert_fx."""

    traits = mode_traits("qat")
