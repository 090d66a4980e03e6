"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything qstudio writes (TorchScript exports, reports, recipes, the CLI's
JSON, chart PNGs) is first put together in memory and then written here with
plain Python file I/O, so a full disk or a refused write is an ``OSError`` we
can turn into an :class:`~qstudio.core.errors.ExportError` instead of an
exception thrown inside a C++ destructor (which aborts the process).

The bytes go to a temporary file next to the target, which is fsynced, given
the permissions ``open()`` would give a new file (``0o666 & ~umask``, or the
earlier file's permissions when one is replaced), and then renamed over the
target.  On any failure the temporary file is removed and an earlier file at
the target is left byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from qstudio.core.errors import ExportError
from qstudio.core.memory import format_bytes

_UMASK_LOCK = threading.Lock()
KEEP_NOTE = "any earlier file at that path is unchanged"


# -- permissions ------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, and setting it briefly is
    racy: another thread creating a file meanwhile would get the wrong mode.
    Linux reports it in ``/proc/self/status``; elsewhere the set-and-restore
    fallback is serialised at least against other callers of this function.
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split(":", 1)[1].strip(), 8) & 0o777
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old & 0o777


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def _mode_for(path: Path) -> int:
    """``open()`` keeps an existing file's permissions and gives a new one ``0o666 & ~umask``."""
    try:
        st = path.stat()
    except OSError:
        return new_file_mode()
    if stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode) & 0o777
    return new_file_mode()


# -- messages ---------------------------------------------------------------------------
def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def free_bytes(folder: Path) -> int | None:
    """Bytes this process may still write on ``folder``'s file system, or None if the OS cannot say."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    if st.f_blocks == 0:  # pseudo and some network file systems report no size at all
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail  # root may use reserved blocks
    return blocks * st.f_frsize


def disk_full_error(path: Path, what: str, needed: int | None, free: int | None) -> ExportError:
    folder = _folder_of(path)
    detail = ""
    if needed is not None and free is not None:
        detail = f": {format_bytes(needed)} needed, {format_bytes(free)} free"
    return ExportError(
        f"could not write the {what} {path}: the disk holding {folder} is full{detail}",
        f"free space or choose another folder, then save again; {KEEP_NOTE}",
    )


def write_error(path: str | Path, exc: OSError, what: str = "file", *, needed: int | None = None) -> ExportError:
    """Turn an ``OSError`` from writing ``path`` into an :class:`ExportError` naming the problem and the fix."""
    path = Path(path)
    folder = _folder_of(path)
    code = exc.errno
    if code == errno.ENOSPC:
        return disk_full_error(path, what, needed, free_bytes(folder))
    if code == getattr(errno, "EDQUOT", None):
        return ExportError(
            f"could not write the {what} {path}: your disk quota on {folder} is used up",
            f"free space within your quota or choose another folder, then save again; {KEEP_NOTE}",
        )
    if code == errno.EROFS:
        return ExportError(
            f"could not write the {what} {path}: {folder} is on a read-only file system",
            f"choose a folder on a writable disk; {KEEP_NOTE}",
        )
    if code in (errno.EACCES, errno.EPERM):
        return ExportError(
            f"could not write the {what} {path}: permission denied",
            f"choose a folder you can write to, or fix the folder's permissions; {KEEP_NOTE}",
        )
    if code == errno.EISDIR:
        return ExportError(f"could not write the {what} {path}: it is a folder", "give a file name instead")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ExportError(
        f"could not write the {what} {path}: {reason}",
        f"check the disk and that you can write to the folder, then save again; {KEEP_NOTE}",
    )


# -- checks -----------------------------------------------------------------------------
def check_target(path: str | Path, what: str = "file") -> Path:
    """Fail early, before any work, if ``path`` cannot be a file: its folder is missing or it is a folder."""
    path = Path(path)
    folder = _folder_of(path)
    if not folder.exists():
        raise ExportError(f"folder {folder} does not exist", "create it first or choose another location")
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder", "choose another location")
    if path.is_dir():
        raise ExportError(f"{path} is a folder", f"give a file name for the {what}")
    return folder


def check_space(path: str | Path, needed: int, what: str = "file") -> None:
    """Raise :class:`ExportError` if ``path``'s file system has fewer than ``needed`` bytes free."""
    path = Path(path)
    free = free_bytes(_folder_of(path))
    if free is not None and free < needed:
        raise disk_full_error(path, what, needed, free)


# -- writing ----------------------------------------------------------------------------
def _mkstemp(path: Path, folder: Path, what: str) -> tuple[int, Path]:
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ExportError(
                f"cannot write to folder {folder} (permission denied)", "choose a folder you can write to"
            ) from None
        raise write_error(path, exc, what) from None
    return fd, Path(tmp_name)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; not every OS or file system can open a folder, which is fine."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` atomically with normal permissions.

    Raises :class:`ExportError` (never ``OSError``) naming the problem - a full
    disk with how much is needed and free, a read-only disk, a refused
    permission - and the fix.  An earlier file at ``path`` is untouched and no
    temporary file is left behind on failure.
    """
    path = Path(path)
    folder = check_target(path, what)
    check_space(path, len(data), what)
    mode = _mode_for(path)
    fd, tmp = _mkstemp(path, folder, what)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc, what, needed=len(data)) from exc
        raise
    _fsync_folder(folder)


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    For writers that can only write to a file name.  Prefer building the bytes
    in memory and calling :func:`atomic_write_bytes`: a writer that fails
    inside native code may not raise a catchable error at all.  If the body
    raises, the temporary file is removed and any earlier file at ``path`` is
    left exactly as it was; ``OSError`` from the body or the final rename
    becomes :class:`ExportError`.
    """
    path = Path(path)
    folder = check_target(path, what)
    mode = _mode_for(path)
    fd, tmp = _mkstemp(path, folder, what)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc, what) from exc
        raise
    _fsync_folder(folder)


def atomic_write_with(path: str | Path, writer: Callable[[Path], None], what: str = "file") -> None:
    """Call ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path, what) as tmp:
        writer(tmp)
