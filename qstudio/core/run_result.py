"""What one quantization run produced: :class:`RunResult`, a :class:`Measurement` per precision, :class:`Verdict` objects.

:func:`qstudio.core.pipeline.run_recipe` fills it; the CLI (``--json``, via
:meth:`RunResult.to_json`), the HTML report, the window and
:func:`qstudio.core.summary.summarize` read it.  :class:`Verdict` lives here,
with the record that holds the verdicts, and is judged by
:mod:`qstudio.core.verdicts` (which exports it too).

Qt-free.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from qstudio.core import benchmark as bench
from qstudio.core import compare, fusion, stability
from qstudio.core.deploy import RuntimeFigure, fp32_best
from qstudio.core.export import ExportInfo
from qstudio.core.flows import EpochStats, QuantizedModel
from qstudio.core.recipe import Recipe


# A figure that must not be read as a result without a word: see qstudio.core.verdicts.
@dataclass(frozen=True)
class Verdict:
    severity: str  # one of SEVERITIES (qstudio.core.verdicts)
    code: str  # "slowdown", "collapse", "agreement-resolution", "unreliable-timing", "export-failed"
    text: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Measurement:
    """One precision's figures.  ``latency`` holds one entry per batch size."""

    accuracy: float | None
    size_mb: float
    latency: list[bench.LatencyStat]

    @property
    def latency_ms(self) -> float | None:
        """Median latency at the smallest benchmarked batch size."""
        return min(self.latency, key=lambda s: s.batch_size).median_ms if self.latency else None


@dataclass
class SkipWorstOutcome:
    """What keeping the worst layers in float bought: evaluation before and after."""

    layers: list[str]
    before: compare.Evaluation
    after: compare.Evaluation


@dataclass
class RunResult:
    recipe: Recipe
    model_name: str
    fp32: Measurement
    fp32_deploy: list[bench.LatencyStat]  # frozen TorchScript: the honest FP32 baseline
    int8: Measurement
    evaluation: compare.Evaluation
    layers: list[compare.LayerError]
    coverage: compare.Coverage
    fusion_check: fusion.FusionCheck | None
    groups: list[list[str]]
    skipped: list[str]
    skip_worst: SkipWorstOutcome | None
    history: list[EpochStats]
    calibration_seconds: float
    total_seconds: float
    random_data: bool
    warnings: list[str]
    environment: dict[str, Any]
    export: ExportInfo | None = None
    export_error: str | None = None  # why the export at the end of the run failed; the run itself is kept
    verdicts: list[Verdict] = field(default_factory=list)  # typed warnings; their texts are in ``warnings`` too
    timing: stability.TimingCheck | None = None  # whether the latency figures are stable (re-measured once if not)
    quantized: QuantizedModel | None = field(default=None, repr=False, compare=False)
    # inputs for exporting later from the window: the trace example and a second batch to verify against
    example: torch.Tensor | None = field(default=None, repr=False, compare=False)
    check_input: torch.Tensor | None = field(default=None, repr=False, compare=False)
    # every runtime and precision measured side by side (qstudio.core.deploy), torch's own rows first
    runtimes: list[RuntimeFigure] = field(default_factory=list)
    runtime_notes: list[str] = field(default_factory=list)  # runtimes skipped, each with its one-line reason
    target: RuntimeFigure | None = None  # the INT8 row the export targets (deploy.target; auto resolved)
    target_note: str = ""  # why auto chose it, or why no row could be the target
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # label -> runtime Artifact

    @property
    def speedup(self) -> float | None:
        a, b = self.fp32.latency_ms, self.int8.latency_ms
        return a / b if a and b else None

    @property
    def speedup_vs_deploy(self) -> float | None:
        if not self.fp32_deploy or not self.int8.latency_ms:
            return None
        best = min(self.fp32_deploy, key=lambda s: s.batch_size).median_ms
        return best / self.int8.latency_ms

    @property
    def fp32_best(self) -> RuntimeFigure | None:
        """The fastest true-FP32 runtime measured (BF16 never counts): the honest baseline, named."""
        return fp32_best(self.runtimes)

    @property
    def deployed(self) -> RuntimeFigure | None:
        """The INT8 model the export targets: the chosen runtime's row, else torch.ao's TorchScript row."""
        if self.target is not None:
            return self.target
        return next((f for f in self.runtimes if f.name == "torchscript" and f.precision == "int8"), None)

    @property
    def speedup_vs_fp32_best(self) -> float | None:
        """The headline: the exported INT8 model against the fastest true-FP32 runtime measured."""
        best, int8 = self.fp32_best, self.deployed
        if best is None or int8 is None or not best.latency_ms or not int8.latency_ms:
            return None
        return best.latency_ms / int8.latency_ms

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: stable keys first, details after."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else (1e9 if v > 0 else -1e9)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        def measurement(m: Measurement) -> dict[str, Any]:
            return {
                "accuracy": m.accuracy,
                "latency_ms": m.latency_ms,
                "size_mb": m.size_mb,
                "latency": [dataclasses.asdict(s) for s in m.latency],
            }

        doc = {
            "model": self.model_name,
            "mode": self.recipe.mode,
            "fp32": measurement(self.fp32),
            "fp32_torchscript": {"latency": [dataclasses.asdict(s) for s in self.fp32_deploy]},
            "int8": measurement(self.int8),
            "speedup": self.speedup,
            "speedup_vs_fp32_torchscript": self.speedup_vs_deploy,
            "agreement": self.evaluation.agreement,
            "output_sqnr_db": self.evaluation.output_sqnr_db,
            "cosine": self.evaluation.cosine,
            "fp32_top1_distinct": self.evaluation.fp32_top1_distinct,
            "near_ties": self.evaluation.near_ties,
            "layers": [dataclasses.asdict(e) for e in self.layers],
            "coverage": dataclasses.asdict(self.coverage),
            "fusion": {
                "groups": self.groups,
                "check": dataclasses.asdict(self.fusion_check) if self.fusion_check else None,
            },
            "skipped": self.skipped,
            "skip_worst": dataclasses.asdict(self.skip_worst) if self.skip_worst else None,
            "qat_history": [dataclasses.asdict(h) for h in self.history],
            "calibration_seconds": self.calibration_seconds,
            "total_seconds": self.total_seconds,
            "random_data": self.random_data,
            "warnings": self.warnings,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "timing": dataclasses.asdict(self.timing) if self.timing else None,
            "speedup_vs_fp32_best": self.speedup_vs_fp32_best,
            "fp32_best": (
                {"runtime": best.name, "label": best.label, "latency_ms": best.latency_ms}
                if (best := self.fp32_best)
                else None
            ),
            "runtimes": [f.to_json() for f in self.runtimes],
            "runtimes_skipped": self.runtime_notes,
            "target": (
                {"runtime": self.target.name, "label": self.target.label, "note": self.target_note}
                if self.target
                else {"runtime": None, "label": None, "note": self.target_note}
            ),
            "export": self.export.to_json() if self.export else None,
            "export_error": self.export_error,
            "export_check": dataclasses.asdict(self.export) if self.export else None,
            "environment": self.environment,
            "recipe": self.recipe.to_dict(),
        }
        return clean(doc)
