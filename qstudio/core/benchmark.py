"""CPU latency measurement: timed calls, interleaved contenders, model size.

The studio's promise is "INT8 is N times faster than FP32"; that only means
something if the FP32 side is the *best* FP32 deployment path (not slow eager
Python) and if our timer agrees with an independent one.  So this module
offers:

* :func:`benchmark` — a cancellable progress generator timing single calls
  with ``time.perf_counter_ns`` (median, p90, mean per batch size);
* :func:`model_size_mb` — the serialized size, the other number users compare;
* :func:`compare_with_torch_utils_benchmark` — ``torch.utils.benchmark``'s
  figure for the same call, which the tests require us to match within 10%.

The TorchScript conversions that are timed live in :mod:`qstudio.core.torchscript`,
the checks of whether a timing can be trusted in :mod:`qstudio.core.stability`.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import statistics
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from qstudio.core.progress import Progress
from qstudio.core.recipe import BenchmarkSettings

log = logging.getLogger(__name__)

# Yield to the caller at least this often so a UI can redraw and cancel; the
# yield happens between timed calls, never inside one.
_PROGRESS_INTERVAL_S = 0.1


@dataclass
class LatencyStat:
    """Latency of one model at one batch size, in milliseconds per call."""

    label: str  # e.g. "FP32 eager", "FP32 TorchScript (frozen)", "INT8"
    batch_size: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    iters: int
    threads: int
    # CPU time of the timing thread over the wall time of its timed calls: near 1 on an idle
    # machine; well below 1 when the scheduler took the CPU away (another process wanted it).
    cpu_ratio: float | None = None


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """Call ``model`` with ``inputs``: a tuple is spread as positional args, a dict as keyword args.

    One convention for the benchmark, tracing and export verification, so a
    multi-input model is handled the same way everywhere.
    """
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count and always put the old value back.

    ``torch.set_num_threads`` is process-wide, so leaking it would silently
    change every later measurement and the user's other work.
    """
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the garbage collector while timing, as ``timeit`` does.

    A collection landing inside one timed call would add a spike that is about
    Python, not about the model; torch.utils.benchmark (via timeit) excludes it
    too, which keeps the two figures comparable.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore each submodule's own flag afterwards.

    Tracing or verifying in train mode would record dropout and batch-norm
    statistics updates; restoring per submodule (not ``model.train(flag)``)
    keeps deliberately mixed modes (e.g. frozen BN in QAT) intact.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def benchmark(
    model: Callable[..., Any],
    make_input: Callable[[int], Any],
    settings: BenchmarkSettings,
    label: str,
) -> Generator[Progress, None, list[LatencyStat]]:
    """Time ``model(make_input(b))`` for each batch size in ``settings``; a progress generator.

    For each batch size: ``settings.warmup`` untimed calls (allocator, oneDNN
    primitive caches and the TorchScript profiling executor all settle in the
    first calls), then ``settings.iters`` calls each timed on its own with
    ``perf_counter_ns``.  Per-call timing gives a real p90; the median is the
    headline because it ignores the occasional scheduler hiccup.  Calls run
    under ``torch.inference_mode`` with the garbage collector paused.

    Grad mode is thread-local state, so it is entered around each run of calls
    and left before every ``yield``: the caller's code between steps never runs
    in inference mode.  The thread count (``settings.threads``) is restored in
    ``finally``, which also runs when the caller cancels and closes us.
    """
    # One model is the single-contender case of the interleaved timer: same loop, same rules.
    stats = yield from benchmark_interleaved({label: model}, make_input, settings, rounds=1, stage=f"benchmark {label}")
    return stats[label]


def benchmark_interleaved(
    models: Mapping[str, Callable[..., Any]],
    make_input: Callable[[int], Any] | Mapping[str, Callable[[int], Any]],
    settings: BenchmarkSettings,
    *,
    rounds: int = 10,
    stage: str = "benchmark",
) -> Generator[Progress, None, dict[str, list[LatencyStat]]]:
    """Time several models side by side, alternating between them; a progress generator.

    A speed-up is a ratio of two medians, so both must see the same machine.
    Timing FP32 for a few seconds and then INT8 lets any change in load in
    between (another process, a thermal step, a noisy neighbour VM) move the
    ratio.  Here, per batch size, every model gets ``settings.warmup`` untimed
    calls, then ``settings.iters`` timed calls are split into ``rounds`` slices
    and the models take turns slice by slice, so drift lands on all of them
    alike; the turns start with a different model each round, so no model always
    follows the same one.  ``make_input`` is one function for all models or one per label
    (e.g. numpy arrays for ONNX Runtime); inputs are built before timing.

    Returns ``{label: [LatencyStat per batch size]}``.  The same per-call
    timer, inference mode, paused GC and thread handling as :func:`benchmark`.
    """
    labels = list(models)
    makers = {lb: make_input[lb] if isinstance(make_input, Mapping) else make_input for lb in labels}
    rounds = max(1, min(rounds, settings.iters))
    total = (settings.warmup + settings.iters) * len(labels) * len(settings.batch_sizes)
    results: dict[str, list[LatencyStat]] = {lb: [] for lb in labels}
    done = 0
    with _num_threads(settings.threads):
        threads = torch.get_num_threads()
        for batch_size in settings.batch_sizes:
            inputs = {lb: makers[lb](batch_size) for lb in labels}
            times_ns: dict[str, list[int]] = {lb: [] for lb in labels}
            cpu_ns = dict.fromkeys(labels, 0)
            wall_ns = dict.fromkeys(labels, 0)
            for lb in labels:
                remaining = settings.warmup
                while remaining:
                    chunk_start = time.perf_counter()
                    with torch.inference_mode(), _gc_paused():
                        while remaining and time.perf_counter() - chunk_start < _PROGRESS_INTERVAL_S:
                            call_model(models[lb], inputs[lb])
                            remaining -= 1
                            done += 1
                    yield Progress(stage, done, total, message=f"warm-up {lb}, batch {batch_size}")
            for r in range(rounds):
                # each round starts with another model: whoever follows FP32 eager pays for torch's OpenMP
                # threads still spinning after it (measured: OpenVINO FP32 116 ms in that slot, ~100 ms later)
                start = r % len(labels)
                for lb in labels[start:] + labels[:start]:
                    # slice r of this model's timed calls; the slices add up to exactly settings.iters
                    remaining = settings.iters * (r + 1) // rounds - settings.iters * r // rounds
                    while remaining:
                        chunk_start = time.perf_counter()
                        with torch.inference_mode(), _gc_paused():
                            cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
                            while remaining and time.perf_counter() - chunk_start < _PROGRESS_INTERVAL_S:
                                t0 = time.perf_counter_ns()
                                call_model(models[lb], inputs[lb])
                                times_ns[lb].append(time.perf_counter_ns() - t0)
                                remaining -= 1
                                done += 1
                            cpu_ns[lb] += time.thread_time_ns() - cpu0
                            wall_ns[lb] += time.perf_counter_ns() - wall0
                        yield Progress(stage, done, total, message=f"{lb}, batch {batch_size}")
            for lb in labels:
                ratio = cpu_ns[lb] / wall_ns[lb] if wall_ns[lb] > 0 else None
                results[lb].append(_stat(lb, batch_size, times_ns[lb], threads, ratio))
    return results


def _stat(
    label: str, batch_size: int, times_ns: list[int], threads: int, cpu_ratio: float | None = None
) -> LatencyStat:
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    stat = LatencyStat(
        label=label,
        batch_size=batch_size,
        median_ms=float(statistics.median(ms.tolist())),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(statistics.fmean(ms.tolist())),
        iters=len(times_ns),
        threads=threads,
        cpu_ratio=None if cpu_ratio is None else min(cpu_ratio, 1.0),
    )
    log.info(
        "%s batch %d: median %.3f ms, p90 %.3f ms (%d iters, %d threads)",
        label,
        batch_size,
        stat.median_ms,
        stat.p90_ms,
        stat.iters,
        threads,
    )
    return stat


def model_size_mb(model: nn.Module | torch.jit.ScriptModule) -> float:
    """Serialized size in MB (1e6 bytes): what the user would ship.

    ScriptModules are measured with ``torch.jit.save`` (code + constants),
    other modules by their ``state_dict`` (weights only, so FP32 vs INT8
    compare like for like).  Not meaningful for :func:`freeze_fp32`'s
    optimized module, whose MKLDNN weights are not serialized.
    """
    buffer = io.BytesIO()
    if isinstance(model, torch.jit.ScriptModule):
        torch.jit.save(model, buffer)
    else:
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def compare_with_torch_utils_benchmark(
    model: Callable[..., Any],
    x: Any,
    threads: int | None = None,
    *,
    min_run_time: float = 1.0,
) -> float:
    """Median ms per call of ``model(x)`` by ``torch.utils.benchmark.Timer.blocked_autorange``.

    An independent timer to cross-check :func:`benchmark`.  It runs under
    ``inference_mode`` like ours and with the same thread count; ``threads=None``
    means the current ``torch.get_num_threads()`` (Timer's own default is 1).

    Caveat when comparing: Timer times blocks of ``number`` calls, chosen so
    its loop overhead is below 1e-4 of a block, and reports the median of the
    block *means*.  For models above ~10 ms a block is one call and the figure
    matches our per-call median; for a ~1 ms model it uses blocks of ~100
    calls, so on a loaded machine it reports something close to a mean,
    which can sit 10-40% above our median.
    """
    from torch.utils import benchmark as tub

    threads = torch.get_num_threads() if threads is None else threads
    stmt = "model(*x)" if isinstance(x, tuple) else "model(**x)" if isinstance(x, dict) else "model(x)"
    timer = tub.Timer(stmt=stmt, globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    log.debug(
        "torch.utils.benchmark: median %.3f ms over %d blocks of %d calls",
        measurement.median * 1e3,
        len(measurement.times),
        measurement.number_per_run,
    )
    return float(measurement.median) * 1e3
