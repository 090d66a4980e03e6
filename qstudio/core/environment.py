"""What machine and PyTorch build a run happened on.

Latency figures mean little without their context: the same INT8 model can be
several times faster on a CPU with VNNI or AMX than on one without, and the
quantized engines available depend on how PyTorch was built.  The report and
the benchmark view show :func:`environment_info`; recipes are checked against
:func:`available_backends` before a long run starts, so a bad backend fails in
the first second instead of after calibration.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path

import torch

import qstudio
from qstudio.core.errors import FlowError
from qstudio.core.recipe import BACKENDS

log = logging.getLogger(__name__)

_CPUINFO = Path("/proc/cpuinfo")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
_AMX_FLAGS = ("amx_int8", "amx_tile")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str] | None]:
    """Return (CPU model name, CPU flags) from /proc/cpuinfo.

    Flags are ``None`` when they cannot be read (macOS, Windows): then we say
    "unknown" rather than claiming the CPU lacks VNNI/AMX.
    """
    name = ""
    flags: frozenset[str] | None = None
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
        if name and flags is not None:
            break
    if not name:
        name = platform.processor() or platform.machine() or "unknown"
    return name, flags


def has_vnni() -> bool:
    """True when the CPU has 8-bit dot-product instructions (VNNI or AMX).

    Without them, x86/fbgemm int8 kernels accumulate pairs in 16 bits and can
    overflow with full 8-bit activations, which is why PyTorch's defaults use
    7-bit activations ("reduce_range").  With them, full 8 bits are safe and
    more accurate in Linear kernels (dynamic quantization); fbgemm's
    depthwise-convolution kernels still saturate, so static models keep 7 bits
    (see qstudio.core.flows.qconfig.reduce_range).
    """
    flags = _cpuinfo()[1]
    return bool(flags and any(f in flags for f in (*_VNNI_FLAGS, *_AMX_FLAGS)))


def _flag_summary(flags: frozenset[str] | None, wanted: tuple[str, ...]) -> str:
    if flags is None:
        return "unknown"
    present = [f for f in wanted if f in flags]
    return f"yes ({', '.join(present)})" if present else "no"


def _torchvision_version() -> str:
    """From the installed metadata: importing torchvision takes over a second and would stall a GUI thread."""
    try:
        return importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def available_backends() -> list[str]:
    """qstudio backend names this PyTorch build can run, in qstudio's order."""
    supported = set(torch.backends.quantized.supported_engines)
    return [name for name in BACKENDS if name in supported]


def check_backend(name: str) -> None:
    """Raise :class:`FlowError` unless quantized backend ``name`` can run here.

    Called before calibration so an unusable backend fails immediately with the
    list of backends that would work.
    """
    available = available_backends()
    if name in available:
        return
    if name not in BACKENDS:
        problem = f"backend {name!r} is not a quantized backend qstudio knows"
    else:
        problem = f"backend {name!r} is not supported on this CPU/PyTorch build"
    fix = f"use one of: {', '.join(available)}" if available else "install a PyTorch build with quantized engines"
    raise FlowError(problem, fix)


def environment_info() -> dict[str, str]:
    """Versions, CPU and threading facts that explain a latency figure.

    Every value is a string so the dict can go straight into a table, a TOML
    file or the HTML report.
    """
    name, flags = _cpuinfo()
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception as exc:  # very old or exotic builds; informational only
        log.debug("get_cpu_capability failed: %s", exc)
        capability = "unknown"
    return {
        "qstudio": qstudio.__version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": _torchvision_version(),
        "os": f"{platform.system()} {platform.release()}".strip() or sys.platform,
        "cpu": name,
        "cpu_count": str(os.cpu_count() or "unknown"),
        "cpu_capability": capability,
        "vnni": _flag_summary(flags, _VNNI_FLAGS),
        "amx": _flag_summary(flags, _AMX_FLAGS),
        "threads": str(torch.get_num_threads()),
        "quantized_engines": ", ".join(torch.backends.quantized.supported_engines),
        "backends": ", ".join(available_backends()),
    }
