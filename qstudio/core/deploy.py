"""Every runtime and precision side by side: build, evaluate, pick the export target, name the FP32 baseline.

The run's torch models (FP32 eager, frozen FP32 TorchScript, torch.ao's INT8
TorchScript) are measured by the pipeline as before; this module adds the
other runtimes (:mod:`qstudio.core.runtimes`) from the same float model, the
same calibration samples and the same layers kept in float, and turns all of
them into :class:`RuntimeFigure` rows: latency per batch size, size, accuracy
or agreement, cosine against FP32 eager.

Two figures come out of the rows.  The **FP32 baseline** is the fastest true
FP32 row (a BF16 run is never called FP32); a stakeholder's speedup is
against it, by name.  The **export target** is the runtime the user chose, or
for ``auto`` the fastest INT8 row whose accuracy (agreement without labels)
is within ``max_drop`` points of torch.ao's.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstudio.core import compare
from qstudio.core.benchmark import LatencyStat
from qstudio.core.data import Dataset
from qstudio.core.progress import Progress
from qstudio.core.recipe import DEFAULT_MAX_DROP, RUNTIMES, Recipe
from qstudio.core.runtimes import Artifact, BuildInput, RuntimeUnavailable, get_runtime
from qstudio.core.runtimes.base import first_line

log = logging.getLogger(__name__)

#: narrows the default comparison set on a machine (a comma list of runtime names; empty: torch only)
RUNTIMES_ENV = "QSTUDIO_RUNTIMES"


class _BuildFolder:
    """A private temporary folder removed (silently, at the latest at exit) when the last artifact holding it goes."""

    def __init__(self) -> None:
        self.name = tempfile.mkdtemp(prefix="qstudio-runtimes-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.name, True)


#: build folders of artifacts that cannot hold a reference to theirs
_KEPT_FOLDERS: list[_BuildFolder] = []
#: the rows the pipeline measures itself, by label
EAGER_FP32, SCRIPT_FP32, SCRIPT_INT8 = "FP32 eager", "FP32 TorchScript", "INT8"


@dataclass
class RuntimeFigure:
    """One runtime at one precision, measured in the run beside the others."""

    name: str  # the runtime: "eager", "torchscript", "onnx", "openvino", "pt2"
    precision: str  # "fp32", "bf16", "int8"
    label: str  # as tables and charts show it: "OpenVINO INT8"
    latency: list[LatencyStat]
    size_mb: float | None
    accuracy: float | None  # on labelled eval data, else None
    agreement: float | None  # top-1 agreement with FP32 eager
    cosine: float | None  # mean cosine of the outputs to FP32 eager's
    build_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    samples: int | None = None  # how many evaluation samples the quality figures come from

    @property
    def latency_ms(self) -> float | None:
        """Median latency at the smallest benchmarked batch size."""
        return min(self.latency, key=lambda s: s.batch_size).median_ms if self.latency else None

    @property
    def quality(self) -> float | None:
        """Accuracy when labelled, else agreement: what ``auto`` and ``max_drop`` compare."""
        return self.accuracy if self.accuracy is not None else self.agreement

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "name": self.name,
            "precision": self.precision,
            "label": self.label,
            "latency_ms": self.latency_ms,
            "size_mb": self.size_mb,
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "cosine": self.cosine,
            "build_seconds": self.build_seconds,
            "samples": self.samples,
            "latency": [asdict(s) for s in self.latency],
            "notes": self.notes,
        }


def runtimes_to_measure(recipe: Recipe) -> list[str]:
    """The runtimes a run measures besides torch's own rows, in table order; the export target always among them."""
    chosen = recipe.deploy.runtimes
    if chosen is None:
        env = os.environ.get(RUNTIMES_ENV)
        if env is not None:
            chosen = [n.strip() for n in env.split(",") if n.strip() in RUNTIMES]
        else:
            chosen = [n for n in RUNTIMES if get_runtime(n).compared_by_default]
    names = set(chosen)
    if recipe.deploy.target in RUNTIMES:
        names.add(recipe.deploy.target)
    names.discard("torchscript")  # the pipeline's own FP32 / INT8 TorchScript rows
    return [n for n in RUNTIMES if n in names]


def build_artifacts(
    names: list[str], inp: BuildInput
) -> Generator[Progress, None, tuple[dict[str, Artifact], list[str], dict[str, float]]]:
    """Build every precision of every named runtime; a runtime that cannot is skipped with one line.

    Returns ``({label: artifact}, [skip lines], {label: build seconds})``.
    """
    jobs: list[tuple[str, str | None, Any]] = []
    skipped: list[str] = []
    for name in names:
        runtime = get_runtime(name)
        missing = runtime.missing()
        if missing:
            skipped.append(f"{runtime.title}: skipped, {missing}")
            continue
        jobs += [(name, p, runtime) for p in runtime.precisions()]
    artifacts: dict[str, Artifact] = {}
    seconds: dict[str, float] = {}
    # artifacts may keep files there (OpenVINO serializes once, then saves copies): the folder lives as long as
    # the artifacts that hold it, and is removed with the last of them
    folder = _BuildFolder()
    tmp = folder.name
    for i, (name, precision, runtime) in enumerate(jobs):
        yield Progress("runtimes", i, len(jobs), f"building {runtime.title} {precision.upper()}")
        inp.workdir = Path(tmp) / f"{name}-{precision}"
        inp.workdir.mkdir()
        start = time.perf_counter()
        try:
            art = runtime.build(inp, precision)
        except RuntimeUnavailable as exc:
            skipped.append(f"{runtime.title} {precision.upper()}: skipped, {exc}")
            continue
        except Exception as exc:  # a runtime's own bug must not lose the run; say what it was
            log.info("%s %s failed", name, precision, exc_info=True)
            skipped.append(f"{runtime.title} {precision.upper()}: skipped, it failed with {first_line(exc)}")
            continue
        seconds[art.label] = time.perf_counter() - start
        try:
            art._qstudio_workdir = folder  # type: ignore[attr-defined]
        except AttributeError:  # a slotted artifact: keep the folder until the process ends
            _KEPT_FOLDERS.append(folder)
        artifacts[art.label] = art
    yield Progress("runtimes", len(jobs), len(jobs))
    return artifacts, skipped, seconds


def evaluate_artifacts(
    model: Any, artifacts: dict[str, Any], data: Dataset, batch_size: int = 32
) -> Generator[Progress, None, tuple[dict[str, compare.Evaluation], list[str]]]:
    """Each artifact's accuracy/agreement/cosine against FP32 eager on ``data``; one that fails is dropped, said why."""
    results: dict[str, compare.Evaluation] = {}
    failed: list[str] = []
    total = len(artifacts) * data.num_batches(batch_size)
    done = 0
    for label, art in artifacts.items():
        steps = compare.evaluate(model, art, data, batch_size)
        try:
            while True:
                step = next(steps)
                yield Progress("runtimes", done + step.done, total, f"evaluating {label}")
        except StopIteration as stop:
            results[label] = stop.value
        except Exception as exc:
            failed.append(f"{label}: skipped, it failed on the evaluation data with {first_line(exc)}")
        done += data.num_batches(batch_size)
    return results, failed


def figure(
    name: str,
    precision: str,
    label: str,
    latency: list[LatencyStat],
    size_mb: float | None,
    ev: compare.Evaluation | None,
    **extra: Any,
) -> RuntimeFigure:
    if ev is None:  # FP32 eager: the reference itself
        return RuntimeFigure(name, precision, label, latency, size_mb, None, 1.0, 1.0, **extra)
    return RuntimeFigure(
        name, precision, label, latency, size_mb, ev.int8_accuracy, ev.agreement, ev.cosine, samples=ev.samples, **extra
    )


def fp32_best(figures: list[RuntimeFigure]) -> RuntimeFigure | None:
    """The fastest true-FP32 row: what a stakeholder's speedup is measured against."""
    fp32 = [f for f in figures if f.precision == "fp32" and f.latency_ms]
    return min(fp32, key=lambda f: f.latency_ms or 0.0) if fp32 else None


def fastest(figures: list[RuntimeFigure], precision: str) -> RuntimeFigure | None:
    rows = [f for f in figures if f.precision == precision and f.latency_ms]
    return min(rows, key=lambda f: f.latency_ms or 0.0) if rows else None


def choose_target(
    figures: list[RuntimeFigure], target: str, max_drop: float | None
) -> tuple[RuntimeFigure | None, str]:
    """The INT8 row the export targets, and a sentence saying why (for ``auto``) or why none is.

    ``auto``: the fastest INT8 row whose quality is at most ``max_drop``
    points (default :data:`DEFAULT_MAX_DROP`) below torch.ao's INT8
    TorchScript row; that row itself is always eligible.

    The evaluation data has a resolution: with n samples, one sample is
    100/n points, and two models that each disagree with FP32 on k1 and k2
    samples differ by chance by about sqrt(k1 + k2) samples.  For the default
    budget only, a row whose extra loss is within that noise is eligible too
    if its outputs stay as close to FP32 as torch.ao's (its ``1 - cosine`` at
    most 1.1 times torch.ao's): on 64 random samples of a random resnet50,
    top-1 agreement moves by several samples between equally faithful
    models.  The sentence says when a row got in that way.  A budget the user
    gave is kept exactly, and the sentence says when the data cannot resolve it.
    """
    int8 = [f for f in figures if f.precision == "int8" and f.latency_ms]
    if target != "auto":
        row = next((f for f in int8 if f.name == target), None)
        return row, "" if row else f"no INT8 {target} model was built in this run"
    base = next((f for f in int8 if f.name == "torchscript"), None)
    drop = DEFAULT_MAX_DROP if max_drop is None else max_drop
    if base is None or base.quality is None:
        return None, "auto needs torch.ao's INT8 result to compare with"
    n = base.samples or 0
    step = 100.0 / n if n else 0.0  # one sample, in points

    def extra_samples(f: RuntimeFigure) -> float:
        return (base.quality - f.quality) * n if f.quality is not None else math.inf

    def noise(f: RuntimeFigure) -> float:
        """About one standard deviation of the difference in lost samples, by chance."""
        k1, k2 = (1.0 - base.quality) * n, (1.0 - (f.quality or 0.0)) * n
        return max(1.0, math.sqrt(max(k1 + k2, 0.0)))

    def faithful(f: RuntimeFigure) -> bool:
        if f.cosine is None or base.cosine is None:
            return False
        return (1.0 - f.cosine) <= 1.1 * (1.0 - base.cosine) + 1e-6

    by_noise: list[RuntimeFigure] = []
    eligible = []
    for f in int8:
        if f is base or (f.quality is not None and (base.quality - f.quality) * 100 <= drop + 1e-9):
            eligible.append(f)
        elif max_drop is None and n and extra_samples(f) <= noise(f) + 1e-9 and faithful(f):
            eligible.append(f)
            by_noise.append(f)
    best = min(eligible, key=lambda f: f.latency_ms or 0.0)
    metric = "accuracy" if base.accuracy is not None else "agreement"
    slower = [f.label for f in int8 if f not in eligible]
    why = f"auto chose {best.label}: the fastest INT8 model within {drop:g} points of torch.ao's {metric}"
    if best in by_noise:
        why += (
            f" by the data's resolution: it lost {extra_samples(best):.0f} of {n} samples more than torch.ao, "
            f"within the chance difference (about {noise(best):.0f}), and its outputs are as close to FP32 "
            f"(cosine {best.cosine:.4f} vs {base.cosine:.4f})"
        )
    elif step > drop:
        why += f"; with {n} evaluation samples one sample is {step:.2f} points, more than the budget"
    if slower:
        why += f" ({', '.join(slower)} lost more)"
    return best, why


def export_artifact(art: Any, path: str | Path, example: Any, check_inputs: list[Any], atol: float) -> Any:
    """Save a runtime's artifact at ``path`` (its suffix added when missing), reload it in that runtime, verify it.

    The reloaded file must reproduce the in-memory artifact on the example and
    on the check inputs (another batch) within ``atol`` (scaled by the
    output's magnitude); otherwise the file is removed and an ExportError says so.
    """
    from qstudio.core.errors import ExportError
    from qstudio.core.export import ExportInfo
    from qstudio.core.fileio import check_target
    from qstudio.core.torchscript import output_max_abs_diff

    runtime = get_runtime(art.runtime)
    path = Path(path)
    if path.suffix.lower() != runtime.suffix:
        path = path.with_name(path.name + runtime.suffix)
    check_target(path, f"{runtime.title} file")
    try:
        files = art.save(path)
    except RuntimeUnavailable as exc:
        raise ExportError(f"the {art.label} model cannot be saved ({exc})", "export another target") from exc
    try:
        loaded = runtime.load(files, art.precision)
        diff, scale = 0.0, 1.0
        for x in [example, *check_inputs]:
            expected, actual = art(x), loaded(x)
            diff = max(diff, output_max_abs_diff(expected, actual))
            scale = max([scale] + [float(t.abs().max()) for t in compare.output_tensors(expected) if t.numel()])
    except Exception as exc:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise ExportError(
            f"the {art.label} file written at {path} could not be loaded back and run ({first_line(exc)})",
            "export another target (--target torchscript is the default), and report this with the model",
        ) from exc
    if not diff <= atol * scale:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise ExportError(
            f"the {art.label} file reloaded from {path} differs from the measured model by {diff:.3g} (more than {atol:g} x {scale:.3g}, the outputs' size)",
            "raise --export-tolerance if that is acceptable, or export another target",
        )
    size = sum(Path(f).stat().st_size for f in files) / 1e6
    return ExportInfo(
        str(path),
        "saved",
        size,
        diff,
        True,
        runtime=art.runtime,
        precision=art.precision,
        files=[str(f) for f in files],
    )
