"""PT2E with torch.compile: torch.export, torchao's X86InductorQuantizer (INT8), compiled by inductor with freezing.

PT2E left torch core in 2.11 and lives in torchao (``torchao.quantization.pt2e``).
The model is captured by ``torch.export`` with a dynamic batch dimension,
``strict=True`` first: non-strict export puts every call of a reused module
(torchvision resnet's one ``relu``) into one partition, which the quantizer
refuses ("Input partition has more than one output node", pytorch/ao#4482).
A model strict export cannot trace is exported non-strict and, if the
quantizer then refuses it, reported as unavailable.

INT8 is ``prepare_pt2e`` with the default X86 inductor config (per-channel
int8 weights, u8 activations), calibrated on exactly the run's calibration
batches, ``convert_pt2e``; the converted graph is exported again (the saved
``.pt2``) and compiled by inductor with freezing, which folds the q/dq
patterns into oneDNN int8 convolutions and linears.  FP32 is the float export
compiled the same way.  Layers the user keeps float get no quantization config
(``set_module_name_qconfig(name, None)``, with their fusion group, as torch.ao
does); each is checked in the converted graph afterwards.

Inductor settings (``freezing``, torchao's ``pre_grad_custom_pass``) are set
only while a graph is compiled - at build, and on a call whose input would
make dynamo compile again - so torch's global configuration is never left
changed.  Compilation is slow (tens of seconds for resnet18 on 2 cores), so it
happens in :meth:`Pt2Runtime.build` for batch 1 and batch 8 (every larger batch
reuses the batch-8 graph, whose batch dimension dynamo makes dynamic), and
the runtime is not compared by default.

Threads: inductor writes ``#pragma omp parallel num_threads(N)`` with the
thread count at compile time, and oneDNN's int8 kernels use torch's OpenMP
pool, so both compiling and every call run with ``inp.threads`` intra-op
threads.  The generated kernels link torch's own ``libgomp``: there is one
OpenMP pool, whose threads sleep between calls exactly as torch's do.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.runtimes.base import Artifact, BuildInput, RuntimeUnavailable, first_line, package_missing

TITLE = "PT2E (torch.compile)"
WARMUP_BATCHES = (1, 8)  # compiled at build: batch 1 gets its own graph, 8 the dynamic one every batch >= 2 reuses
_CHATTY_LOGGERS = (
    "torch._dynamo",
    "torch._inductor",
    "torch._export",
    "torch.export",
    "torch.fx",
    "torch.utils._pytree",
    "torch.utils.cpp_extension",
    "torchao",
)
_WEIGHTED_OPS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear")
log = logging.getLogger(__name__)


# -- quiet, scoped third-party state ----------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide dynamo's/inductor's warnings and log chatter; errors still raise and ERROR records still print."""
    saved = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    with warnings.catch_warnings():
        for category in (UserWarning, FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(torch|torchao)(\..*)?$")
        try:
            for name in saved:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)


@functools.cache
def _torchao() -> dict[str, Any]:
    """Import torchao's PT2E pieces once.

    Importing the X86 quantizer registers its inductor patterns (only active
    with freezing) and sets ``torch._inductor.config.pre_grad_custom_pass``
    globally; that one is put back and set only while we compile.
    """
    import torch._inductor.config as inductor_config

    before = inductor_config.pre_grad_custom_pass
    try:
        with _quiet():
            from torchao.quantization.pt2e.inductor_passes.x86 import quant_lift_up
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer,
                get_default_x86_inductor_quantization_config,
            )
    finally:
        inductor_config.pre_grad_custom_pass = before
    return {
        "prepare": prepare_pt2e,
        "convert": convert_pt2e,
        "quantizer": X86InductorQuantizer,
        "config": get_default_x86_inductor_quantization_config,
        "lift_up": quant_lift_up,
    }


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _compiling(precision: str) -> Iterator[None]:
    """Inductor's settings for our graphs, only while dynamo traces and inductor compiles them."""
    import torch._inductor.config as inductor_config

    patch: dict[str, Any] = {"freezing": True}  # weights become constants: oneDNN prepacks them, q/dq fold away
    if precision == "int8":
        patch["pre_grad_custom_pass"] = _torchao()["lift_up"]
    with _quiet(), inductor_config.patch(patch), torch.no_grad():
        yield


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
def _float_targets(model: nn.Module, skip: list[str], groups: list[list[str]]) -> tuple[list[str], list[str]]:
    """The module names to give no qconfig (a skipped member of a fusion group skips the group) and notes."""
    modules = dict(model.named_modules())
    targets: list[str] = []
    notes: list[str] = []
    for name in skip:
        if name not in modules or not name:
            notes.append(f"'{name}' (to keep in float) names no module of this model; PT2E ignored it")
            continue
        group = next((g for g in groups if name in g), [name])
        targets += [n for n in group if n not in targets]
    return targets, notes


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


def _check_float(gm: torch.fx.GraphModule, skip: list[str], groups: list[list[str]], known: set[str]) -> list[str]:
    """Notes on what the user's float layers became in the converted graph."""
    kept, notes = [], []
    for name in skip:
        if name not in known:
            continue
        group = next((g for g in groups if name in g), [name])
        ops = weighted_ops(gm, group)
        if not ops:
            notes.append(
                f"'{name}' (to keep in float) has no convolution or linear layer in the exported graph; "
                "PT2E had nothing to keep float for it"
            )
        elif any(quantized for _node, quantized in ops):
            notes.append(f"'{name}' could not be kept float: the PT2E quantizer quantized it anyway")
        else:
            kept.append(name)
    if kept:
        notes.insert(0, f"kept in float: {', '.join(kept)}")
    return notes


def _quantize(program: Any, inp: BuildInput, strict: bool) -> tuple[torch.fx.GraphModule, list[str]]:
    ao = _torchao()
    batches = inp.calibration_batches()
    if not batches:
        raise RuntimeUnavailable("PT2E INT8 needs calibration data and this run has none")
    quantizer = ao["quantizer"]()
    quantizer.set_global(ao["config"]())
    targets, notes = _float_targets(inp.model, inp.skip, inp.groups)
    for name in targets:
        quantizer.set_module_name_qconfig(name, None)
    try:
        with _quiet():
            prepared = ao["prepare"](program.module(), quantizer)
    except Exception as exc:
        how = "" if strict else " (exported non-strict, since strict export failed)"
        raise RuntimeUnavailable(f"the PT2E X86 quantizer refused the model{how}: {_short(exc)}") from exc
    try:
        with _quiet(), torch.no_grad():
            for x in batches:
                prepared(x)
            converted = ao["convert"](prepared)
    except Exception as exc:
        raise RuntimeUnavailable(f"PT2E calibration or conversion failed: {_short(exc)}") from exc
    known = {n for n in inp.skip if n in dict(inp.model.named_modules())}
    return converted, notes + _check_float(converted, inp.skip, inp.groups, known)


# -- compile ----------------------------------------------------------------------------
def _placeholder_example(program: Any) -> torch.Tensor:
    """A zero input of batch 1 shaped like the program's input (for warming up a loaded program)."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta["val"]
            shape = [1] + [int(s) for s in val.shape[1:]]
            return torch.zeros(shape, dtype=val.dtype)
    raise RuntimeUnavailable("the PT2 program takes no tensor input")


def _graphs() -> int:
    """How many graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _warm(program: Any, example: torch.Tensor, precision: str, threads: int, dynamic: bool | None) -> Any:
    """torch.compile the program's module and compile it for batch 1 and 8 now, not in the first timed call."""
    graphs_before = _graphs()
    compiled = torch.compile(program.module(), backend="inductor", dynamic=dynamic)
    with _threads(threads), _compiling(precision):
        for batch in WARMUP_BATCHES:
            compiled(torch.cat([example[:1]] * batch))
    if _graphs() == graphs_before:
        raise RuntimeError("dynamo ran the model without compiling it (its recompile limit?)")
    return compiled


def _compile(program: Any, example: torch.Tensor, precision: str, threads: int) -> tuple[Any, bool, list[str]]:
    """The compiled module, whether one graph serves every batch >= 2, and notes.

    Dynamo makes the batch dimension dynamic when batch 8 follows batch 1.
    Where inductor cannot compile that graph (its INT8 convolution on a
    single-channel input asserts a wrong output layout), every batch size gets
    its own static graph, compiled on its first call.
    """
    try:
        return _warm(program, example, precision, threads, None), True, []
    except Exception as exc:
        first = exc
    try:
        compiled = _warm(program, example, precision, threads, False)
    except Exception:
        raise RuntimeUnavailable(
            f"torch.compile (inductor) could not compile the {precision} model: {_short(first)}"
        ) from first
    note = (
        f"torch.compile could not build one graph for every batch size ({_short(first, 80)}); "
        "batch 1 and 8 are compiled, any other batch size is compiled on its first call"
    )
    return compiled, False, [note]


class Pt2Artifact:
    """The compiled module plus the ``.pt2`` bytes of the ExportedProgram it was compiled from."""

    runtime = "pt2"

    def __init__(
        self,
        compiled: Any,
        data: bytes,
        precision: str,
        threads: int,
        notes: list[str] | None = None,
        *,
        dynamic: bool = True,
        compiled_for: torch.Tensor | None = None,
    ):
        self.compiled = compiled
        self.data = data
        self.precision = precision
        self.threads = max(1, int(threads))
        self.notes = list(notes or [])
        self.dynamic = dynamic  # one graph for batch 1, one for every larger batch; else one per batch size
        self.build_seconds = float("nan")
        self._seen: set[tuple[Any, ...]] = set()  # the inputs compiled for so far (see _key)
        self.unsettled_compiles = 0  # compiles dynamo made on a call we thought it would not (should stay 0)
        if compiled_for is not None:
            self._seen.update(self._key(torch.cat([compiled_for[:1]] * b)) for b in WARMUP_BATCHES)

    @property
    def label(self) -> str:
        return f"PT2E {self.precision.upper()}"

    @property
    def size_mb(self) -> float:
        return len(self.data) / 1e6

    def _key(self, x: torch.Tensor) -> tuple[Any, ...]:
        """What dynamo's guards tell apart for our graphs: batch (1 or more), other sizes, dtype, layout, flags."""
        batch: Any = x.shape[0] == 1 if self.dynamic else x.shape[0]
        return (x.dtype, tuple(x.shape[1:]), batch, x.is_contiguous(), x.is_inference(), x.requires_grad)

    def __call__(self, x: torch.Tensor) -> Any:
        """Always in no_grad outside inference mode (the benchmark times under inference_mode, evaluate under
        no_grad; dynamo would compile again for each), with the build's thread count (dynamo guards on it)."""
        key = self._key(x)
        with _threads(self.threads), torch.inference_mode(False), torch.no_grad():
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
        with _threads(max(1, int(inp.threads))):
            program, notes = _export(inp.model, inp.example)
            if precision == "int8":
                converted, more = _quantize(program, inp, strict=not notes)
                notes += more
                try:
                    _drop_unused_state(converted)
                    with _quiet():
                        program = torch.export.export(
                            converted, (_pair(inp.example),), dynamic_shapes=_batch_dim(), strict=False
                        )
                except Exception as exc:
                    raise RuntimeUnavailable(f"torch.export could not capture the INT8 model: {_short(exc)}") from exc
            try:
                data = _serialize(program)
            except Exception as exc:
                raise RuntimeUnavailable(f"torch.export.save could not serialize the model: {_short(exc)}") from exc
            compiled, dynamic, more = _compile(program, inp.example, precision, inp.threads)
        art = Pt2Artifact(
            compiled, data, precision, inp.threads, notes + more, dynamic=dynamic, compiled_for=inp.example
        )
        art.build_seconds = time.perf_counter() - start
        log.info("PT2E %s built in %.1f s", precision, art.build_seconds)
        return art

    def load(self, files: Sequence[Path], precision: str) -> Artifact:
        """Load a ``.pt2`` and compile it with the current torch thread count (the interface passes none)."""
        data = Path(files[0]).read_bytes()
        if precision == "int8":
            _torchao()  # the quantized ops' inductor patterns
        try:
            with _quiet():
                program = torch.export.load(io.BytesIO(data))
        except Exception as exc:
            raise RuntimeUnavailable(f"could not read the PT2 file {files[0]}: {_short(exc)}") from exc
        threads = torch.get_num_threads()
        example = _placeholder_example(program)
        compiled, dynamic, notes = _compile(program, example, precision, threads)
        return Pt2Artifact(compiled, data, precision, threads, notes, dynamic=dynamic, compiled_for=example)
