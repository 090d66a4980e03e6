"""Benchmark in a child process: the run's contenders rebuilt in a fresh Python, timed there, figures sent back.

Why: in the window, torch runs in a worker thread after the GUI thread has
used it, and OpenMP thread teams of both threads compete for the cores; its
latencies read 2-3x slower than the CLI's (docs/performance.md).  A deployment
runs the model in a process of its own, so that is where qstudio measures:
:func:`benchmark_in_child` writes what the child needs to a private temporary
folder, starts ``python -m qstudio.core.child_benchmark FOLDER`` once per run
(importing torch costs ~2 s), forwards the child's progress and returns what
:func:`qstudio.core.stability.benchmark_checked` returns.

What the child rebuilds (:mod:`qstudio.core.child_rebuild`): FP32 eager by
loading the user's model again from its source (same grants) with the
parent's weights; the FP32 TorchScript baseline by
:func:`~qstudio.core.torchscript.freeze_fp32` on it (the optimized module
cannot be saved); any other TorchScript module (torch.ao's frozen INT8) from
its ``torch.jit.save`` bytes, i.e. the file an export writes; other runtimes
from their saved files through ``get_runtime(name).load``.  Every rebuilt
contender must reproduce the parent's output on the benchmark input.

When one cannot be rebuilt, the whole set is timed in this process as before
(never mixed across processes) and a note says so; ``in_process=True`` or
``QSTUDIO_BENCH_IN_PROCESS=1`` asks for that path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from qstudio.core import child_rebuild, errors, stability
from qstudio.core.benchmark import LatencyStat
from qstudio.core.errors import QStudioError
from qstudio.core.progress import Progress
from qstudio.core.recipe import BenchmarkSettings, ModelSource

log = logging.getLogger(__name__)

#: set to 1 to time the contenders in this process (the path before the child process existed)
IN_PROCESS_ENV = "QSTUDIO_BENCH_IN_PROCESS"
#: how often (s) the parent yields while it waits for the child, so a window can redraw and cancel
_HEARTBEAT_S = 0.1


@dataclass
class ProcessTiming(stability.TimingCheck):
    """A :class:`~qstudio.core.stability.TimingCheck` that also says which process measured.

    ``pid`` is that process (a child's, or this one's); ``isolated`` is True
    when it was a child started for this benchmark.  ``startup_seconds`` is
    from starting the child to its contenders being rebuilt and checked,
    ``import_seconds`` the part spent importing torch and qstudio there.
    """

    pid: int | None = None
    isolated: bool = False
    startup_seconds: float | None = None
    import_seconds: float | None = None
    rebuild_seconds: float | None = None


def in_process_requested() -> bool:
    return os.environ.get(IN_PROCESS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def benchmark_in_child(
    contenders: Mapping[str, Callable[..., Any]],
    make_input: Callable[[int], Any],
    settings: BenchmarkSettings,
    *,
    source: ModelSource | None = None,
    example: Any = None,
    backend: str | None = None,
    grants: AbstractSet[str] | None = None,
    notes: list[str] | None = None,
    in_process: bool | None = None,
    rounds: int = 10,
    stage: str = "benchmark",
) -> Generator[Progress, None, tuple[dict[str, list[LatencyStat]], ProcessTiming]]:
    """:func:`~qstudio.core.stability.benchmark_checked` with every contender timed in one fresh child process.

    ``source`` is where the FP32 eager contender (a plain ``nn.Module``) is
    loaded from again, with ``grants`` (None: only what the source itself
    pins and code files unchanged since this process started, see
    :func:`child_grants`); ``example`` is what the FP32 TorchScript baseline
    is traced with (default: ``make_input(1)``); ``backend`` is torch's
    quantized engine in the child (default: this process's).  When the set
    cannot be measured in a child, it is measured here and one line saying so
    is appended to ``notes``.  Closing the generator kills the child at once.
    """
    if in_process if in_process is not None else in_process_requested():
        return (yield from _in_process(contenders, make_input, settings, rounds, stage))
    plan = child_rebuild.plan_for(contenders, source, grants)
    if getattr(sys, "frozen", False):  # a bundled app: its executable is not a Python that runs -m
        plan = "this bundled qstudio cannot start a Python process"
    if isinstance(plan, str):
        return (yield from _fallback(plan, notes, contenders, make_input, settings, rounds, stage))
    folder = Path(tempfile.mkdtemp(prefix="qstudio-bench-"))  # private (0700): the model's weights go here
    child: _Child | None = None
    try:
        yield Progress(stage, 0, 1, "starting a clean process for the benchmark")
        try:
            child = _Child(folder)  # it imports torch while this process writes what it needs
        except OSError as exc:
            why = f"a Python process could not be started ({exc})"
            return (yield from _fallback(why, notes, contenders, make_input, settings, rounds, stage))
        why = yield from child_rebuild.write_description(
            folder, plan, contenders, make_input, settings, example, backend, rounds, stage
        )
        if why:
            return (yield from _fallback(why, notes, contenders, make_input, settings, rounds, stage))
        child.go()
        result = yield from child.follow(stage)
        if isinstance(result, str):
            child.stop()
            return (yield from _fallback(result, notes, contenders, make_input, settings, rounds, stage))
        return result
    finally:
        if child is not None:
            child.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _in_process(
    contenders: Mapping[str, Callable[..., Any]],
    make_input: Callable[[int], Any],
    settings: BenchmarkSettings,
    rounds: int,
    stage: str,
) -> Generator[Progress, None, tuple[dict[str, list[LatencyStat]], ProcessTiming]]:
    latencies, check = yield from stability.benchmark_checked(
        contenders, make_input, settings, rounds=rounds, stage=stage
    )
    timing = ProcessTiming(**{f.name: getattr(check, f.name) for f in fields(check)}, pid=os.getpid())
    return latencies, timing


def _fallback(
    reason: str,
    notes: list[str] | None,
    contenders: Mapping[str, Callable[..., Any]],
    make_input: Callable[[int], Any],
    settings: BenchmarkSettings,
    rounds: int,
    stage: str,
) -> Generator[Progress, None, tuple[dict[str, list[LatencyStat]], ProcessTiming]]:
    log.info("benchmarking in this process: %s", reason)
    if notes is not None:
        notes.append(fallback_note(reason))
    return (yield from _in_process(contenders, make_input, settings, rounds, stage))


def fallback_note(reason: str) -> str:
    """The run's one line when its latencies were timed in qstudio's own process."""
    return (
        f"Latencies were measured in qstudio's own process, not in a clean one ({reason}); "
        "in the window they can read up to 2-3x slower than a deployment, so compare them within this run only."
    )


# -- the child, seen from the parent ------------------------------------------------------------
class _Child:
    """``python -m qstudio.core.child_benchmark FOLDER``: JSON lines on its stdout, ``go`` on its stdin."""

    def __init__(self, folder: Path) -> None:
        import qstudio

        self.folder = folder
        self.started = time.perf_counter()
        self.stderr_path = folder / "child-stderr.txt"
        env = dict(os.environ)
        root = str(Path(qstudio.__file__).resolve().parent.parent)  # importable without an install too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qstudio.core.child_benchmark", str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(self.proc.stdout, self.lines), daemon=True).start()
        self.doing = "starting"
        self.import_seconds: float | None = None

    def go(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it died: follow() says how
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()

    def follow(self, stage: str) -> Generator[Progress, None, tuple[dict[str, list[LatencyStat]], ProcessTiming] | str]:
        """Forward the child's progress until its figures arrive; a reason string when it cannot rebuild the set."""
        last = Progress(stage, 0, 1, "starting a clean process for the benchmark")
        ready: dict[str, Any] = {}
        while True:
            try:
                line = self.lines.get(timeout=_HEARTBEAT_S)
            except queue.Empty:
                yield last  # nothing new: let the caller redraw and cancel
                continue
            if line is None:
                raise self.crashed()
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.get("t")
            if kind == "doing":
                self.doing = msg["what"]
                if msg.get("imported"):
                    self.import_seconds = time.perf_counter() - self.started
                last = Progress(stage, 0, 1, msg["what"])
                yield last
            elif kind == "progress":
                self.doing = msg["message"] or self.doing
                last = Progress(stage, msg["done"], msg["total"], msg["message"])
                yield last
            elif kind == "ready":
                ready = {"startup_seconds": time.perf_counter() - self.started, "rebuild_seconds": msg["seconds"]}
            elif kind == "unavailable":
                return str(msg["reason"])
            elif kind == "error":
                cls = getattr(errors, msg.get("cls", ""), QStudioError)
                cls = cls if isinstance(cls, type) and issubclass(cls, QStudioError) else QStudioError
                raise cls(msg["problem"], msg.get("fix", ""), details=msg.get("details", ""))
            elif kind == "result":
                latencies = {k: [LatencyStat(**s) for s in v] for k, v in msg["latencies"].items()}
                timing = ProcessTiming(
                    **msg["timing"], pid=self.pid, isolated=True, import_seconds=self.import_seconds, **ready
                )
                log.info("benchmarked in child %d (start-up %.2f s)", self.pid, ready.get("startup_seconds", 0.0))
                return latencies, timing

    def crashed(self) -> QStudioError:
        """The child's output ended without figures: say how it died, while doing what, and what to do."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        how = f"with exit code {code}"
        if code < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-code).name}"
        self._stderr.flush()
        tail = _tail(self.stderr_path)
        seen = f"; its last output: {tail.splitlines()[-1]}" if tail.strip() else ""
        return QStudioError(
            f"the benchmark process (pid {self.pid}) ended {how} while {self.doing}, so no latency was measured{seen}",
            "if a model crashed it, fix that model (the process's last output is in the details) or leave it out; "
            f"if it was killed for memory, lower benchmark.batch_sizes; {IN_PROCESS_ENV}=1 measures in qstudio's "
            "own process instead (a crash there ends qstudio)",
            details=tail,
        )

    def stop(self) -> None:
        """Kill the child now if it still runs (a cancel, an error, a fallback) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._stderr.close()


def _read_lines(stream: IO[bytes] | None, out: queue.Queue[bytes | None]) -> None:
    try:
        if stream is not None:
            for line in stream:
                out.put(line)
    except (OSError, ValueError):  # closed by stop()
        pass
    finally:
        out.put(None)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# -- the child's side ---------------------------------------------------------------------------
def _child_main(folder: Path) -> int:
    """Rebuild the contenders described in ``folder``, time them, send the figures as JSON lines."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr

    def send(**msg: Any) -> None:
        proto.write(json.dumps(msg) + "\n")

    # torch and the loaders are imported by now (this module's imports), while the parent wrote the folder
    send(t="doing", what="rebuilding the models in a clean process", imported=True)
    if sys.stdin.readline().strip() != "go":
        return 0  # the parent gave up (a fallback, a cancel)
    return child_rebuild.run_child(folder, send)


if __name__ == "__main__":
    sys.exit(_child_main(Path(sys.argv[1])))
