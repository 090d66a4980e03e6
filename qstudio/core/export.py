"""Export a (quantized) model as a verified TorchScript file.

An export the user cannot load, or that computes something different from
what the studio measured, is worse than no export.  So the model is
serialized to memory, those exact bytes are reloaded with ``torch.jit.load``
and run on the example input, and only when their outputs match the
in-memory model are they written - atomically, through
:func:`~qstudio.core.fileio.atomic_write_bytes` - over the target.

Serializing to memory first matters: torch's C++ zip writer, writing to a
file on a full disk, throws from a destructor and aborts the process.  Python
file I/O raises ``OSError`` instead, which becomes an :class:`ExportError`
("the disk holding ... is full").  Any failure leaves an earlier file at the
target byte-for-byte untouched and no temporary file behind.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudio.core.benchmark import call_model, eval_mode
from qstudio.core.errors import ExportError
from qstudio.core.fileio import atomic_write_bytes, check_target
from qstudio.core.torchscript import output_max_abs_diff, to_torchscript

log = logging.getLogger(__name__)

#: The largest difference between the reloaded file's outputs and the in-memory model's that passes.
DEFAULT_ATOL = 1e-4


@dataclass
class ExportInfo:
    """What was written and how well it verified."""

    path: str
    method: str  # "traced" or "scripted" for TorchScript; how another runtime's file was made
    size_mb: float
    max_abs_diff: float  # between the reloaded file's outputs and the in-memory model's on the example
    verified: bool
    runtime: str = "torchscript"  # the runtime that loads the file (qstudio.core.runtimes)
    precision: str = "int8"
    files: list[str] = field(default_factory=list)  # every file written (OpenVINO: the .xml and its .bin)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "files": self.files or [self.path]}


def _last_line(exc: BaseException) -> str:
    """The message's last line: a TorchScript interpreter error ends with the actual error under its traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    *,
    atol: float = DEFAULT_ATOL,
    check_inputs: Sequence[Any] = (),
    method: str = "auto",
) -> ExportInfo:
    """Convert ``model`` with :func:`to_torchscript`, save it atomically at ``path`` and verify it.

    The in-memory ``model`` (eval mode, no grad) is the reference: comparing
    against it checks conversion and serialization together.  For a quantized
    model the two run the same quantized kernels, so the difference should be
    zero or a few quantization steps at most; ``atol`` applies to dequantized
    values.  Raises :class:`ExportError` (earlier file intact, no temp file
    left) when the folder is missing or not writable, when writing fails, or
    when the reloaded outputs differ by more than ``atol``.

    ``check_inputs`` are further inputs (other samples, another batch size)
    the file must also reproduce: a traced model can bake in the example's
    shapes or a branch taken for it, and one input alone would not show that.

    ``method`` is ``"auto"`` (trace, script where tracing fails or is unsafe),
    ``"trace"`` or ``"script"``: the other way may convert a model the first
    could not, or give a file that reloads and verifies.
    """
    path = Path(path)
    check_target(path, "TorchScript file")  # a bad location fails before minutes of conversion
    if not atol >= 0:  # also NaN
        raise ExportError(
            f"the export tolerance {atol} is not a number >= 0", f"give a tolerance like {DEFAULT_ATOL:g}"
        )
    module, method = to_torchscript(model, example, method)
    buffer = io.BytesIO()
    try:
        # to memory, never to the file: torch's C++ zip writer reports a full disk by throwing from a
        # destructor, which aborts the whole process; Python's own file I/O below raises OSError instead
        torch.jit.save(module, buffer)
    except (OSError, RuntimeError) as exc:
        raise ExportError(
            f"the model could not be serialized as TorchScript for {path} ({_first_line(exc)})",
            "export again; if it keeps failing, report it with the model",
        ) from exc
    data = buffer.getvalue()
    try:
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:
        raise ExportError(
            f"the {method} TorchScript serialized for {path} could not be loaded back ({_first_line(exc)})",
            f"export with the other conversion ({'scripting' if method == 'traced' else 'tracing'} instead of "
            f"{'tracing' if method == 'traced' else 'scripting'}); if that fails too, report it with the model",
        ) from exc
    diff = 0.0
    loaded.eval()
    for i, x in enumerate([example, *check_inputs]):
        which = "the example input" if i == 0 else f"check input {i} (the {method} file does not generalise)"
        with eval_mode(model), torch.no_grad():
            expected: Any = call_model(model, x)
            try:
                actual: Any = call_model(loaded, x)
            except Exception as exc:  # e.g. a trace that baked in the example's batch size
                raise ExportError(
                    f"the exported file fails on {which}: {_last_line(exc)}",
                    f"export with the other conversion ({'scripting' if method == 'traced' else 'tracing'}), "
                    "or make forward() free of shapes and branches fixed at trace time",
                ) from exc
        diff = max(diff, output_max_abs_diff(expected, actual))
        if diff <= atol:  # also catches NaN
            continue
        raise ExportError(
            f"the exported model's outputs differ from the in-memory model by {diff:.3g} on {which} (more than {atol:g})",
            "check the model has no randomness or data-dependent control flow in eval mode, "
            "try the other conversion (scripting or tracing), "
            "or raise the export tolerance above the difference if it is acceptable",
        )
    atomic_write_bytes(path, data, "TorchScript file")  # ExportError on a full or read-only disk, earlier file kept
    size_mb = len(data) / 1e6
    log.info("exported %s (%s, %.2f MB, max abs diff %.3g)", path, method, size_mb, diff)
    return ExportInfo(path=str(path), method=method, size_mb=size_mb, max_abs_diff=diff, verified=True)
