"""ONNX Runtime: the float model exported to ONNX, run as is (FP32) or statically quantized to QDQ INT8.

Export goes to memory.  The TorchScript-based exporter (``dynamo=False``) is
tried first: it exports resnet18 in about a second where the torch.export-based
one takes ten, takes a batch-1 example with a dynamic batch dimension, and names
nodes by module path (``/layer1/layer1.0/conv1/Conv``).  When it fails, or its
graph does not reproduce PyTorch at another batch size, the torch.export-based
exporter (``dynamo=True``) is tried; its nodes carry ``name_scopes`` metadata.
Either way nodes map back to the user's module names, so ``skip`` stays float.

INT8 is ``quantize_static`` in QDQ format on exactly the run's calibration
batches after ``quant_pre_process``: per-channel QInt8 weights and QUInt8
activations (ORT's x86 kernels are u8 x s8: on an AVX512-VNNI CPU u8
activations ran resnet18 about 3x faster than s8 at the same cosine).
Sessions use the benchmark's thread count with spinning off, so idle pool
threads give the cores back to torch.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import platform
import re
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.native_output import native_streams_captured as _native_streams_captured
from qstudio.core.runtimes.base import (
    Artifact,
    BuildInput,
    RuntimeUnavailable,
    first_line,
    package_missing,
    torch_outputs,
)
from qstudio.core.runtimes.onnx_names import float_nodes

log = logging.getLogger(__name__)

TITLE = "ONNX Runtime"
EXPORTERS = ("torchscript", "dynamo")  # the order they are tried in
EXPORTER_NAMES = {"torchscript": "TorchScript-based ONNX exporter", "dynamo": "torch.export-based ONNX exporter"}
LEGACY_OPSET = 17  # runs on every ONNX Runtime since 1.11; per-channel QDQ needs 13
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir", "onnxruntime")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


# -- quiet ------------------------------------------------------------------------------
def _library_record(record: logging.LogRecord) -> bool:
    """ORT's quantization tool logs through the root logger (``logging.warning``); keep that out of the app's log."""
    return not any(part in record.pathname for part in ("onnxruntime", "onnxscript", "onnx_ir"))


@contextlib.contextmanager
def _quiet(what: str, native: bool = False) -> Iterator[None]:
    """Silence the exporters' and the quantizer's chatter; failures still raise, and what they said is logged.

    ``native`` also captures file descriptors 1 and 2 (only around the
    TorchScript exporter: a crash report written meanwhile would land there too).
    """
    sink, root = io.StringIO(), logging.getLogger()
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    # ``logging.warning()`` on a root logger without handlers would install one on stderr for the whole app
    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder:
        root.addHandler(placeholder)
    root.addFilter(_library_record)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            with _native_streams_captured(sink) if native else contextlib.nullcontext():
                yield
    except BaseException:
        log.debug("%s failed; its output:\n%s", what, sink.getvalue()[-20000:])
        raise
    finally:
        root.removeFilter(_library_record)
        if placeholder:
            root.removeHandler(placeholder)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _reason(exc: BaseException) -> str:
    """One readable line for an error: its innermost ``raise ... from`` cause (the one that names the op), uncoloured."""
    while exc.__cause__ is not None and str(exc.__cause__).strip():
        exc = exc.__cause__
    line = _ANSI.sub("", first_line(exc))
    return line if len(line) <= 200 else line[:197] + "..."


# -- sessions ---------------------------------------------------------------------------
def session(data: bytes, threads: int) -> Any:
    """A CPU session with ``threads`` intra-op threads that do not spin between calls."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: shape-mismatch warnings are not the user's business
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _numpy(x: torch.Tensor, dtype: Any) -> np.ndarray:
    arr = x.detach().cpu().contiguous().numpy()
    return arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)


class OnnxArtifact:
    """An ONNX model and its session: called like the torch model, saved as the ``.onnx`` file it runs."""

    runtime = "onnx"

    def __init__(self, data: bytes, precision: str, threads: int, notes: list[str] | None = None, sess: Any = None):
        self.data, self.precision, self.notes = data, precision, list(notes or [])
        self.label = f"{TITLE} {precision.upper()}"
        self.size_mb = len(data) / 1e6  # exactly what save() writes
        self.session = sess if sess is not None else session(data, threads)
        first = self.session.get_inputs()[0]
        self._input, self._dtype = first.name, _ONNX_DTYPES.get(first.type)

    def __call__(self, x: torch.Tensor) -> Any:
        return torch_outputs(self.session.run(None, {self._input: _numpy(x, self._dtype)}))

    def save(self, path: Path) -> list[Path]:
        atomic_write_bytes(path, self.data, "ONNX model")
        return [Path(path)]


# -- export -----------------------------------------------------------------------------
def _tensors(out: Any) -> list[torch.Tensor]:
    leaves = torch.utils._pytree.tree_leaves(out.to_tuple() if hasattr(out, "to_tuple") else out)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _export_torchscript(model: nn.Module, example: torch.Tensor, outputs: int) -> bytes:
    names = ["output"] + [f"output_{i}" for i in range(1, outputs)]
    axes = {name: {0: "batch"} for name in ["input", *names]}
    buffer = io.BytesIO()
    kw = {"input_names": ["input"], "output_names": names, "dynamic_axes": axes, "opset_version": LEGACY_OPSET}
    torch.onnx.export(model, (example,), buffer, dynamo=False, **kw)
    return buffer.getvalue()


def _export_dynamo(model: nn.Module, example: torch.Tensor) -> bytes:
    # torch.export specialises a dimension of size 1, so the example goes in as a batch of 2
    pair = example.repeat(2, *([1] * (example.dim() - 1))) if example.shape[0] == 1 else example
    shapes = ({0: torch.export.Dim("batch")},)
    program = torch.onnx.export(
        model, (pair,), dynamo=True, verbose=False, input_names=["input"], dynamic_shapes=shapes
    )
    return program.model_proto.SerializeToString()


def _check(data: bytes, inputs: list[torch.Tensor], refs: list[list[torch.Tensor]], threads: int) -> Any:
    """The exported graph must give PyTorch's outputs at batch 1 and at another batch size; returns its session."""
    sess = session(data, threads)
    first = sess.get_inputs()[0]
    shape = first.shape
    if shape and not isinstance(shape[0], str) and shape[0] is not None:
        raise ValueError(f"the exported graph fixed the batch size to {shape[0]}")
    for x, ref in zip(inputs, refs, strict=True):
        got = sess.run(None, {first.name: _numpy(x, _ONNX_DTYPES.get(first.type))})
        if len(got) != len(ref):
            raise ValueError(f"the exported graph has {len(got)} outputs, PyTorch's model {len(ref)}")
        for g, r in zip(got, ref, strict=True):
            g, r = torch.from_numpy(np.asarray(g)).float(), r.detach().float()
            if g.shape != r.shape:
                raise ValueError(f"at batch {len(x)} an output has shape {list(g.shape)}, PyTorch's {list(r.shape)}")
            g, r = torch.nan_to_num(g), torch.nan_to_num(r)  # NaN where PyTorch has NaN is a match
            diff, scale = (float((g - r).abs().max()), float(r.abs().max())) if r.numel() else (0.0, 0.0)
            if not diff <= 1e-3 * max(scale, 1e-3):
                raise ValueError(f"at batch {len(x)} outputs differ from PyTorch's by {diff:.3g} (largest {scale:.3g})")
    return sess


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    second: torch.Tensor,
    threads: int = 1,
    exporters: Sequence[str] = EXPORTERS,
) -> tuple[bytes, str, Any, list[str]]:
    """Export ``model`` with the first exporter whose graph matches PyTorch at batch 1 and at ``second``'s batch.

    Returns the ONNX bytes, the exporter used, its checked session and the
    failures of exporters tried before it.  Raises :class:`RuntimeUnavailable`
    when none works, chained to the first exporter's error.
    """
    inputs = [example, second]
    try:
        with torch.no_grad():
            refs = [_tensors(model(x)) for x in inputs]
    except Exception as exc:  # the model's own error, whatever its type
        raise RuntimeUnavailable(
            f"the model fails in PyTorch on a batch of {len(second)} ({_reason(exc)}); ONNX Runtime needs any batch size"
        ) from exc
    failures: list[tuple[str, BaseException]] = []
    for exporter in exporters:
        try:
            with _quiet(f"ONNX export ({exporter})", native=exporter == "torchscript"):
                if exporter == "torchscript":
                    data = _export_torchscript(model, example, len(refs[0]))
                else:
                    data = _export_dynamo(model, example)
                sess = _check(data, inputs, refs, threads)
            tried = [f"the {EXPORTER_NAMES[name]} failed ({_reason(exc)})" for name, exc in failures]
            return data, exporter, sess, tried
        except Exception as exc:  # the exporters raise anything from TypeError to their own error classes
            failures.append((exporter, exc))
    why = "; ".join(f"{EXPORTER_NAMES[name]}: {_reason(exc)}" for name, exc in failures)
    raise RuntimeUnavailable(f"the model could not be exported to ONNX ({why})") from failures[0][1]


# -- INT8 -------------------------------------------------------------------------------------
def _vnni() -> bool:
    """True where ORT's u8 x s8 kernels cannot saturate (VNNI, or not x86); elsewhere weights use 7 bits."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    with contextlib.suppress(OSError):
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(Path("/proc/cpuinfo").read_text().split()))
    return False


def quantize(data: bytes, inp: BuildInput, notes: list[str]) -> bytes:
    """QDQ INT8 from the float ONNX ``data``, calibrated on exactly ``inp.calibration_batches()``."""
    import onnx
    from onnxruntime import quantization as oq

    settings = {
        "quant_format": oq.QuantFormat.QDQ,
        "per_channel": True,
        "reduce_range": not _vnni(),
        "activation_type": oq.QuantType.QUInt8,
        "weight_type": oq.QuantType.QInt8,
    }
    batches = inp.calibration_batches()
    if not batches:
        raise RuntimeUnavailable("ONNX Runtime INT8 needs calibration data; this run has none")

    class Reader(oq.CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._it = iter([{name: _numpy(b, None)} for b in batches])  # in the dtype the graph was exported for

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="qstudio-onnx-", dir=inp.workdir) as tmp:
        src, pre, out = Path(tmp, "float.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(data)
        model_in = src
        for skip_symbolic in (False, True):  # symbolic shape inference fails on some graphs; ONNX's own may not
            try:
                with _quiet("quant_pre_process"):
                    oq.quant_pre_process(str(src), str(pre), skip_symbolic_shape=skip_symbolic)
                model_in = pre
                break
            except Exception as exc:  # the pre-processing is an optimisation; quantization works without it
                reason = _reason(exc)
        if model_in is src:
            notes.append(f"ONNX Runtime INT8: shape pre-processing failed ({reason}); quantized without it")
        graph = onnx.load(str(model_in), load_external_data=False).graph
        exclude, skip_notes = float_nodes(graph.node, inp.model, inp.skip, inp.groups)
        notes += skip_notes
        with _quiet("quantize_static"):
            reader = Reader(graph.input[0].name)
            oq.quantize_static(str(model_in), str(out), reader, nodes_to_exclude=exclude or None, **settings)
        return out.read_bytes()


# -- the runtime ----------------------------------------------------------------------------
class OnnxRuntime:
    name = "onnx"
    title = TITLE
    suffix = ".onnx"
    compared_by_default = True

    def missing(self) -> str | None:
        return package_missing("onnxruntime", "onnx")

    def precisions(self) -> list[str]:
        return ["fp32", "int8"]  # no bf16: the CPU provider has no real BF16 kernels

    def build(self, inp: BuildInput, precision: str) -> Artifact:
        if precision not in self.precisions():
            raise RuntimeUnavailable(f"ONNX Runtime offers no {precision} build (only FP32 and INT8)")
        missing = self.missing()
        if missing:
            raise RuntimeUnavailable(missing)
        data, exporter, sess, failed = _export_once(inp, EXPORTERS)
        notes = []
        if failed:
            notes.append(f"ONNX Runtime: exported with the {EXPORTER_NAMES[exporter]} because {'; '.join(failed)}")
        if precision == "fp32":
            return OnnxArtifact(data, "fp32", inp.threads, notes, sess)
        try:
            qdata = quantize(data, inp, notes)
            return OnnxArtifact(qdata, "int8", inp.threads, notes)
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # ORT's quantizer raises anything from KeyError to its own Fail
            raise RuntimeUnavailable(f"ONNX Runtime could not quantize the model to INT8 ({_reason(exc)})") from exc

    def load(self, files: Sequence[Path], precision: str) -> Artifact:
        path = Path(files[0])
        try:
            return OnnxArtifact(path.read_bytes(), precision, torch.get_num_threads())
        except Exception as exc:  # a truncated file or a graph this ORT cannot run
            raise RuntimeUnavailable(f"ONNX Runtime could not load {path} ({_reason(exc)})") from exc


#: the last export, kept while its model lives: the pipeline builds FP32 and then INT8 from the same model
_LAST: dict[str, Any] = {}


def _export_once(inp: BuildInput, exporters: Sequence[str]) -> tuple[bytes, str, Any, list[str]]:
    """:func:`export_onnx`, or the last export (or refusal) again while the model's tensors and modes are unchanged."""
    model, example = inp.model, inp.example
    tensors = tuple((t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    modes = tuple(m.training for m in model.modules())
    key = (id(model), tuple(example.shape), example.dtype, tuple(exporters), tensors, modes)
    if _LAST.get("key") == key and _LAST["model"]() is model:
        if isinstance(_LAST["export"], RuntimeUnavailable):  # INT8 after a refused FP32: do not try again
            raise RuntimeUnavailable(str(_LAST["export"])) from _LAST["export"].__cause__
        return _LAST["export"]
    _LAST.clear()
    ref = weakref.ref(model, lambda _ref: _LAST.clear())
    second, real = example.repeat(2, *([1] * (example.dim() - 1))), inp.calib.inputs
    if len(real) >= 2 and real.dtype == example.dtype and real.shape[1:] == example.shape[1:]:
        second = real[:2]  # two real samples check the graph at a batch size other than 1 better than copies
    try:
        data, exporter, sess, failed = export_onnx(model, example, second, inp.threads, exporters)
    except RuntimeUnavailable as exc:
        _LAST.update(key=key, model=ref, export=exc)
        raise
    _LAST.update(key=key, model=ref, export=(data, exporter, None, failed))
    return data, exporter, sess, failed
