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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudio.core.benchmark import call_model, eval_mode, output_max_abs_diff, to_torchscript
from qstudio.core.errors import ExportError
from qstudio.core.fileio import atomic_write_bytes, check_target

log = logging.getLogger(__name__)


@dataclass
class ExportInfo:
    """What was written and how well it verified."""

    path: str
    method: str  # "traced" or "scripted"
    size_mb: float
    max_abs_diff: float  # between the reloaded file's outputs and the in-memory model's on the example
    verified: bool


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    *,
    atol: float = 1e-4,
    check_inputs: Sequence[Any] = (),
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
    """
    path = Path(path)
    check_target(path, "TorchScript file")  # a bad location fails before minutes of conversion
    module, method = to_torchscript(model, example)
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
            f"the TorchScript serialized for {path} could not be loaded back ({_first_line(exc)})",
            "export again; if it keeps failing, report it with the model",
        ) from exc
    diff = 0.0
    loaded.eval()
    for i, x in enumerate([example, *check_inputs]):
        with eval_mode(model), torch.no_grad():
            expected: Any = call_model(model, x)
            actual: Any = call_model(loaded, x)
        diff = max(diff, output_max_abs_diff(expected, actual))
        if diff <= atol:  # also catches NaN
            continue
        which = "the example input" if i == 0 else f"check input {i} (the {method} file does not generalise)"
        raise ExportError(
            f"the exported model's outputs differ from the in-memory model by {diff:.3g} on {which} (more than {atol:g})",
            "check the model has no randomness or data-dependent control flow in eval mode, "
            "or raise the tolerance if this difference is acceptable",
        )
    atomic_write_bytes(path, data, "TorchScript file")  # ExportError on a full or read-only disk, earlier file kept
    size_mb = len(data) / 1e6
    log.info("exported %s (%s, %.2f MB, max abs diff %.3g)", path, method, size_mb, diff)
    return ExportInfo(path=str(path), method=method, size_mb=size_mb, max_abs_diff=diff, verified=True)
