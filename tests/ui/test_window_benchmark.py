"""The window's latencies come from the same clean child process as the CLI's (issue #13 item 4).

The window is started the way the ``qstudio`` command starts it and Run is
pressed; then the same recipe runs on the CLI's path (``run_recipe`` on the
main thread).  Both speedups are printed, not asserted: on a busy machine
timings move.  Asserted: both were measured in a child (another pid, gone
afterwards), the same contenders were timed, and nothing said "own process".
"""

from __future__ import annotations

import copy
import os

from dialogs import run_to_end

from qstudio.core.child_benchmark import IN_PROCESS_ENV
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.ui import create_main_window


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_window_and_cli_time_the_demo_in_a_child_process(qtbot, monkeypatch):
    monkeypatch.delenv(IN_PROCESS_ENV, raising=False)
    window = create_main_window([])
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.controller.session.loaded is not None and not window.controller.busy, timeout=60_000)
    in_window = run_to_end(qtbot, window, timeout=900_000)
    window.controller.wait(30_000)

    recipe = copy.deepcopy(in_window.recipe)
    on_cli = run(run_recipe(recipe, load_model(recipe.model)))  # the CLI's path: this (main) thread

    for result in (in_window, on_cli):
        assert result.timing.isolated, result.warnings
        assert result.timing.pid not in (None, os.getpid()) and not alive(result.timing.pid)
        assert not any("own process" in w for w in result.warnings)
    assert in_window.timing.pid != on_cli.timing.pid
    assert [f.label for f in in_window.runtimes] == [f.label for f in on_cli.runtimes]
    print(
        f"\nwindow: INT8 {in_window.int8.latency_ms:.3f} ms, FP32 eager {in_window.fp32.latency_ms:.3f} ms, "
        f"speedup {in_window.speedup:.2f}x (vs frozen TorchScript {in_window.speedup_vs_deploy or 0:.2f}x)"
        f"\nCLI:    INT8 {on_cli.int8.latency_ms:.3f} ms, FP32 eager {on_cli.fp32.latency_ms:.3f} ms, "
        f"speedup {on_cli.speedup:.2f}x (vs frozen TorchScript {on_cli.speedup_vs_deploy or 0:.2f}x)"
        f"\nwindow / CLI speedup: {in_window.speedup / on_cli.speedup:.3f}; "
        f"child start-up {in_window.timing.startup_seconds:.1f} s / {on_cli.timing.startup_seconds:.1f} s; "
        f"timing stable: {in_window.timing.stable} / {on_cli.timing.stable}; load {os.getloadavg()[0]:.1f}"
    )
