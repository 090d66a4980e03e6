"""Fixtures shared by tests/core and tests/ui: a real, small, nearly full file system.

A full disk is not simulated: ``small_disk`` mounts a tmpfs of a few MiB in the
test's tmp_path (root only, and only where ``mount -t tmpfs`` works), so the
kernel itself answers writes with ENOSPC.  Tests write their "earlier" files
first, then call ``fill()``; ``full_disk`` is the same disk already filled.
``mount_tmpfs(size, nr_inodes=...)`` mounts further ones.  Every mount is
removed at teardown; without root or a working ``mount`` the test is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Runs measure torch's own paths only unless a test names runtimes in its recipe (deploy.runtimes): building
# ONNX Runtime and OpenVINO models in each of the suite's hundreds of runs would triple its time.  The
# runtimes' own tests (tests/core/test_runtime_*.py, test_deploy.py) and a window journey name them.
os.environ.setdefault("QSTUDIO_RUNTIMES", "")
# ... and time them in the test's own process: a fresh benchmark process per run (what the CLI and the window do,
# 3-15 s to start here) in each of those runs would too.  tests/core/test_isolated_benchmark.py and
# tests/ui/test_window_benchmark.py remove this and run the child process for real.
os.environ.setdefault("QSTUDIO_BENCH_IN_PROCESS", "1")

FILLER = ".filler"
DISK_SIZE = 4 * 1024 * 1024  # holds an earlier demo export (1.3 MB) and still leaves room to fill
LEAVE_FREE = 8 * 1024  # a few KB: metadata fits, no real file does


class SmallDisk:
    """A mounted tmpfs: ``path`` is its root, ``fill()`` leaves only ``LEAVE_FREE`` bytes free."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int = LEAVE_FREE) -> None:
        """Write a filler file until only ``leave`` bytes are free (the kernel's own ENOSPC stops it early)."""
        chunk = b"\0" * (64 * 1024)
        with open(self.path / FILLER, "ab") as fh:
            remaining = self.free() - leave
            while remaining > 0:
                try:
                    fh.write(chunk[: min(len(chunk), remaining)])
                    fh.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                remaining = self.free() - leave
        assert self.free() <= leave + 4096, f"could not fill the test disk: {self.free()} bytes still free"

    def unfill(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def files(self, under: Path | None = None) -> list[str]:
        """Names in ``under`` (the disk's root by default), without the filler: what the user would see."""
        return sorted(p.name for p in (under or self.path).iterdir() if p.name != FILLER)


def _mount(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; None on success, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return f"mount -t tmpfs failed here: {(proc.stderr or proc.stdout).strip()}"
    return None


def _unmount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)  # still busy: detach it


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., SmallDisk]]:
    """``mount_tmpfs(size, nr_inodes=None)`` mounts a fresh tmpfs in tmp_path; skips the test where it cannot."""
    mounted: list[Path] = []

    def mount(size: int = DISK_SIZE, nr_inodes: int | None = None) -> SmallDisk:
        target = tmp_path / f"small_disk{len(mounted)}"
        target.mkdir()
        options = f"size={size},mode=0755" + (f",nr_inodes={nr_inodes}" if nr_inodes else "")
        why_not = _mount(target, options)
        if why_not is not None:
            pytest.skip(f"no real full disk: {why_not}")
        mounted.append(target)
        return SmallDisk(target, size)

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            _unmount(target)
            with contextlib.suppress(OSError):
                target.rmdir()


@pytest.fixture
def small_disk(mount_tmpfs: Callable[..., SmallDisk]) -> SmallDisk:
    """An empty tmpfs of ``DISK_SIZE`` bytes; the test writes earlier files, then calls ``fill()``."""
    return mount_tmpfs()


@pytest.fixture
def full_disk(small_disk: SmallDisk) -> SmallDisk:
    """A tmpfs with only a few KB free."""
    small_disk.fill()
    return small_disk
