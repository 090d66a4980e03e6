"""PT2E with torch.compile: torch.export, torchao's X86InductorQuantizer (INT8), compiled by inductor with freezing.

PT2E left torch core in 2.11 and lives in torchao (``torchao.quantization.pt2e``).
The model is exported with a dynamic batch dimension, ``strict=True`` first:
non-strict export puts every call of a reused module (resnet's one ``relu``)
into one partition, which the quantizer refuses (pytorch/ao#4482).  A model
strict export cannot trace is exported non-strict; a refusal then is reported.

INT8: ``prepare_pt2e`` with the default X86 config, calibration on exactly the
run's batches, ``convert_pt2e``, the converted graph exported again (the saved
``.pt2``) and compiled by inductor with freezing, which folds q/dq into oneDNN
int8 kernels.  FP32 is the float export compiled the same way.  Layers kept
float get no qconfig (with their fusion group), checked in the converted graph.

Inductor's settings (``freezing``, torchao's ``pre_grad_custom_pass``) are set
only while dynamo traces and inductor compiles our graphs, never left changed.
Compiling takes tens of seconds, so the build compiles batch 1 and 8 (larger
batches share the batch-8 graph, made dynamic) and the runtime is not compared
by default.  Threads: inductor writes the compile-time thread count into its
kernels and oneDNN uses torch's OpenMP pool, so compiles and calls run with
``inp.threads``; the kernels link torch's own ``libgomp``, whose one pool sleeps
between calls as torch's does.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.runtimes.base import Artifact, BuildInput, RuntimeUnavailable, first_line, package_missing
from qstudio.core.runtimes.pt2e_settings import _compiling, _quiet, _threads, _torchao

TITLE = "PT2E (torch.compile)"
WARMUP_BATCHES = (1, 8)  # compiled at build: batch 1 gets its own graph, 8 the dynamic one every batch >= 2 reuses
_CHATTY = ("torch._dynamo", "torch._inductor", "torch._export", "torch.export", "torch.fx", "torch.utils", "torchao")
_WEIGHTED_OPS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear")
log = logging.getLogger(__name__)


# -- export -----------------------------------------------------------------------------
def _pair(example: torch.Tensor) -> torch.Tensor:
    """A batch of 2: export specialises a batch of 1, so a dynamic batch dimension needs 2 to trace."""
    return torch.cat([example[:1], example[:1]])


def _batch_dim() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch", min=1)},)


def _export(model: nn.Module, example: torch.Tensor) -> tuple[Any, list[str]]:
    """Strict export first (the quantizer needs it for reused modules), non-strict if dynamo cannot trace."""
    x = _pair(example)
    try:
        with _quiet():
            return torch.export.export(model, (x,), dynamic_shapes=_batch_dim(), strict=True), []
    except Exception as strict_exc:
        try:
            with _quiet():
                program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim(), strict=False)
        except Exception as exc:
            raise RuntimeUnavailable(
                f"torch.export could not capture the model with a dynamic batch ({_short(exc)})"
            ) from exc
        return program, [f"strict torch.export failed ({_short(strict_exc)}); the model was exported non-strict"]


def _short(exc: BaseException, limit: int = 200) -> str:
    text = first_line(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _drop_unused_state(gm: torch.fx.GraphModule) -> None:
    """convert_pt2e keeps the float weights beside the int8 ones; the saved program should not carry them."""
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in [*gm.named_parameters(), *gm.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
    gm.delete_all_unused_submodules()


def _serialize(program: Any) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)  # to memory: the file itself is written atomically by save()
    return buffer.getvalue()


# -- INT8 -------------------------------------------------------------------------------
def _group(name: str, groups: list[list[str]]) -> list[str]:
    """A skipped member of a fusion group keeps the whole group float, as in the torch.ao flows."""
    return next((g for g in groups if name in g), [name])


def _module_paths(node: torch.fx.Node) -> list[str]:
    return [str(path) for path, _type in node.meta.get("nn_module_stack", {}).values()]


def _is_dequantize(node: Any) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and "dequantize" in str(node.target)


def weighted_ops(gm: torch.fx.GraphModule, names: Sequence[str]) -> list[tuple[torch.fx.Node, bool]]:
    """The convolutions and linears that come from modules ``names`` (or inside them), each with "is quantized"."""
    found = []
    for node in gm.graph.nodes:
        parts = str(node.target).split(".")  # aten.conv2d.default
        if node.op != "call_function" or len(parts) < 2 or parts[0] != "aten" or parts[1] not in _WEIGHTED_OPS:
            continue
        paths = _module_paths(node)
        if any(p == n or p.startswith(n + ".") for p in paths for n in names):
            weight = node.args[1] if len(node.args) > 1 else None
            found.append((node, _is_dequantize(weight)))
    return found


def _float_notes(gm: torch.fx.GraphModule, skip: list[str], groups: list[list[str]], known: set[str]) -> list[str]:
    """What each of the user's float layers became in the converted graph; names that match nothing say so."""
    kept, notes = [], []
    for name in skip:
        ops = weighted_ops(gm, _group(name, groups)) if name in known else []
        if name not in known:
            notes.append(f"'{name}' (to keep in float) names no module of this model; PT2E ignored it")
        elif not ops:
            notes.append(f"'{name}' (to keep in float) has no convolution or linear layer in the exported graph")
        elif any(quantized for _node, quantized in ops):
            notes.append(f"'{name}' could not be kept float: the PT2E quantizer quantized it anyway")
        else:
            kept.append(name)
    return [f"kept in float: {', '.join(kept)}"] * bool(kept) + notes


def _quantize(program: Any, inp: BuildInput, strict: bool) -> tuple[torch.fx.GraphModule, list[str]]:
    ao = _torchao()
    batches = inp.calibration_batches()
    if not batches:
        raise RuntimeUnavailable("PT2E INT8 needs calibration data and this run has none")
    quantizer = ao["quantizer"]()
    quantizer.set_global(ao["config"]())
    known = {n for n, _m in inp.model.named_modules() if n and n in inp.skip}
    for name in dict.fromkeys(m for n in inp.skip if n in known for m in _group(n, inp.groups)):
        quantizer.set_module_name_qconfig(name, None)
    try:
        with _quiet():
            prepared = ao["prepare"](program.module(), quantizer)
    except Exception as exc:
        how = "" if strict else " (exported non-strict, since strict export failed)"
        fix = ""
        if not strict and "more than one output node" in str(exc):  # pytorch/ao#4482
            fix = "; non-strict export merges the calls of a module used twice (a shared ReLU): give each its own"
        raise RuntimeUnavailable(f"the PT2E X86 quantizer refused the model{how}: {_short(exc)}{fix}") from exc
    try:
        with _quiet(), torch.no_grad():
            for x in batches:
                prepared(x)
            converted = ao["convert"](prepared)
    except Exception as exc:
        raise RuntimeUnavailable(f"PT2E calibration or conversion failed: {_short(exc)}") from exc
    return converted, _float_notes(converted, inp.skip, inp.groups, known)


def _program(inp: BuildInput, precision: str) -> tuple[Any, list[str]]:
    """The ExportedProgram to save and compile: the float export, or the converted INT8 graph exported again."""
    program, notes = _export(inp.model, inp.example)
    if precision == "fp32":
        return program, notes
    converted, more = _quantize(program, inp, strict=not notes)
    _drop_unused_state(converted)
    with _quiet():
        program = torch.export.export(converted, (_pair(inp.example),), dynamic_shapes=_batch_dim(), strict=False)
    return program, notes + more


# -- compile ----------------------------------------------------------------------------
def _placeholder_example(program: Any) -> torch.Tensor:
    """A zero input of batch 1 shaped like the program's input (for warming up a loaded program)."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta["val"]
            return torch.zeros([1] + [int(s) for s in val.shape[1:]], dtype=val.dtype)
    raise RuntimeUnavailable("the PT2 program takes no tensor input")


def _graphs() -> int:
    """How many graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _cached(code: Any) -> int:
    """How many compiled graphs dynamo holds for ``code`` (0 after ``torch._dynamo.reset()``)."""
    from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

    return len(_debug_get_cache_entry_list(code))


def _warm_up(compiled: Any, example: torch.Tensor, precision: str, threads: int) -> None:
    """Compile for batch 1 and then 8 now, not in the first timed call (8 after 1 makes the batch dynamic)."""
    with _threads(threads), _compiling(precision):
        for batch in WARMUP_BATCHES:
            compiled(torch.cat([example[:1]] * batch))


def _compile(program: Any, example: torch.Tensor, precision: str, threads: int) -> tuple[Any, bool, list[str]]:
    """The compiled module, whether one graph serves every batch >= 2, and notes.

    Where inductor cannot compile the dynamic-batch graph (its INT8
    convolution on a single-channel input asserts a wrong output layout),
    every batch size gets its own static graph, compiled on its first call.
    """
    first: Exception | None = None
    for dynamic in (None, False):
        graphs = _graphs()
        try:
            compiled = torch.compile(program.module(), backend="inductor", dynamic=dynamic)
            _warm_up(compiled, example, precision, threads)
        except Exception as exc:
            first = first or exc
            continue
        if _graphs() == graphs:
            raise RuntimeUnavailable("torch.compile ran the model without compiling it (dynamo's recompile limit?)")
        if first is None:
            return compiled, True, []
        why = f"torch.compile could not build one graph for every batch size ({_short(first, 80)})"
        return compiled, False, [f"{why}; batch 1 and 8 are compiled, any other batch size on its first call"]
    assert first is not None
    raise RuntimeUnavailable(
        f"torch.compile (inductor) could not compile the {precision} model: {_short(first)}"
    ) from first


class Pt2Artifact:
    """The compiled module plus the ``.pt2`` bytes of the ExportedProgram it was compiled from.

    Dynamo compiles again whenever its guards fail or its caches were reset
    (every strict ``torch.export`` in the process resets them); such compiles
    must see the build's inductor settings, so a call first checks both: a
    reset cache is warmed up again, a new kind of input is compiled for under
    the settings.
    """

    runtime = "pt2"

    def __init__(self, compiled: Any, data: bytes, precision: str, threads: int, notes: list[str],
                 example: torch.Tensor, *, dynamic: bool = True):  # fmt: skip
        self.compiled = compiled
        self.data = data
        self.precision = precision
        self.label = f"PT2E {precision.upper()}"
        self.size_mb = len(data) / 1e6  # exactly what save() writes
        self.threads = max(1, int(threads))
        self.notes = list(notes)
        self.dynamic = dynamic  # one graph for batch 1, one for every larger batch; else one per batch size
        self.build_seconds = float("nan")
        self.rewarms = 0  # warm-ups again after dynamo's caches were reset
        self.unsettled_compiles = 0  # compiles dynamo made where we expected none (should stay 0)
        self._example = example[:1].clone()
        self._code = type(compiled._orig_mod).forward.__code__
        self._seen = {self._key(torch.cat([self._example] * b)) for b in WARMUP_BATCHES}  # input kinds compiled for

    def _key(self, x: torch.Tensor) -> tuple[Any, ...]:
        """What dynamo's guards tell apart for our graphs: batch (1 or more), other sizes, dtype, layout, flags."""
        batch: Any = x.shape[0] == 1 if self.dynamic else x.shape[0]
        return (x.dtype, tuple(x.shape[1:]), batch, x.is_contiguous(), x.is_inference(), x.requires_grad)

    def __call__(self, x: torch.Tensor) -> Any:
        """Always in no_grad outside inference mode (the benchmark times under inference_mode, evaluate under
        no_grad; dynamo would compile again for each), with the build's thread count (dynamo guards on it)."""
        key = self._key(x)
        with _threads(self.threads), torch.inference_mode(False), torch.no_grad():
            if not _cached(self._code):
                log.info("PT2E %s: dynamo's caches were reset; compiling again", self.precision)
                _warm_up(self.compiled, self._example, self.precision, self.threads)
                self._seen = {self._key(torch.cat([self._example] * b)) for b in WARMUP_BATCHES}
                self.rewarms += 1
            if key in self._seen:
                graphs = _graphs()
                out = self.compiled(x)
                if _graphs() != graphs:  # a guard we did not foresee: compiled without freezing
                    self.unsettled_compiles += 1
                    log.warning("PT2E %s compiled again outside its build settings for %s", self.precision, key)
                return out
            with _compiling(self.precision):  # dynamo compiles for this kind of input: with the build's settings
                out = self.compiled(x)
            self._seen.add(key)
            return out

    def save(self, path: Path) -> list[Path]:
        atomic_write_bytes(path, self.data, "PT2 file")
        return [Path(path)]


def _cxx_missing() -> str | None:
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        return f"torch.compile needs a C++ compiler and {compiler} is not on PATH (install g++, or set CXX)"
    return None


class Pt2Runtime:
    name = "pt2"
    title = TITLE
    suffix = ".pt2"
    #: building resnet18 INT8 (export, calibration, inductor compile for batch 1 and 8) takes 30-60 s here
    compared_by_default = False

    def missing(self) -> str | None:
        return package_missing("torchao") or _cxx_missing()

    def precisions(self) -> list[str]:
        return ["fp32", "int8"]

    def build(self, inp: BuildInput, precision: str) -> Artifact:
        if precision not in self.precisions():
            raise RuntimeUnavailable(f"PT2E offers no {precision} build here")
        why = self.missing()
        if why:
            raise RuntimeUnavailable(why)
        start = time.perf_counter()
        try:
            with _threads(max(1, int(inp.threads))):
                program, notes = _program(inp, precision)
                data = _serialize(program)
                compiled, dynamic, more = _compile(program, inp.example, precision, inp.threads)
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # the exporters raise many types; the user gets one line, the cause stays chained
            raise RuntimeUnavailable(f"PT2E could not build the {precision} model: {_short(exc)}") from exc
        art = Pt2Artifact(compiled, data, precision, inp.threads, notes + more, inp.example, dynamic=dynamic)
        art.build_seconds = time.perf_counter() - start
        log.info("PT2E %s built in %.1f s", precision, art.build_seconds)
        return art

    def load(self, files: Sequence[Path], precision: str) -> Artifact:
        """Load a ``.pt2`` and compile it with torch's current thread count (the interface passes none)."""
        try:
            data = Path(files[0]).read_bytes()
            _torchao()  # registers the quantized ops' inductor patterns
            with _quiet():
                program = torch.export.load(io.BytesIO(data))
        except Exception as exc:
            raise RuntimeUnavailable(f"could not read the PT2 file {files[0]}: {_short(exc)}") from exc
        found = "int8" if any("quantize_per" in str(n.target) for n in program.graph.nodes) else "fp32"
        notes = [] if found == precision else [f"{files[0]} holds a {found.upper()} model, not {precision.upper()}"]
        threads = torch.get_num_threads()
        example = _placeholder_example(program)
        compiled, dynamic, more = _compile(program, example, found, threads)
        return Pt2Artifact(compiled, data, found, threads, notes + more, example, dynamic=dynamic)
