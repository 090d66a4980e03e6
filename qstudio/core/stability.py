"""Is a benchmark's timing trustworthy?  Checks on what it measured and what the machine was doing.

On a 2-core machine another process can inflate torch's timings tenfold.
:func:`check_timing` judges a benchmark from the spread of its calls, the
share of wall time its thread really ran, and the machine's load;
:func:`benchmark_checked` measures once more when the first figures are
unstable and says so when the second are too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qstudio.core.benchmark import LatencyStat, benchmark_interleaved
from qstudio.core.progress import Progress
from qstudio.core.recipe import BenchmarkSettings

log = logging.getLogger(__name__)

#: p90 / median above this: one call in ten took half again the typical time; the medians move from run to run.
SPREAD_LIMIT = 1.5
#: ... unless p90 and median are closer than this (ms): for calls of a few microseconds that is timer and cache noise.
SPREAD_FLOOR_MS = 0.02
#: the timing thread ran on a CPU for less than this share of the wall time of its calls: it was pre-empted.
CPU_RATIO_LIMIT = 0.8
#: a 1-minute load average above this many runnable threads per CPU: the machine is oversubscribed.
LOAD_PER_CPU_LIMIT = 2.0


@dataclass
class TimingCheck:
    """Whether a benchmark's figures can be trusted, from what it measured and what the machine was doing.

    ``spread`` is the worst p90/median of any contender at any batch size,
    ``cpu_ratio`` the lowest share of wall time the timing thread spent on a CPU
    (:attr:`LatencyStat.cpu_ratio`), ``load`` the 1-minute load average when
    the timing ended and ``cpus`` the CPU count.  ``reasons`` says in words why
    the figures are not stable (empty when they are).  ``remeasured`` is set
    when a first measurement was unstable and this is the second;
    ``first_reasons`` are the first one's reasons.
    """

    stable: bool
    reasons: list[str]
    spread: float | None
    cpu_ratio: float | None
    load: float | None
    cpus: int | None
    remeasured: bool = False
    first_reasons: list[str] = field(default_factory=list)


def machine_load() -> tuple[float | None, int | None]:
    """The 1-minute load average and the CPU count, None where the platform has none (Windows)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return load, os.cpu_count()


def check_timing(
    stats: Mapping[str, Sequence[LatencyStat]] | Sequence[LatencyStat],
    *,
    load: float | None = None,
    cpus: int | None = None,
) -> TimingCheck:
    """Decide whether measured latencies are stable enough to report as figures.

    Unstable when any contender's p90 is more than :data:`SPREAD_LIMIT` times
    its median (and :data:`SPREAD_FLOOR_MS` above it), when the timing thread was on a CPU for less than
    :data:`CPU_RATIO_LIMIT` of the time its calls took, or when the load
    average exceeds :data:`LOAD_PER_CPU_LIMIT` runnable threads per CPU.  A
    load above the CPU count alone is not enough (the load average trails by a
    minute and counts this process too), but it is named beside another reason.
    """
    flat = [s for group in stats.values() for s in group] if isinstance(stats, Mapping) else list(stats)
    reasons: list[str] = []
    spreads = [
        (s.p90_ms / s.median_ms, s)
        for s in flat
        if s.median_ms > 0 and s.iters >= 2 and s.p90_ms - s.median_ms > SPREAD_FLOOR_MS
    ]
    spread, worst = max(spreads, key=lambda t: t[0]) if spreads else (None, None)
    ratios = [(s.cpu_ratio, s) for s in flat if s.cpu_ratio is not None]
    cpu_ratio, starved = min(ratios, key=lambda t: t[0]) if ratios else (None, None)
    if spread is not None and worst is not None and spread > SPREAD_LIMIT:
        reasons.append(
            f"{worst.label} at batch {worst.batch_size} varied from call to call "
            f"(p90 {worst.p90_ms:.3g} ms is {spread:.1f}x its median {worst.median_ms:.3g} ms)"
        )
    if cpu_ratio is not None and starved is not None and cpu_ratio < CPU_RATIO_LIMIT:
        reasons.append(
            f"the timing thread was on a CPU only {cpu_ratio:.0%} of the time {starved.label} at batch "
            f"{starved.batch_size} took (other processes had the CPU)"
        )
    if load is not None and cpus:
        if load > LOAD_PER_CPU_LIMIT * cpus:
            reasons.append(f"the machine was overloaded (load average {load:.1f} on {cpus} CPUs)")
        elif reasons and load > cpus:
            reasons.append(f"the machine was busy (load average {load:.1f} on {cpus} CPUs)")
    return TimingCheck(not reasons, reasons, spread, cpu_ratio, load, cpus)


def benchmark_checked(
    models: Mapping[str, Callable[..., Any]],
    make_input: Callable[[int], Any] | Mapping[str, Callable[[int], Any]],
    settings: BenchmarkSettings,
    *,
    rounds: int = 10,
    stage: str = "benchmark",
) -> Generator[Progress, None, tuple[dict[str, list[LatencyStat]], TimingCheck]]:
    """:func:`benchmark_interleaved`, then :func:`check_timing`; when unstable, measure once more.

    Returns the figures and their check.  If the first measurement is
    unstable, the second replaces it and its check (``remeasured=True``) is
    returned: stable, or plainly unreliable.
    """
    results = yield from benchmark_interleaved(models, make_input, settings, rounds=rounds, stage=stage)
    load, cpus = machine_load()
    check = check_timing(results, load=load, cpus=cpus)
    if check.stable:
        return results, check
    log.warning("timing was unstable (%s); measuring again", "; ".join(check.reasons))
    yield Progress(stage, 0, 1, "the timing was unstable: measuring again")
    again = yield from benchmark_interleaved(models, make_input, settings, rounds=rounds, stage=stage)
    load, cpus = machine_load()
    second = check_timing(again, load=load, cpus=cpus)
    second.remeasured = True
    second.first_reasons = check.reasons
    return again, second
