"""Benchmark figures: agreement with torch.utils.benchmark, batch sizes, interleaving, cancel, unstable timing.

Real models throughout (resnet18 without weights, a small FX-quantized conv
net).  Timings run with one thread: on this 2-core machine other jobs often
hold a core, and a 2-thread measurement then waits on whichever thread was
descheduled, which is noise, not model speed.  The timing-stability tests run
real CPU burners beside the benchmark.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import torch
from engine_checks import codes, quantize, quantize_fx_x86
from torch import nn

from qstudio.core import benchmark as bench
from qstudio.core import stability
from qstudio.core.benchmark import (
    LatencyStat,
    benchmark,
    benchmark_interleaved,
    compare_with_torch_utils_benchmark,
    model_size_mb,
)
from qstudio.core.errors import Cancelled
from qstudio.core.progress import CancelToken, Progress, run
from qstudio.core.recipe import BenchmarkSettings
from qstudio.core.torchscript import to_torchscript

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the path table traces resnet18 itself

log = logging.getLogger(__name__)

THREADS = 1
AGREEMENT = 0.10  # the requirement; never loosen it


# --------------------------------------------------------------------------- fixtures (resnet18, image, small_fp32: conftest.py)


@pytest.fixture(scope="module")
def resnet18_int8(resnet18: nn.Module, image: torch.Tensor) -> nn.Module:
    return quantize_fx_x86(resnet18, image, calib_batches=2)


@pytest.fixture(scope="module")
def resnet18_int8_ts(resnet18_int8: nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    module, method = to_torchscript(resnet18_int8, image)
    assert method == "traced"  # scale/zero-point float() TracerWarnings must not push FX models to scripting
    return module


# --------------------------------------------------------------------------- helpers


def ours_median(model, x: torch.Tensor, *, iters: int, warmup: int = 3, label: str = "ours") -> float:
    settings = BenchmarkSettings(batch_sizes=[x.shape[0]], threads=THREADS, warmup=warmup, iters=iters)
    stats = run(benchmark(model, lambda _b: x, settings, label))
    return stats[0].median_ms


def interleaved_rounds(
    model, x: torch.Tensor, *, rounds: int, iters: int, min_run_time: float
) -> list[tuple[float, float]]:
    """Per round, (our median, torch.utils.benchmark's median), measured back-to-back.

    Many short rounds, alternating which timer goes first: other jobs on this
    machine change the speed from second to second, and only measurements
    taken next to each other see the same load.
    """
    pairs: list[tuple[float, float]] = []
    for r in range(rounds):
        ours = theirs = 0.0
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            if which == 0:
                ours = ours_median(model, x, iters=iters)
            else:
                theirs = compare_with_torch_utils_benchmark(model, x, THREADS, min_run_time=min_run_time)
        pairs.append((ours, theirs))
    return pairs


def assert_agrees(model, x: torch.Tensor, *, rounds: int, iters: int, min_run_time: float, what: str) -> None:
    """Our median within 10% of torch.utils.benchmark's; one repeat allowed when the machine was noisy.

    The figure checked is the median over rounds of ours/theirs, each ratio
    from two back-to-back medians; a load burst that hits one side of one
    round moves that round's ratio, not the median.  The 10% bound is fixed.
    """
    for attempt in (1, 2):
        pairs = interleaved_rounds(model, x, rounds=rounds, iters=iters, min_run_time=min_run_time)
        ratio = statistics.median(o / t for o, t in pairs)
        ours = statistics.median(o for o, _ in pairs)
        theirs = statistics.median(t for _, t in pairs)
        print(
            f"\n{what}: ours {ours:.3f} ms, torch.utils.benchmark {theirs:.3f} ms, "
            f"median back-to-back ratio {ratio:.3f} (try {attempt})"
        )
        log.info("%s rounds (ours, theirs): %s", what, pairs)
        if abs(ratio - 1) <= AGREEMENT:
            return
    pytest.fail(f"{what}: our median is {ratio:.3f}x torch.utils.benchmark's, more than 10% apart; rounds {pairs}")


# --------------------------------------------------------------------------- benchmark


def test_benchmark_agrees_with_torch_utils_on_resnet18_fp32(resnet18: nn.Module, image: torch.Tensor) -> None:
    assert_agrees(resnet18, image, rounds=10, iters=5, min_run_time=0.25, what="resnet18 FP32 eager, batch 1")


def test_benchmark_agrees_with_torch_utils_on_int8_resnet18(
    resnet18_int8_ts: torch.jit.ScriptModule, image: torch.Tensor
) -> None:
    # A model of 10+ ms per call on purpose: torch.utils.benchmark times blocks
    # of `number` calls and reports the median of block *means*; for ~1 ms
    # models it picks 100-call blocks, so under background load its figure is a
    # mean (spikes included) while ours is a per-call median, and they part by
    # 10-40% for reasons of statistics, not of timing.
    assert_agrees(
        resnet18_int8_ts, image, rounds=10, iters=8, min_run_time=0.2, what="resnet18 INT8 TorchScript, batch 1"
    )


def test_benchmark_reports_each_batch_size_and_progress(small_fp32: nn.Module) -> None:
    settings = BenchmarkSettings(batch_sizes=[1, 3], threads=THREADS, warmup=2, iters=7)
    steps: list[Progress] = []
    shapes: list[int] = []

    def make_input(b: int) -> torch.Tensor:
        shapes.append(b)
        return torch.randn(b, 3, 32, 32)

    stats = run(benchmark(small_fp32, make_input, settings, "FP32 eager"), on_progress=steps.append)
    assert shapes == [1, 3]
    assert [s.batch_size for s in stats] == [1, 3]
    for s in stats:
        assert isinstance(s, LatencyStat)
        assert s.label == "FP32 eager" and s.iters == 7 and s.threads == THREADS
        assert 0 < s.median_ms <= s.p90_ms and s.mean_ms > 0
    assert steps and steps[-1].done == steps[-1].total == 2 * (2 + 7)
    assert all(p.stage == "benchmark FP32 eager" for p in steps)


def test_interleaved_benchmark_takes_turns_and_counts_exactly(small_fp32: nn.Module) -> None:
    """Each model gets its warm-up, then the timed calls alternate in slices, so load drift hits all alike."""
    calls: list[str] = []

    def recording(label: str, model: nn.Module):
        def call(x: torch.Tensor) -> torch.Tensor:
            calls.append(label)
            return model(x)

        return call

    other = copy.deepcopy(small_fp32)
    settings = BenchmarkSettings(batch_sizes=[1, 2], threads=THREADS, warmup=2, iters=9)
    steps: list[Progress] = []
    stats = run(
        benchmark_interleaved(
            {"a": recording("a", small_fp32), "b": recording("b", other)},
            {"a": lambda b: torch.randn(b, 3, 32, 32), "b": lambda b: torch.randn(b, 3, 32, 32)},
            settings,
            rounds=3,
        ),
        on_progress=steps.append,
    )
    assert set(stats) == {"a", "b"}
    for label in "ab":
        assert [s.batch_size for s in stats[label]] == [1, 2]
        assert all(s.iters == 9 and s.label == label and s.median_ms > 0 for s in stats[label])
    # warm-ups, then three rounds of three timed calls each; each round starts with the next model, so neither
    # always follows the other (whoever follows FP32 eager absorbs torch's still-spinning threads)
    per_batch = "aa" + "bb" + "aaabbb" + "bbbaaa" + "aaabbb"
    assert "".join(calls) == per_batch * 2
    assert steps[-1].done == steps[-1].total == 2 * 2 * (2 + 9)


def test_cancel_from_progress_callback_restores_threads(small_fp32: nn.Module) -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    settings = BenchmarkSettings(batch_sizes=[1, 8], threads=other, warmup=5, iters=100_000)
    token = CancelToken()
    seen: list[Progress] = []
    grad_modes: list[bool] = []

    def on_progress(step: Progress) -> None:
        seen.append(step)
        grad_modes.append(torch.is_inference_mode_enabled())
        assert torch.get_num_threads() == other  # the setting is in force while the work runs
        token.cancel()

    started = time.perf_counter()
    with pytest.raises(Cancelled):
        run(benchmark(small_fp32, lambda b: torch.randn(b, 3, 32, 32), settings, "cancel me"), on_progress, token)
    assert len(seen) == 1 and seen[0].done < seen[0].total
    assert grad_modes == [False]  # inference mode is not leaked to the caller between steps
    assert torch.get_num_threads() == before
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------- which path is fastest (printed with -s)


def _table(rows: dict[str, float], title: str) -> None:
    best = min(rows.values())
    print(f"\n{title}")
    for name, ms in rows.items():
        print(f"  {name:<44} {ms:8.2f} ms  x{ms / best:4.2f}{'  <- fastest' if ms == best else ''}")


def _race(variants: dict[str, tuple[object, torch.Tensor]], *, rounds: int, iters: int) -> dict[str, float]:
    """Median of per-round medians, variants interleaved each round so background load hits all alike."""
    per: dict[str, list[float]] = {name: [] for name in variants}
    for model, x in variants.values():
        ours_median(model, x, iters=1, warmup=3)  # profiling executor / oneDNN caches settle
    for _ in range(rounds):
        for name, (model, x) in variants.items():
            per[name].append(ours_median(model, x, iters=iters, warmup=1))
    return {name: statistics.median(v) for name, v in per.items()}


def test_print_fp32_and_int8_path_table(
    resnet18: nn.Module,
    image: torch.Tensor,
    resnet18_frozen: torch.jit.ScriptModule,
    resnet18_int8: nn.Module,
    resnet18_int8_ts: torch.jit.ScriptModule,
) -> None:
    cl_model = copy.deepcopy(resnet18).to(memory_format=torch.channels_last)
    cl_image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        traced = torch.jit.trace(resnet18, image, check_trace=False)
        traced_cl = torch.jit.trace(cl_model, cl_image, check_trace=False)
    fp32 = {  # torch.jit.freeze returns a new module, so one trace serves several rows
        "eager": (resnet18, image),
        "traced": (traced, image),
        "traced+frozen": (torch.jit.freeze(traced), image),
        "freeze_fp32 (frozen+optimize_for_inference)": (resnet18_frozen, image),
        "eager channels_last": (cl_model, cl_image),
        "frozen channels_last": (torch.jit.freeze(traced_cl), cl_image),
        "frozen+ofi channels_last": (torch.jit.optimize_for_inference(torch.jit.freeze(traced_cl)), cl_image),
    }
    fp32_ms = _race(fp32, rounds=3, iters=5)
    _table(fp32_ms, f"resnet18 FP32, batch 1, {THREADS} thread(s), median ms")

    int8, int8_ts = resnet18_int8, resnet18_int8_ts
    with torch.no_grad():
        assert torch.equal(int8_ts(image), int8(image))
    int8_ms = _race(
        {"INT8 eager GraphModule": (int8, image), "INT8 traced+frozen": (int8_ts, image)}, rounds=3, iters=10
    )
    _table(int8_ms, f"resnet18 INT8 (FX, x86), batch 1, {THREADS} thread(s), median ms")
    print(f"  size: FP32 {model_size_mb(resnet18):.1f} MB, INT8 TorchScript {model_size_mb(int8_ts):.1f} MB")
    assert all(v > 0 for v in [*fp32_ms.values(), *int8_ms.values()])


# --------------------------------------------------------------------------- unstable timing: measured beside CPU burners


@contextlib.contextmanager
def cpu_burners(n: int = 2) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes spinning on a CPU each, ended (by their own handles) on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()  # fmt: skip


def _expected_reasons(stats: list[bench.LatencyStat]) -> tuple[bool, bool]:
    spread = any(
        s.p90_ms / s.median_ms > stability.SPREAD_LIMIT and s.p90_ms - s.median_ms > stability.SPREAD_FLOOR_MS
        for s in stats
    )
    starved = any(s.cpu_ratio is not None and s.cpu_ratio < stability.CPU_RATIO_LIMIT for s in stats)
    return spread, starved


def test_timing_decision_on_real_measurements_beside_cpu_burners():
    model = small_cnn()
    settings = BenchmarkSettings(batch_sizes=[1], warmup=3, iters=40, threads=2)
    with cpu_burners(2):
        stats = run(
            bench.benchmark_interleaved({"a": model, "b": model}, lambda b: torch.randn(b, 3, 32, 32), settings)
        )
    flat = [s for group in stats.values() for s in group]
    assert all(s.cpu_ratio is not None and 0 < s.cpu_ratio <= 1 for s in flat)
    check = stability.check_timing(stats)  # no load average: the measured figures alone decide
    spread, starved = _expected_reasons(flat)
    assert check.stable == (not spread and not starved)
    assert any("varied from call to call" in r for r in check.reasons) == spread
    assert any("on a CPU only" in r for r in check.reasons) == starved
    # the same real figures, made calm and then made starved
    calm = [dataclasses.replace(s, p90_ms=s.median_ms * 1.1, cpu_ratio=0.99) for s in flat]
    assert stability.check_timing(calm).stable
    assert not stability.check_timing(calm, load=9.0, cpus=2).stable  # over 2 runnable threads per CPU
    assert stability.check_timing(calm, load=2.5, cpus=2).stable  # busy alone is no reason
    starved_stats = [dataclasses.replace(calm[0], cpu_ratio=0.3), *calm[1:]]
    check = stability.check_timing(starved_stats, load=2.5, cpus=2)
    assert not check.stable and "on a CPU only 30%" in check.reasons[0] and "busy" in check.reasons[-1]


def test_busy_machine_run_is_stable_or_says_its_timing_is_unreliable():
    with cpu_burners(2):
        result = quantize(small_cnn(), [1, 3, 32, 32])
    timing = result.timing
    assert timing is not None
    stats = [*result.fp32.latency, *result.int8.latency, *result.fp32_deploy]
    spread, starved = _expected_reasons(stats)
    overloaded = timing.load is not None and timing.cpus and timing.load > stability.LOAD_PER_CPU_LIMIT * timing.cpus
    assert timing.stable == (not spread and not starved and not overloaded)
    assert stability.check_timing(stats, load=timing.load, cpus=timing.cpus).stable == timing.stable
    unreliable = [w for w in result.warnings if w.startswith("UNRELIABLE TIMING")]
    if timing.stable:
        assert not unreliable
    else:
        assert timing.remeasured and timing.first_reasons  # measured once more before saying so
        assert len(unreliable) == 1 and codes(result)["unreliable-timing"].severity == "critical"
        assert all(reason in unreliable[0] for reason in timing.reasons)
    assert result.to_json()["timing"]["stable"] == timing.stable
