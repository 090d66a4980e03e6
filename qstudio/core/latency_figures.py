"""The latency figures a run's charts and tables show, worked out once.

A run benchmarks three paths (FP32 eager, frozen FP32 TorchScript, INT8) at
each batch size: :func:`latency_series` gives them as the latency chart's
lines (:class:`Series`, in legend order, coloured from :data:`PALETTE`),
:func:`latency_rows` as the latency table's rows (:class:`LatencyRow`, with the
speedups), :func:`fastest_fp32` and :func:`int8_slower` say which path won.
The charts themselves are drawn by :mod:`qstudio.core.report_charts` (the
report) and the window; :func:`qstudio.core.summary.summarize` puts these in
its :class:`~qstudio.core.summary.Summary` (and :mod:`qstudio.core.summary`
exports them too).

Qt-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qstudio.core.formatting import _finite
from qstudio.core.palette import PALETTE

if TYPE_CHECKING:
    from qstudio.core.benchmark import LatencyStat
    from qstudio.core.deploy import RuntimeFigure
    from qstudio.core.run_result import RunResult

#: The latency series in legend order: (palette key, label).  The label is :attr:`LatencyStat.label`'s.
LATENCY_SERIES = (
    ("fp32_eager", "FP32 eager"),
    ("fp32_script", "FP32 TorchScript (frozen)"),
    ("int8", "INT8"),
)


@dataclass(frozen=True)
class Series:
    key: str  # palette key: "fp32_eager", "fp32_script", "int8"
    label: str
    colour: str
    stats: tuple[LatencyStat, ...]  # by batch size


@dataclass(frozen=True)
class LatencyRow:
    """One batch size: the three medians and INT8's (and TorchScript's) speedups."""

    batch_size: int
    eager: LatencyStat | None
    script: LatencyStat | None
    int8: LatencyStat | None

    def stat(self, key: str) -> LatencyStat | None:
        """The figure of the series ``key`` ("fp32_eager", "fp32_script", "int8") at this batch size."""
        return {"fp32_eager": self.eager, "fp32_script": self.script, "int8": self.int8}[key]

    @staticmethod
    def _ratio(base: LatencyStat | None, stat: LatencyStat | None) -> float | None:
        if base is None or stat is None or not stat.median_ms or not base.median_ms:
            return None
        return base.median_ms / stat.median_ms

    @property
    def int8_vs_eager(self) -> float | None:
        return self._ratio(self.eager, self.int8)

    @property
    def int8_vs_script(self) -> float | None:
        return self._ratio(self.script, self.int8)

    @property
    def script_vs_eager(self) -> float | None:
        return self._ratio(self.eager, self.script)

    def vs_eager(self, key: str) -> float | None:
        """The series ``key``'s speedup over FP32 eager (None for eager itself)."""
        return {"fp32_script": self.script_vs_eager, "int8": self.int8_vs_eager}.get(key)


def _smallest(stats: Sequence[LatencyStat]) -> LatencyStat | None:
    return min(stats, key=lambda s: s.batch_size) if stats else None


def latency_series(result: RunResult) -> tuple[Series, ...]:
    """FP32 eager, FP32 TorchScript (frozen) and INT8, in legend order, each sorted by batch size."""
    stats = {"fp32_eager": result.fp32.latency, "fp32_script": result.fp32_deploy, "int8": result.int8.latency}
    return tuple(
        Series(key, label, PALETTE[key], tuple(sorted(stats[key], key=lambda s: s.batch_size)))
        for key, label in LATENCY_SERIES
    )


def latency_rows(result: RunResult) -> tuple[LatencyRow, ...]:
    eager, script, int8 = ({s.batch_size: s for s in series.stats} for series in latency_series(result))
    sizes = sorted({*eager, *script, *int8})
    return tuple(LatencyRow(b, eager.get(b), script.get(b), int8.get(b)) for b in sizes)


def fastest_fp32(result: RunResult) -> tuple[str, float] | None:
    """The fastest true-FP32 runtime measured at the smallest batch size: ``("OpenVINO FP32", 0.41)``.

    Every runtime's FP32 row counts (BF16 never does); a run without runtime
    rows (an old result) falls back to FP32 eager and frozen TorchScript.
    """
    best = result.fp32_best
    if best is not None and best.latency_ms:
        return best.label, best.latency_ms
    first = _smallest(result.int8.latency)
    if first is None:
        return None
    found = [
        (label, s.median_ms)
        for label, stats in (("FP32 eager", result.fp32.latency), ("frozen TorchScript FP32", result.fp32_deploy))
        for s in stats
        if s.batch_size == first.batch_size and _finite(s.median_ms) and s.median_ms > 0
    ]
    return min(found, key=lambda f: f[1]) if found else None


def int8_slower(result: RunResult) -> bool:
    """At the smallest batch size, the exported INT8 model is slower than FP32 eager or the fastest FP32 runtime."""
    speed, deploy, best = result.speedup, result.speedup_vs_deploy, result.speedup_vs_fp32_best
    return bool(speed and min(speed, deploy or speed, best or speed) < 1)


#: the runtimes chart's colour per precision
PRECISION_COLOURS = {"fp32": PALETTE["fp32_script"], "bf16": PALETTE["bf16"], "int8": PALETTE["int8"]}


@dataclass(frozen=True)
class RuntimeRow:
    """One runtime and precision as the runtimes table, chart and report show it."""

    figure: RuntimeFigure
    colour: str
    vs_fp32_best: float | None  # its speedup over the fastest true-FP32 runtime (below 1: slower)
    vs_eager: float | None
    baseline: bool  # it is the fastest true-FP32 runtime
    target: bool  # the export targets it

    def latency_at(self, batch_size: int) -> LatencyStat | None:
        return next((s for s in self.figure.latency if s.batch_size == batch_size), None)


def runtime_rows(result: RunResult) -> tuple[RuntimeRow, ...]:
    """Every runtime and precision measured, in the run's order (torch first), with its speedups and marks."""
    best, target, eager = result.fp32_best, result.deployed, result.fp32.latency_ms
    rows = []
    for f in result.runtimes:
        ms = f.latency_ms
        rows.append(
            RuntimeRow(
                f,
                PRECISION_COLOURS.get(f.precision, PALETTE["muted"]),
                best.latency_ms / ms if best is not None and best.latency_ms and ms else None,
                eager / ms if eager and ms else None,
                f is best,
                f is target,
            )
        )
    return tuple(rows)


def runtime_batch_sizes(result: RunResult) -> list[int]:
    return sorted({s.batch_size for f in result.runtimes for s in f.latency})
