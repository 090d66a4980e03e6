"""The benchmark runs in a fresh child process (qstudio.core.child_benchmark), or says why it could not.

Real models, real quantization, a real child process: the demo's figures
must come from another pid that is gone afterwards; closing the run
mid-benchmark must kill that child; a model built in memory falls back to
this process with one note; a model that really crashes the child (a
segmentation fault in its forward) must end as a clear error, never a hang.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import textwrap
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from qstudio.core.child_benchmark import IN_PROCESS_ENV, ProcessTiming, benchmark_in_child
from qstudio.core.deploy import EAGER_FP32
from qstudio.core.errors import QStudioError
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import Progress
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, Recipe

FAST = BenchmarkSettings(batch_sizes=[1], warmup=2, iters=20)
DEADLINE_S = 600  # a loaded 2-core machine starts torch in ~10 s; a hang is minutes


def drive(work: Generator[Progress, None, Any], deadline_s: float = DEADLINE_S) -> Any:
    """Run a progress generator to its end, failing (not hanging) when it takes longer than ``deadline_s``."""
    end = time.monotonic() + deadline_s
    try:
        while True:
            next(work)
            if time.monotonic() > end:
                work.close()
                pytest.fail(f"still running after {deadline_s} s")
    except StopIteration as stop:
        return stop.value


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def benchmark_children() -> list[int]:
    """This process's child processes running the benchmark, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), -1)
        if ppid == os.getpid() and b"qstudio.core.child_benchmark" in cmdline:
            found.append(int(entry.name))
    return found


def demo_recipe(**deploy: Any) -> Recipe:
    recipe = Recipe(benchmark=dataclasses.replace(FAST))
    recipe.settings.calib_batches = 2
    for key, value in deploy.items():
        setattr(recipe.deploy, key, value)
    return recipe


def test_demo_figures_come_from_a_child_process_that_is_gone_afterwards(monkeypatch):
    monkeypatch.delenv(IN_PROCESS_ENV, raising=False)
    loaded = load_model(ModelSource("demo"))
    result = drive(run_recipe(demo_recipe(runtimes=["onnx"]), loaded))
    timing = result.timing
    assert isinstance(timing, ProcessTiming)
    assert timing.isolated and timing.pid is not None and timing.pid != os.getpid()
    assert not alive(timing.pid)
    assert not any("own process" in w for w in result.warnings), result.warnings
    labels = [f.label for f in result.runtimes]
    assert "FP32 eager" in labels and "TorchScript INT8 (torch.ao)" in labels and "frozen TorchScript FP32" in labels
    assert any(f.name == "onnx" for f in result.runtimes), result.runtime_notes  # a runtime's file, loaded there
    assert all(f.latency_ms and f.latency_ms > 0 for f in result.runtimes)
    assert timing.startup_seconds and timing.import_seconds and timing.startup_seconds >= timing.import_seconds
    assert result.to_json()["timing"]["isolated"] is True
    print(
        f"\nchild {timing.pid}: start-up {timing.startup_seconds:.2f} s (imports {timing.import_seconds:.2f} s, "
        f"rebuild {timing.rebuild_seconds:.2f} s); speedup vs FP32 eager {result.speedup:.2f}x"
    )


def test_closing_the_run_mid_benchmark_kills_the_child(monkeypatch):
    monkeypatch.delenv(IN_PROCESS_ENV, raising=False)
    model = load_model(ModelSource("demo")).module
    long = BenchmarkSettings(batch_sizes=[1], warmup=2, iters=1_000_000)
    work = benchmark_in_child(
        {EAGER_FP32: model}, lambda b: torch.randn(b, 1, 28, 28), long, source=ModelSource("demo")
    )
    end = time.monotonic() + DEADLINE_S
    step = next(work)
    while "batch 1" not in step.message:  # the child is timing calls now
        assert time.monotonic() < end, "the child never started timing"
        step = next(work)
    children = benchmark_children()
    assert len(children) == 1
    started = time.monotonic()
    work.close()  # what the window's Cancel and the CLI's Ctrl-C do (GeneratorExit at the yield)
    assert not alive(children[0])
    assert time.monotonic() - started < 15


def test_model_built_in_memory_is_timed_here_with_one_note(monkeypatch):
    monkeypatch.delenv(IN_PROCESS_ENV, raising=False)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    loaded = LoadedModel(
        module=model.eval(), source=ModelSource(spec="built-in-memory"), kind="factory", name="net",
        input_shape=[1, 3, 16, 16], input_dtype="float32", shape_declared=True,
    )  # fmt: skip
    recipe = Recipe(mode="fx", calib=DataSource(kind="random"), benchmark=dataclasses.replace(FAST))
    recipe.settings.calib_batches = 2
    result = drive(run_recipe(recipe, loaded))
    assert not result.timing.isolated and result.timing.pid == os.getpid()
    notes = [w for w in result.warnings if "qstudio's own process" in w]
    assert len(notes) == 1 and "built-in-memory" in notes[0] and "\n" not in notes[0]
    assert {s.label for s in result.fp32.latency} == {EAGER_FP32}


def test_the_switch_times_in_this_process_without_a_note(monkeypatch):
    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    model = load_model(ModelSource("demo")).module
    notes: list[str] = []
    stats, timing = drive(
        benchmark_in_child({EAGER_FP32: model}, lambda b: torch.randn(b, 1, 28, 28), FAST, source=ModelSource("demo"), notes=notes)
    )  # fmt: skip
    assert timing.pid == os.getpid() and not timing.isolated and notes == []
    assert stats[EAGER_FP32][0].median_ms > 0


CRASHER = """
import ctypes
import os

from torch import nn

with open(os.environ["QSTUDIO_TEST_MARKER"], "a") as marker:
    marker.write("imported\\n")


class Crasher(nn.Module):
    # a model whose forward really crashes the interpreter outside the process that loaded it
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if os.getpid() != int(os.environ["QSTUDIO_TEST_HOME_PID"]):
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        return self.fc(x)


def build():
    return Crasher()


build.input_shape = [1, 8]
"""


@pytest.fixture
def crasher(tmp_path, monkeypatch) -> tuple[LoadedModel, Path, Path]:
    monkeypatch.delenv(IN_PROCESS_ENV, raising=False)
    monkeypatch.setenv("QSTUDIO_TEST_HOME_PID", str(os.getpid()))
    marker = tmp_path / "imports.txt"
    monkeypatch.setenv("QSTUDIO_TEST_MARKER", str(marker))
    factory = tmp_path / "crasher.py"
    factory.write_text(textwrap.dedent(CRASHER))
    loaded = load_model(ModelSource(f"{factory}:build"))
    return loaded, factory, marker


def test_a_child_that_crashes_is_a_clear_error_not_a_hang(crasher):
    loaded, factory, marker = crasher
    grants = {hashlib.sha256(factory.read_bytes()).hexdigest()}  # what the user agreed to run
    work = benchmark_in_child(
        {EAGER_FP32: loaded.module}, lambda b: torch.randn(b, 8), FAST, source=loaded.source, grants=grants
    )
    with pytest.raises(QStudioError) as caught:
        drive(work)
    err = caught.value
    assert "benchmark process" in err.problem and "SIGSEGV" in err.problem and EAGER_FP32 in err.problem
    assert "fix that model" in err.fix and IN_PROCESS_ENV in err.fix
    assert marker.read_text().count("imported") == 2  # loaded here, then again in the child, which crashed
    assert benchmark_children() == []


def test_a_factory_written_after_start_is_not_run_again_without_consent(crasher):
    loaded, _factory, marker = crasher
    notes: list[str] = []
    stats, timing = drive(
        benchmark_in_child({EAGER_FP32: loaded.module}, lambda b: torch.randn(b, 8), FAST, source=loaded.source, notes=notes)
    )  # fmt: skip
    assert not timing.isolated and timing.pid == os.getpid()  # so the crasher's forward is harmless
    assert len(notes) == 1 and "crasher.py changed after qstudio started" in notes[0]
    assert marker.read_text().count("imported") == 1  # its code ran once, when the user loaded it
    assert stats[EAGER_FP32][0].iters == FAST.iters
