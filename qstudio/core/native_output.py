"""Output libraries write from C++ straight to the process's stdout/stderr, kept out of the user's terminal."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_streams_captured(sink: io.StringIO) -> Iterator[None]:
    """Point file descriptors 1 and 2 at a temporary file for a moment; what was written there goes to ``sink``.

    For libraries that print from C++, which ``redirect_stderr`` cannot catch:
    the TorchScript exporter prints its whole IR graph when it fails (its
    logging switch is stuck on); torch's profiler (kineto) prints
    ``profiler_start``/``profiler_stop`` and a failed GPU count on a CPU-only
    machine, whatever ``KINETO_LOG_LEVEL`` says.
    """

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    with tempfile.TemporaryFile() as tmp:
        saved: list[tuple[int, int]] = []
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a GUI process may have no console
                saved.append((fd, os.dup(fd)))
        flush()
        try:
            for fd, _copy in saved:
                os.dup2(tmp.fileno(), fd)
            yield
        finally:
            flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            sink.write(tmp.read().decode(errors="replace"))
