"""The one line for an internal error: the exception, where it was raised, and how to report it."""

from __future__ import annotations

import os


def _one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, whitespace collapsed, cut at ``limit`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_QSTUDIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # qstudio/, above cli/
_LIBRARY_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))


def _is_library(filename: str) -> bool:
    """A frame in torch, another installed package or the standard library (not qstudio, not the model)."""
    path = os.path.abspath(filename)
    if path.startswith(_QSTUDIO_DIR + os.sep):
        return False
    return filename.startswith("<") or any(m in path for m in _LIBRARY_MARKERS) or path.startswith(_STDLIB_DIR + os.sep)


def _short_path(filename: str) -> str:
    """``model.py`` under the current folder, ``qstudio/core/x.py``, ``torch/ao/...`` for installed packages."""
    path = os.path.abspath(filename)
    parent = os.path.dirname(_QSTUDIO_DIR)
    if path.startswith(_QSTUDIO_DIR + os.sep):
        return os.path.relpath(path, parent)
    for marker in _LIBRARY_MARKERS:
        if marker in path:
            return path.split(marker, 1)[1]
    if path.startswith(_STDLIB_DIR + os.sep):
        return os.path.relpath(path, _STDLIB_DIR)
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


def _where(exc: BaseException) -> str:
    """``at FILE:LINE`` of the frame that raised, plus the nearest frame of qstudio or the model below a library."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return ""
    last = frames[-1]
    text = f" at {_short_path(last[0])}:{last[1]}"
    if _is_library(last[0]):
        own = next((f for f in reversed(frames) if not _is_library(f[0])), None)
        if own is not None and own != frames[0]:
            text += f", called from {_short_path(own[0])}:{own[1]}"
    return text


def _exception_name(exc: BaseException) -> str:
    """``RuntimeError``, ``torch.fx.proxy.TraceError``; a class from a factory file by its own name."""
    cls = type(exc)
    module = cls.__module__ or ""
    # factory files are imported under a private name (qstudio/core/loading/factories.py): it would only confuse
    if module == "builtins" or module.startswith("_qstudio_factory_"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def internal_error_line(exc: BaseException) -> str:
    """One line for an exception that is not a :class:`QStudioError`: what, where, and how to report it."""
    if isinstance(exc, SystemExit):
        what = f"SystemExit({exc.code!r}): sys.exit() was called during the run, which did not finish"
    else:
        message = _one_line(str(exc))
        what = f"{_exception_name(exc)}: {message}" if message else _exception_name(exc)
    where = _where(exc)
    return (
        f"qstudio: internal error: {what}{f' (raised{where})' if where else ''}. "
        "This is a bug in qstudio, or the model's own code failing where qstudio did not expect it; "
        "to report it, re-run the same command with --verbose and attach its output to a qstudio issue."
    )
