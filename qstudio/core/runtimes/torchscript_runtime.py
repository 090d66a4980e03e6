"""TorchScript, the default export: torch.ao's INT8 model traced (or scripted) and frozen; FP32 frozen too.

The pipeline builds both TorchScript models itself (they are the run's
"FP32 TorchScript" and "INT8" contenders) and exports through
:func:`qstudio.core.export.export_torchscript`; this class puts TorchScript in
the runtime registry beside the others, so ``--target torchscript`` and the
runtime table treat it like any runtime.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qstudio.core import torchscript
from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.runtimes.base import Artifact, BuildInput, RuntimeUnavailable, first_line

TITLE = "TorchScript"


@dataclass
class ScriptArtifact:
    module: torch.jit.ScriptModule
    precision: str
    data: bytes | None = (
        None  # the saveable bytes (None for the optimized FP32 baseline, whose MKLDNN weights torch.jit.save drops)
    )
    runtime: str = "torchscript"
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{TITLE} {self.precision.upper()}"

    @property
    def size_mb(self) -> float:
        return len(self.data) / 1e6 if self.data is not None else float("nan")

    def __call__(self, x: torch.Tensor) -> Any:
        with torch.no_grad():
            return self.module(x)

    def save(self, path: Path) -> list[Path]:
        if self.data is None:
            raise RuntimeUnavailable("this TorchScript model is for measuring only; export the INT8 model")
        atomic_write_bytes(path, self.data, "TorchScript file")
        return [Path(path)]


def _bytes(module: torch.jit.ScriptModule) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)  # to memory: torch's zip writer aborts the process on a full disk
    return buffer.getvalue()


class TorchScriptRuntime:
    name = "torchscript"
    title = TITLE
    suffix = ".pt"
    compared_by_default = True

    def missing(self) -> str | None:
        return None  # part of torch

    def precisions(self) -> list[str]:
        return ["fp32", "int8"]

    def build(self, inp: BuildInput, precision: str) -> Artifact:
        try:
            if precision == "fp32":
                return ScriptArtifact(torchscript.freeze_fp32(inp.model, inp.example), "fp32")
            if precision == "int8":
                if inp.quantized is None:
                    raise RuntimeUnavailable("TorchScript INT8 exports torch.ao's quantized model; this run has none")
                module, _method = torchscript.to_torchscript(inp.quantized, inp.example)
                return ScriptArtifact(module, "int8", _bytes(module))
        except RuntimeUnavailable:
            raise
        except Exception as exc:
            raise RuntimeUnavailable(f"TorchScript could not convert the model ({first_line(exc)})") from exc
        raise RuntimeUnavailable(f"TorchScript offers no {precision} build here")

    def load(self, files: Sequence[Path], precision: str) -> Artifact:
        data = Path(files[0]).read_bytes()
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
        return ScriptArtifact(module, precision, data)
