"""The run's plan: the stages :func:`qstudio.core.pipeline.run_recipe` goes through, each with its expected work.

One progress bar covers the whole run: the plan is the run's first step, and
:class:`~qstudio.core.progress.RunProgress` moves the bar by each stage's
share of the work, counted in batch-1 forward calls.
"""

from __future__ import annotations

import inspect
from typing import Any

from qstudio.core import compare, deploy
from qstudio.core.flows import mode_traits
from qstudio.core.progress import PLAN, Progress
from qstudio.core.recipe import Recipe
from qstudio.core.run_data import RunData


# -- the run's plan: one progress bar for the whole run -----------------------------------------
def _calls(batches: int, batch_size: int) -> float:
    """The expected time of ``batches`` forward calls, in batch-1 calls.

    A call costs a fixed overhead plus a share per sample: on the demo a batch
    of 32 takes about nine batch-1 calls, a batch of 16 about five.
    """
    return batches * (3 + batch_size) / 4


def _default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def run_plan(recipe: Recipe, data: RunData, export: bool = False) -> tuple[tuple[str, float], ...]:
    """The stages :func:`run_recipe` will go through, in order, each with its expected work.

    The work is counted in batch-1 forward calls (see :func:`_calls`): a
    stage's share of the whole run is what :class:`~qstudio.core.progress.RunProgress`
    moves the bar by.  Calibration and the per-layer comparison also pay for
    their observers and hooks, training for its backward pass and optimizer;
    preparing includes the fusion check and the trace.
    """
    s, q = recipe.settings, recipe.qat
    calib_bs = min(s.batch_size, max(len(data.calib), 1))
    eval_bs = compare.eval_batch_size(s.batch_size)
    evaluate = ("evaluate", 2 * _calls(data.eval.num_batches(eval_bs), eval_bs))
    layers = (
        "compare layers",
        3 * _calls(data.calib.num_batches(s.batch_size, _default(compare.layer_errors, "max_batches")), calib_bs),
    )

    def work(stage: str) -> float:
        """One quantization stage's work (the stages are the mode's: its traits list them)."""
        if stage == "train":
            steps = data.train.num_batches(q.batch_size) * q.epochs if data.train is not None else 0
            check = q.epochs * _calls(data.eval.num_batches(64), 64) if data.eval.labels is not None else 0.0
            return 6 * _calls(steps, q.batch_size) + check
        if stage == "calibrate":
            return 3 * _calls(data.calib.num_batches(s.batch_size, s.calib_batches), calib_bs)
        return {"prepare": 40.0}.get(stage, 10.0)  # convert, dynamic's quantize, a registered flow's own stage

    def quantize() -> list[tuple[str, float]]:
        return [(stage, work(stage)) for stage in mode_traits(recipe.mode).stages]

    plan = quantize()
    if s.skip_worst:
        plan += [layers, evaluate, *quantize(), evaluate]
    b = recipe.benchmark
    plan += [
        evaluate,
        layers,
        ("script", 40.0),
        (
            "runtimes",
            150.0 * len(deploy.runtimes_to_measure(recipe)) + 2 * _calls(data.eval.num_batches(eval_bs), eval_bs),
        ),
        ("benchmark", sum(3 * (b.warmup + b.iters) * _calls(1, n) for n in b.batch_sizes)),
    ]
    if export:
        plan.append(("export", 30.0))
    return tuple(plan)


def announce_plan(recipe: Recipe, data: RunData, export: bool = False) -> Progress:
    """The run's first step: its plan, and a note when the data holds fewer calibration batches than asked for."""
    s = recipe.settings
    batches = data.calib.num_batches(s.batch_size, s.calib_batches)
    metrics = {"calibration_batches": float(batches), "calibration_samples": float(len(data.calib))}
    note = ""
    if mode_traits(recipe.mode).calibrates and batches < s.calib_batches:
        note = (
            f"calibration uses {batches} batches, not the {s.calib_batches} set: the calibration data has "
            f"{len(data.calib)} samples, {s.batch_size} per batch"
        )
    return Progress(PLAN, 0, 0, note, metrics, plan=run_plan(recipe, data, export))
