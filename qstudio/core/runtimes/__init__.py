"""Deployment runtimes as targets, dispatched by name like the flows (see :mod:`qstudio.core.runtimes.base`).

``get_runtime("openvino")`` returns the runtime; ``runtime_names()`` lists
them in the order tables show them.  Each runtime's module imports its
third-party package only inside its functions, so listing the runtimes costs
nothing and a missing package only skips that runtime.
"""

from __future__ import annotations

import importlib

from qstudio.core.recipe import RUNTIMES, TARGETS
from qstudio.core.runtimes.base import (
    PRECISIONS,
    Artifact,
    BuildInput,
    Runtime,
    RuntimeUnavailable,
    cpu_has_bf16,
    package_missing,
)

#: name -> "module:class"; the order is the order of tables and charts (the default export first)
_RUNTIMES: dict[str, str] = {
    "torchscript": "qstudio.core.runtimes.torchscript_runtime:TorchScriptRuntime",
    "onnx": "qstudio.core.runtimes.onnx_runtime:OnnxRuntime",
    "openvino": "qstudio.core.runtimes.openvino_runtime:OpenVinoRuntime",
    "pt2": "qstudio.core.runtimes.pt2e:Pt2Runtime",
}

assert tuple(_RUNTIMES) == RUNTIMES, "qstudio.core.recipe.RUNTIMES names the registered runtimes, in order"


def runtime_names() -> list[str]:
    return list(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    try:
        where = _RUNTIMES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}; known: {', '.join(_RUNTIMES)}") from None
    module, cls = where.split(":")
    return getattr(importlib.import_module(module), cls)()


def register_runtime(name: str, where: str) -> None:
    """Add a runtime ("package.module:Class") without touching callers."""
    _RUNTIMES[name] = where


__all__ = [
    "PRECISIONS",
    "TARGETS",
    "Artifact",
    "BuildInput",
    "Runtime",
    "RuntimeUnavailable",
    "cpu_has_bf16",
    "get_runtime",
    "package_missing",
    "register_runtime",
    "runtime_names",
]
