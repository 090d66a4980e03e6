"""OpenVINO as a deployment target: FP32, BF16 (where the CPU has it) and NNCF post-training INT8.

The user's model goes through OpenVINO's PyTorch frontend with a dynamic
batch dimension, then through the same offline transformations
``openvino.convert_model`` applies.  We run those steps ourselves instead of
calling ``convert_model`` for one reason: ``convert_model`` erases the
record of which PyTorch ops each OpenVINO op was made from, and a
convolution folded with its BatchNorm gets a generated name
(``Multiply_5466``), so a layer the user keeps in float could not be found
again.  Read before the cleanup, that record (``fused_names``) maps
``layer1.0.conv1`` to its op whatever it was fused into.  Where those
internal steps are missing (another OpenVINO version) we fall back to
``convert_model`` and match the op names it keeps.

INT8 is ``nncf.quantize`` on exactly the calibration batches torch.ao saw,
with the kept-float layers as NNCF's ignored scope.  Every artifact is
compiled with FP32 set explicitly (OpenVINO's default on a BF16-capable CPU
is BF16, and a figure called FP32 must be FP32), one stream, the run's
thread count and no core pinning.  OpenVINO's TBB workers linger for well
under a millisecond of CPU after a call and then sleep (measured; there is
no property for it), unlike an OpenMP pool spinning between calls.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qstudio.core import fileio
from qstudio.core.errors import ExportError
from qstudio.core.runtimes.base import (
    BuildInput,
    RuntimeUnavailable,
    cpu_has_bf16,
    first_line,
    package_missing,
    torch_outputs,
)

#: INFERENCE_PRECISION_HINT per precision.  INT8's float parts (the kept-float layers, softmax, the first
#: layer's input) run in f32 so a layer the user keeps in float really is float; see benchmarks/runtime_openvino.py
#: for what bf16 there would change.
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

_core: Any = None
_lock = threading.Lock()


def core() -> Any:
    """One ``openvino.Core`` per process: it owns the CPU plugin and its thread pools."""
    global _core
    with _lock:
        if _core is None:
            import openvino

            _core = openvino.Core()
    return _core


def _nncf() -> Any:
    """Import NNCF quietly: no usage telemetry sent to the network, no log lines, no progress bars."""
    with _lock:
        if "nncf" not in sys.modules:
            # NNCF phones home unless told it runs in CI; NNCF_CI only switches that off, and only at import
            before = os.environ.get("NNCF_CI")
            os.environ["NNCF_CI"] = "1"
            try:
                import nncf
            finally:
                if before is None:
                    os.environ.pop("NNCF_CI", None)
                else:
                    os.environ["NNCF_CI"] = before
        import nncf
    nncf.set_log_level(logging.ERROR)
    return nncf


def rich_console() -> Any:
    from rich import get_console

    return get_console()


def compile_config(precision: str, threads: int, hint: str | None = None) -> dict[str, Any]:
    return {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": max(int(threads), 1),
        "INFERENCE_PRECISION_HINT": hint or HINTS[precision],
        # pinned workers would all land on the same cores as every other OpenVINO process and torch's threads
        "ENABLE_CPU_PINNING": False,
    }


# -- conversion -------------------------------------------------------------------------
def _dynamic_batch(example: torch.Tensor) -> Any:
    import openvino

    return openvino.PartialShape([-1, *example.shape[1:]])


def _convert_frontend(model: nn.Module, example: torch.Tensor) -> tuple[Any, dict[str, list[str]]]:
    """convert_model's steps, reading which PyTorch ops each final op came from before that record is erased."""
    from openvino._offline_transformations import (
        apply_fused_names_cleanup,
        apply_moc_transformations,
        compress_quantize_weights_transformation,
    )
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    with torch.no_grad():
        # no trace check: it runs the model again and compares (4x the conversion time on resnet18); the
        # comparison with FP32 eager that every artifact goes through catches a wrong trace anyway
        decoder = TorchScriptPythonDecoder(
            model, example_input=(example,), shared_memory=False, trace_kwargs={"check_trace": False}
        )
    fe = FrontEndManager().load_by_framework("pytorch")
    im = fe.load(decoder)
    place = im.get_inputs()[0]
    im.set_partial_shape(place, _dynamic_batch(example))
    ov_model = fe.convert(im)
    apply_moc_transformations(ov_model, cf=False, smart_reshape=True)
    compress_quantize_weights_transformation(ov_model)
    origin = {op.get_friendly_name(): _sources(op) for op in ov_model.get_ordered_ops()}
    apply_fused_names_cleanup(ov_model)
    return ov_model, origin


def _fused(op: Any) -> list[str]:
    info = op.get_rt_info()
    fused = info["fused_names_0"].astype(str) if "fused_names_0" in info else ""
    return [n for n in str(fused).split(",") if n] or [op.get_friendly_name()]


def _sources(op: Any) -> list[str]:
    """The PyTorch ops an op was made from, its weights' included.

    The record of a fused op is not always complete (a depthwise conv folded
    with its BatchNorm keeps only the BatchNorm's name), but its weights
    remember the layer they came from, so an op owns what its constant
    inputs (through a short chain of reshapes or converts) were made from.
    """
    names = _fused(op)
    if op.get_type_name() == "Constant":
        return names
    todo = [(i.get_source_output().get_node(), 0) for i in op.inputs()]
    while todo:
        node, depth = todo.pop()
        if node.get_type_name() == "Constant":
            names += [n for n in _fused(node) if n not in names]
        elif depth < 2 and all(i.get_source_output().get_node().get_type_name() == "Constant" for i in node.inputs()):
            todo += [(i.get_source_output().get_node(), depth + 1) for i in node.inputs()]
    return names


def _convert_public(model: nn.Module, example: torch.Tensor) -> tuple[Any, dict[str, list[str]]]:
    import openvino

    with torch.no_grad():
        ov_model = openvino.convert_model(model, example_input=example, input=[_dynamic_batch(example)])
    return ov_model, {op.get_friendly_name(): [op.get_friendly_name()] for op in ov_model.get_ordered_ops()}


def convert(model: nn.Module, example: torch.Tensor) -> tuple[Any, dict[str, list[str]]]:
    """The OpenVINO model (batch dimension dynamic) and, per op name, the PyTorch ops it was made from."""
    try:
        try:
            return _convert_frontend(model, example)
        except (ImportError, AttributeError, TypeError):  # OpenVINO's internals moved: the public route
            return _convert_public(model, example)
    except Exception as exc:
        raise RuntimeUnavailable(f"OpenVINO could not convert this model: {reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    """The line of an OpenVINO error a user can act on, not the C++ source position it starts with."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("No conversion rule found for operations:"):
            return "it has no conversion for the PyTorch ops " + line.split(":", 1)[1].strip()
    useful = [line for line in lines if not line.startswith(("Check '", "FrontEnd API failed", "Exception from"))]
    return f"{type(exc).__name__}: {useful[0]}" if useful else first_line(exc)


def float_scope(origin: dict[str, list[str]], ops: dict[str, str], skip: Sequence[str]) -> tuple[list[str], list[str]]:
    """The op names that come from the kept-float layers, and the notes (one per layer, matched or not).

    OpenVINO names each op after the PyTorch module path that made it
    (``__module.layer1.0.conv1/aten::_convolution/Convolution``); a layer
    matches its own ops and its children's, never ``layer1.0.conv10``'s.
    """
    names: list[str] = []
    notes: list[str] = []
    for layer in skip:
        heads = (f"__module.{layer}/", f"__module.{layer}.", f"self.{layer}.")
        found = [
            op
            for op, sources in origin.items()
            if ops.get(op) not in (None, "Constant", "Parameter", "Result")
            and any(s.startswith(heads) for s in sources)
        ]
        if found:
            names += [op for op in found if op not in names]
            kinds = sorted({ops[op] for op in found})
            count = f"{len(found)} op{'s' if len(found) > 1 else ''}"
            notes.append(f"{layer} kept in float in OpenVINO INT8 ({count}: {', '.join(kinds)})")
        else:
            notes.append(
                f"{layer} is to be kept in float, but no OpenVINO op comes from a layer of that name, so nothing "
                "was kept float for it: check the name against the model's layers (it must run in forward)"
            )
    return names, notes


def quantize(ov_model: Any, inp: BuildInput, ignored: list[str]) -> Any:
    """NNCF post-training INT8 on exactly the torch.ao calibration batches."""
    try:
        nncf = _nncf()
    except ImportError as exc:
        raise RuntimeUnavailable("OpenVINO INT8 needs NNCF, which is not installed (pip install nncf)") from exc
    batches = [x.detach().cpu().numpy() for x in inp.calibration_batches()]
    if not batches:
        raise RuntimeUnavailable("OpenVINO INT8 needs calibration data, and the calibration set is empty")
    samples = sum(len(b) for b in batches)
    scope = nncf.IgnoredScope(names=ignored, validate=False) if ignored else None
    console = rich_console()
    quiet, console.quiet = console.quiet, True  # NNCF draws its progress bars on rich's global console
    try:
        return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=samples, ignored_scope=scope)
    except Exception as exc:
        raise RuntimeUnavailable(f"NNCF could not quantize this model for OpenVINO: {reason(exc)}") from exc
    finally:
        console.quiet = quiet


def compile_model(ov_model: Any, precision: str, threads: int, hint: str | None = None) -> Any:
    try:
        return core().compile_model(ov_model, "CPU", compile_config(precision, threads, hint))
    except Exception as exc:
        raise RuntimeUnavailable(f"OpenVINO could not compile this model for the CPU: {reason(exc)}") from exc


# -- the artifact -----------------------------------------------------------------------
class OpenVinoArtifact:
    """A compiled OpenVINO model: call it like the torch model; its export is the ``.xml`` + ``.bin`` pair."""

    runtime = "openvino"

    def __init__(
        self,
        compiled: Any,
        precision: str,
        files: tuple[Path, Path],
        notes: list[str] | None = None,
        owned: Path | None = None,
        kept_float: list[str] | None = None,
    ):
        if owned is not None:  # the private folder holding the serialized pair goes with the artifact
            weakref.finalize(self, shutil.rmtree, owned, True)
        self.compiled = compiled
        self.precision = precision
        self.label = f"OpenVINO {precision.upper()}"
        self.notes = list(notes or [])
        #: the OpenVINO ops NNCF was told to leave in float (from the user's kept-float layers)
        self.kept_float = list(kept_float or [])
        self._xml, self._bin = files
        self.size_mb = (self._xml.stat().st_size + self._bin.stat().st_size) / 1e6
        self._request = compiled.create_infer_request()
        self._outputs = list(compiled.outputs)
        self._dtype = compiled.input(0).get_element_type().to_dtype()
        self._call_lock = threading.Lock()  # one InferRequest runs one call at a time

    @property
    def ir_files(self) -> tuple[Path, Path]:
        """The serialized ``.xml`` and ``.bin`` every save() copies (private to the artifact, or the loaded files)."""
        return self._xml, self._bin

    def __call__(self, x: torch.Tensor) -> Any:
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = np.ascontiguousarray(arr, dtype=self._dtype)
        with self._call_lock:
            result = self._request.infer({0: arr}, share_inputs=True, share_outputs=False)
        return torch_outputs([result[o] for o in self._outputs])

    def executed(self) -> list[tuple[str, str, list[str]]]:
        """What the CPU plugin really runs: (kind, precision, the model's ops it fused) for each executed node."""
        nodes = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
            kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
            nodes.append((kind, precision, [n for n in names.split(",") if n]))
        return nodes

    def save(self, path: Path) -> list[Path]:
        """Copy the pair next to ``path`` atomically (the ``.bin`` first: a new ``.xml`` never meets an old one)."""
        xml = Path(path).with_suffix(".xml")
        binary = xml.with_suffix(".bin")
        fileio.check_target(xml, "OpenVINO model")
        fileio.check_space(xml, self._xml.stat().st_size + self._bin.stat().st_size, "OpenVINO model")
        for src, dst in ((self._bin, binary), (self._xml, xml)):
            with fileio.atomic_path(dst, "OpenVINO model") as tmp:
                shutil.copyfile(src, tmp)
        return [xml, binary]


def _save_ir(ov_model: Any, workdir: Path | None) -> tuple[Path, Path]:
    """Serialize once into a private folder: the export's exact bytes and size, copied by every save()."""
    import openvino

    folder = Path(tempfile.mkdtemp(prefix="openvino-", dir=workdir))
    xml = folder / "model.xml"
    try:
        openvino.save_model(ov_model, str(xml), compress_to_fp16=False)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeUnavailable(f"OpenVINO could not serialize this model ({first_line(exc)})") from exc
    return xml, xml.with_suffix(".bin")


class OpenVinoRuntime:
    """OpenVINO on the CPU: FP32, BF16 where the CPU computes it natively, and NNCF INT8."""

    name = "openvino"
    title = "OpenVINO"
    suffix = ".xml"
    compared_by_default = True

    def missing(self) -> str | None:
        return package_missing("openvino")

    def precisions(self) -> list[str]:
        return ["fp32", "bf16", "int8"] if cpu_has_bf16() else ["fp32", "int8"]

    def build(self, inp: BuildInput, precision: str) -> OpenVinoArtifact:
        if precision not in self.precisions():
            raise RuntimeUnavailable(f"OpenVINO offers no {precision.upper()} on this CPU")
        ov_model, origin = convert(inp.model, inp.example)
        notes: list[str] = []
        ignored: list[str] = []
        if precision == "int8":
            ops = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ordered_ops()}
            ignored, notes = float_scope(origin, ops, inp.skip)
            ov_model = quantize(ov_model, inp, ignored)
        files = _save_ir(ov_model, inp.workdir)
        try:
            compiled = compile_model(ov_model, precision, inp.threads)
        except BaseException:
            shutil.rmtree(files[0].parent, ignore_errors=True)
            raise
        return OpenVinoArtifact(compiled, precision, files, notes, owned=files[0].parent, kept_float=ignored)

    def load(self, files: Sequence[Path], precision: str) -> OpenVinoArtifact:
        xml = next((Path(f) for f in files if Path(f).suffix == ".xml"), None)
        if xml is None or not xml.with_suffix(".bin").exists():
            raise ExportError(
                f"the OpenVINO export is incomplete: {[str(f) for f in files]} lacks its .xml or the .bin beside it",
                "save the model again",
            )
        try:
            model = core().read_model(str(xml))
        except Exception as exc:
            raise ExportError(
                f"OpenVINO could not read {xml} back ({first_line(exc)})", "save the model again"
            ) from exc
        # the interface gives load() no thread count: the benchmark's torch setting is the run's setting
        compiled = compile_model(model, precision, torch.get_num_threads())
        return OpenVinoArtifact(compiled, precision, (xml, xml.with_suffix(".bin")))
