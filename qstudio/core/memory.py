"""Memory preflight: refuse work that cannot fit before allocating it.

A batch size typed with a few zeros too many must not freeze the machine or
die deep inside torch's allocator.  :func:`available_bytes` reads what the
kernel (and a container's cgroup limit) says can still be allocated, and
:func:`is_out_of_memory` recognises the errors torch and Python raise when an
allocation fails anyway, so callers can turn them into a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

_ALLOC_MARKERS = ("can't allocate memory", "defaultcpuallocator", "out of memory", "cannot allocate memory")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Bytes that can still be allocated, or None if this system does not say."""
    found = [v for v in (_meminfo_available() or _sysconf_available(), _cgroup_available()) if v is not None]
    return min(found) if found else None


def is_out_of_memory(exc: BaseException) -> bool:
    """Is ``exc`` a failed allocation (Python's MemoryError or torch's allocator error)?"""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _ALLOC_MARKERS)


def format_bytes(n: float) -> str:
    """A byte count as people read it (1024 steps): memory needs here, disk space in qstudio.core.fileio."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover
