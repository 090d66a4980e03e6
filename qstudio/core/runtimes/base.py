"""Deployment runtimes behind one interface: what a quantized (or float) model runs on once exported.

A :class:`Runtime` (TorchScript, ONNX Runtime, OpenVINO, PT2E/torch.compile)
turns the user's float model - plus, for INT8, the run's calibration data and
the layers the user keeps in float - into an :class:`Artifact`: a callable on
torch tensors that the benchmark times and the comparison evaluates exactly
like the torch.ao model, and that saves itself as the file a deployment loads.

Every runtime call of a third-party package lives in its own module of this
package; the pipeline, the CLI and the window only see these classes.  A
runtime whose package is missing says so in :meth:`Runtime.missing` and is
skipped with that one line; one that cannot take a model raises
:class:`~qstudio.core.errors.RuntimeUnavailable` from :meth:`Runtime.build`
and is skipped the same way - nothing else fails.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from qstudio.core.data import Dataset

#: The precisions a runtime can offer, named truthfully: "bf16" is never called FP32.
PRECISIONS = ("fp32", "bf16", "int8")


class RuntimeUnavailable(Exception):
    """This runtime cannot take this model (or this precision here); the message is the one line the user sees."""


@dataclass
class BuildInput:
    """What every runtime builds from: the same model, calibration data and float layers as the torch.ao run.

    ``model`` is the user's float model in eval mode (never modified: build a
    copy if a runtime must change it).  ``example`` is one input of batch 1 in
    the dtype the model takes.  ``calib`` and ``calib_batches`` x
    ``batch_size`` are the calibration samples the torch.ao flow used;
    ``skip`` the user's module names (``layer1.0.conv1``) to keep in float.
    ``groups`` are the fusion groups (the runtimes fuse on their own; they are
    passed for runtimes that want them).  ``quantized`` is the torch.ao
    result's module when there is one (the TorchScript runtime exports it).
    ``threads`` is the intra-op thread count the benchmark runs with.
    ``workdir`` is a private temporary folder for intermediate files.
    """

    model: nn.Module
    example: torch.Tensor
    calib: Dataset
    calib_batches: int
    batch_size: int
    skip: list[str] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    quantized: nn.Module | None = None
    threads: int = 1
    workdir: Path | None = None

    def calibration_batches(self) -> list[torch.Tensor]:
        """The calibration inputs, batch by batch, exactly as the torch.ao flow saw them."""
        return [x for x, _y in self.calib.batches(self.batch_size, self.calib_batches)]


class Artifact(Protocol):
    """A model built for one runtime at one precision: call it like the torch model, save it as a deployment file.

    ``__call__`` takes the same torch tensor the float model takes (any batch
    size) and returns a torch tensor (or a tuple/list of them for several
    outputs), so :func:`qstudio.core.compare.evaluate` and the benchmark treat
    it like any ``nn.Module``.  ``files`` are what :meth:`save` writes for a
    ``path`` (OpenVINO: ``.xml`` and ``.bin``).
    """

    runtime: str  # the Runtime's name: "torchscript", "onnx", "openvino", "pt2"
    precision: str  # one of PRECISIONS
    label: str  # what tables and charts show: "OpenVINO INT8", "ONNX Runtime FP32"
    size_mb: float  # the size of the deployment file(s)
    notes: list[str]  # what the user should know (layers kept float, a fallback taken)

    def __call__(self, x: torch.Tensor) -> Any: ...

    def save(self, path: Path) -> list[Path]:
        """Write the deployment file(s) at ``path`` (suffix already right) atomically; return what was written."""
        ...


class Runtime(Protocol):
    """One deployment runtime; stateless, registered in :mod:`qstudio.core.runtimes`."""

    name: str  # the --target value: "torchscript", "onnx", "openvino", "pt2"
    title: str  # "ONNX Runtime"
    suffix: str  # the export file's suffix: ".onnx"
    #: measured in every run unless the user narrows --runtimes; False for a runtime whose build takes
    #: minutes here (torch.compile on 2 cores), which is then measured only when asked for by name
    compared_by_default: bool

    def missing(self) -> str | None:
        """Why this runtime cannot run here at all (its package is absent), else None."""
        ...

    def precisions(self) -> list[str]:
        """The precisions it offers on this machine, in PRECISIONS order (bf16 only where the CPU has it)."""
        ...

    def build(self, inp: BuildInput, precision: str) -> Artifact:
        """Build the model for this runtime; raise RuntimeUnavailable with one line when it cannot."""
        ...

    def load(self, files: Sequence[Path], precision: str) -> Artifact:
        """Load a saved artifact back (to verify an export in the runtime that will run it)."""
        ...


def package_missing(*modules: str, extra: str = "") -> str | None:
    """ "onnxruntime is not installed (pip install onnxruntime)" for the first absent module, else None."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            install = extra or module
            return f"{module} is not installed (pip install {install})"
    return None


def cpu_has_bf16() -> bool:
    """True when this CPU computes BF16 natively (AVX512-BF16 or AMX); emulated BF16 is slower than FP32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def torch_outputs(out: Any) -> Any:
    """A runtime's outputs (numpy arrays, a list of them) as the torch model would give them."""
    if isinstance(out, (list, tuple)):
        converted = [torch_outputs(o) for o in out]
        return converted[0] if len(converted) == 1 else tuple(converted)
    if isinstance(out, torch.Tensor):
        return out
    return torch.from_numpy(out.copy() if not out.flags.writeable else out)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


Maker = Callable[[BuildInput, str], Artifact]
