"""One quantization run, from a loaded model and a recipe to a :class:`RunResult`.

This is the sequence the seed tutorials write by hand (fuse, check fusion,
prepare, calibrate or train, convert, compare, benchmark, export), as one
generator that yields progress between batches.  The CLI and the window both
drive it; nothing here knows which.

The run's data is read and checked by :mod:`qstudio.core.run_data`, its
figures are kept in a :class:`~qstudio.core.run_result.RunResult`
(:mod:`qstudio.core.run_result`); both are importable from here too.  The
run's plan, one progress bar for the whole run, is at the end of this module.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from qstudio.core import benchmark as bench
from qstudio.core import compare, deploy, fusion, torchscript, verdicts
from qstudio.core.child_benchmark import benchmark_in_child
from qstudio.core.environment import check_backend, environment_info
from qstudio.core.errors import Cancelled, ExportError, FlowError, QStudioError
from qstudio.core.export import DEFAULT_ATOL, ExportInfo, export_torchscript
from qstudio.core.flows import FlowInput, QuantizedModel, get_flow, mode_traits, quantized_engine
from qstudio.core.flows.base import forward_error
from qstudio.core.loading import LoadedModel
from qstudio.core.progress import Progress
from qstudio.core.recipe import Recipe
from qstudio.core.run_data import RunData, check_data_fits, input_dtype_for, input_shape_for, load_run_data, vocab_size
from qstudio.core.run_plan import announce_plan, run_plan
from qstudio.core.run_result import Measurement, RunResult, SkipWorstOutcome
from qstudio.core.runtimes import BuildInput

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_groups(recipe: Recipe, model: nn.Module) -> tuple[list[list[str]], list[str]]:
    """The fusion groups to apply (the recipe's, else suggested) and notes about them."""
    traits = mode_traits(recipe.mode)
    if not traits.fuses:
        return [], []
    skip = set(recipe.settings.skip)
    if recipe.fusion is not None:
        fusion.check_groups(model, recipe.fusion, skip)
        return [list(g) for g in recipe.fusion], []
    suggestion = fusion.suggest_groups(model, skip)
    groups = suggestion.groups
    if traits.prunes_skipped_groups:
        groups = [g for g in groups if not skip.intersection(g)]
    return groups, suggestion.notes


def _quantize(
    model: nn.Module, recipe: Recipe, groups: list[list[str]], data: RunData
) -> Generator[Progress, None, QuantizedModel]:
    flow = get_flow(recipe)
    inp = FlowInput(model, recipe, groups, data.calib, data.calib.sample(1), data.train, data.eval)
    flow.preflight(inp)
    return (yield from flow.run(inp))


def _guarded(
    steps: Generator[Progress, None, T], model: nn.Module, stage: str, batch_size: int, key: str
) -> Generator[Progress, None, T]:
    """Run a post-calibration stage (evaluate, compare, benchmark): a model fault becomes a clear error.

    Calibration and training convert their own faults; the stages after them
    run the same model on other data or batch sizes and can fail too (a shape
    the model only rejects at batch 8, memory at the benchmark batch size).
    """
    try:
        return (yield from steps)
    except (Cancelled, QStudioError):
        raise
    except Exception as exc:
        raise forward_error(exc, model, stage, 0, 0, batch_size, key) from exc


def run_recipe(
    recipe: Recipe,
    loaded: LoadedModel,
    *,
    export: str | Path | None = None,
    export_tolerance: float = DEFAULT_ATOL,
    export_method: str = "auto",
    gate: Callable[[compare.Evaluation], None] | None = None,
) -> Generator[Progress, None, RunResult]:
    """Quantize ``loaded`` as ``recipe`` says, measure it against FP32, optionally export.

    ``gate`` sees the export target's evaluation before the benchmark, the
    run's longest stage, and may raise to end the run there (a search drops a
    configuration that lost too much accuracy without timing it).

    A failed export does not lose the run: the error is kept on the result
    (``export_error``, and a loud verdict) for the caller to report.  torch's
    quantized engine is the recipe's backend for the whole run (converting,
    copying and saving a quantized model repack its weights with the current
    engine) and is put back after it.
    """
    check_backend(recipe.settings.backend)
    with quantized_engine(recipe.settings.backend):
        return (
            yield from _run_recipe(
                recipe,
                loaded,
                export=export,
                export_tolerance=export_tolerance,
                export_method=export_method,
                gate=gate,
            )
        )


def _run_recipe(
    recipe: Recipe,
    loaded: LoadedModel,
    *,
    export: str | Path | None,
    export_tolerance: float,
    export_method: str,
    gate: Callable[[compare.Evaluation], None] | None = None,
) -> Generator[Progress, None, RunResult]:
    started = time.perf_counter()
    if loaded.scripted:
        raise FlowError(
            f"{loaded.name} is a TorchScript file: it can be inspected and benchmarked, not re-quantized",
            "load the float model (a state_dict with its factory, or a factory) to quantize it",
        )
    check_backend(recipe.settings.backend)
    model = loaded.module.eval()
    warnings = list(loaded.warnings)
    data = load_run_data(recipe, loaded)
    check_data_fits(model, data)
    random_data = data.calib.is_random or data.eval.is_random or bool(data.train and data.train.is_random)
    if random_data:
        warnings.append(verdicts.RANDOM_DATA_TEXT)
    if data.eval_is_calib:
        warnings.append(verdicts.NO_EVAL_DATA_TEXT)
    example = data.calib.sample(1)
    yield announce_plan(recipe, data, export is not None)  # first step: the whole run's stages, for one progress bar

    groups, notes = resolve_groups(recipe, model)
    warnings += notes
    fusion_check = None
    if groups:
        fused = fusion.fused_copy(model, groups)
        fusion_check = fusion.check_equivalence(model, fused, example)
        del fused
        if not fusion_check.ok:
            warnings.append(f"Fusion changed the model's outputs ({fusion_check.describe()}); check the groups.")

    q = yield from _quantize(model, recipe, groups, data)
    warnings += q.notes
    skip_outcome = None
    final_recipe = recipe
    bs = recipe.settings.batch_size
    eval_bs = compare.eval_batch_size(bs)
    if recipe.settings.skip_worst:
        errors = yield from _guarded(
            compare.layer_errors(q, data.calib, bs), q.module, "per-layer comparison", bs, "settings.batch_size"
        )
        worst = [n for n in compare.worst_layers(errors, recipe.settings.skip_worst) if n not in recipe.settings.skip]
        before = yield from _guarded(
            compare.evaluate(model, q.module, data.eval, eval_bs),
            q.module,
            "evaluation",
            eval_bs,
            "settings.batch_size",
        )
        final_recipe = copy.deepcopy(recipe)
        final_recipe.settings.skip = [*recipe.settings.skip, *worst]
        final_recipe.settings.skip_worst = 0
        groups, _ = resolve_groups(final_recipe, model)
        q = yield from _quantize(model, final_recipe, groups, data)
        warnings += [n for n in q.notes if n not in warnings]
        after = yield from _guarded(
            compare.evaluate(model, q.module, data.eval, eval_bs),
            q.module,
            "evaluation",
            eval_bs,
            "settings.batch_size",
        )
        skip_outcome = SkipWorstOutcome(worst, before, after)

    evaluation = yield from _guarded(
        compare.evaluate(model, q.module, data.eval, eval_bs), q.module, "evaluation", eval_bs, "settings.batch_size"
    )
    layers = yield from _guarded(
        compare.layer_errors(q, data.calib, bs), q.module, "per-layer comparison", bs, "settings.batch_size"
    )
    cov = compare.coverage(model, q, final_recipe.settings.skip)
    warnings += cov.warnings

    def make_input(b: int) -> torch.Tensor:
        return data.calib.sample(b)

    yield Progress("script", 0, 2, "freezing FP32 and INT8 TorchScript for the benchmark")
    fp32_script = None
    try:
        fp32_script = torchscript.freeze_fp32(model, example)
    except Exception as exc:  # some models cannot be traced; the eager baseline still stands
        warnings.append(
            f"FP32 TorchScript baseline unavailable ({type(exc).__name__}); comparing with FP32 eager only."
        )
    yield Progress("script", 1, 2)
    int8_script, _method = torchscript.to_torchscript(q.module, example)
    yield Progress("script", 2, 2)

    # the other runtimes, built from the same model, calibration samples and float layers, then evaluated
    artifacts: dict[str, Any] = {}
    runtime_notes: list[str] = []
    build_seconds: dict[str, float] = {}
    runtime_evals: dict[str, compare.Evaluation] = {}
    names = deploy.runtimes_to_measure(recipe)
    if names or fp32_script is not None:
        if names:
            s = final_recipe.settings
            threads = recipe.benchmark.threads or torch.get_num_threads()
            inp = BuildInput(
                model, example, data.calib, s.calib_batches, s.batch_size, list(s.skip), groups, q.module, threads
            )
            artifacts, runtime_notes, build_seconds = yield from deploy.build_artifacts(names, inp)
        checked = {**({deploy.SCRIPT_FP32: fp32_script} if fp32_script is not None else {}), **artifacts}
        runtime_evals, failed = yield from deploy.evaluate_artifacts(model, checked, data.eval, eval_bs)
        runtime_notes += failed
        artifacts = {k: v for k, v in artifacts.items() if k in runtime_evals}

    if gate is not None:
        target_eval = evaluation
        if recipe.deploy.target not in ("torchscript", "auto"):
            label = next(
                (k for k, a in artifacts.items() if a.runtime == recipe.deploy.target and a.precision == "int8"), None
            )
            target_eval = runtime_evals.get(label, evaluation) if label else evaluation
        gate(target_eval)

    # Interleaved, so a change in machine load during the benchmark moves all of them alike.
    contenders = {deploy.EAGER_FP32: model, deploy.SCRIPT_INT8: int8_script}
    if fp32_script is not None and deploy.SCRIPT_FP32 in runtime_evals:
        contenders[deploy.SCRIPT_FP32] = fp32_script
    contenders.update(artifacts)
    latencies, timing = yield from _guarded(
        # in a fresh child process, as a deployment runs them; in this one (with a note) when they cannot be rebuilt
        benchmark_in_child(
            contenders,
            make_input,
            recipe.benchmark,
            source=loaded.source,
            example=example,
            backend=q.backend,
            notes=warnings,
        ),
        model,
        "benchmark",
        max(recipe.benchmark.batch_sizes),
        "benchmark.batch_sizes",
    )
    fp32_lat, int8_lat = latencies[deploy.EAGER_FP32], latencies[deploy.SCRIPT_INT8]
    deploy_lat = latencies.get(deploy.SCRIPT_FP32, [])
    fp32_size, int8_size = bench.model_size_mb(model), bench.model_size_mb(int8_script)
    figures = [deploy.figure("eager", "fp32", deploy.EAGER_FP32, fp32_lat, fp32_size, None)]
    figures[0].accuracy = evaluation.fp32_accuracy
    if deploy_lat:
        ev = runtime_evals[deploy.SCRIPT_FP32]
        figures.append(deploy.figure("torchscript", "fp32", "frozen TorchScript FP32", deploy_lat, fp32_size, ev))
    figures.append(deploy.figure("torchscript", "int8", "TorchScript INT8 (torch.ao)", int8_lat, int8_size, evaluation))
    for label, art in artifacts.items():
        figures.append(
            deploy.figure(
                art.runtime,
                art.precision,
                label,
                latencies[label],
                art.size_mb,
                runtime_evals[label],
                build_seconds=build_seconds.get(label, 0.0),
                notes=list(art.notes),
            )
        )
    target, target_note = deploy.choose_target(figures, recipe.deploy.target, recipe.deploy.max_drop)

    result = RunResult(
        recipe=recipe,
        model_name=loaded.name,
        fp32=Measurement(evaluation.fp32_accuracy, fp32_size, fp32_lat),
        fp32_deploy=deploy_lat,
        int8=Measurement(evaluation.int8_accuracy, int8_size, int8_lat),
        evaluation=evaluation,
        layers=layers,
        coverage=cov,
        fusion_check=fusion_check,
        groups=groups,
        skipped=final_recipe.settings.skip,
        skip_worst=skip_outcome,
        history=q.history,
        calibration_seconds=q.calibration_seconds,
        total_seconds=time.perf_counter() - started,
        random_data=random_data,
        warnings=warnings,
        environment=environment_info(),
        quantized=q,
        example=example,
        check_input=data.eval.sample(4),
        timing=timing,
        runtimes=figures,
        runtime_notes=runtime_notes,
        target=target,
        target_note=target_note,
        artifacts=artifacts,
    )
    if export is not None:
        yield Progress("export", 0, 1, f"writing {export}")
        try:
            export_result(result, export, atol=export_tolerance, method=export_method)
        except QStudioError as exc:  # the figures stand without the file: keep them, say why it is missing
            result.export_error = str(exc)
        except Exception as exc:  # an unexpected fault in conversion or verification must not lose the run either
            log.info("export failed", exc_info=True)  # the traceback only with --verbose
            line = (str(exc).strip().splitlines() or [""])[0]
            result.export_error = f"the export failed with {type(exc).__name__}{': ' + line if line else ''}."
        yield Progress("export", 1, 1)
    verdicts.apply(result, int8_script, make_input, model)
    return result


def export_result(
    result: RunResult,
    path: str | Path,
    *,
    atol: float = DEFAULT_ATOL,
    method: str = "auto",
    target: str | None = None,
) -> ExportInfo:
    """Export a finished run's INT8 model, verified by reloading it in the runtime that will run it.

    ``target`` is a runtime name (``onnx``, ``openvino``, ...) measured in
    this run, else the run's own target (``deploy.target``, ``auto``
    resolved); TorchScript is torch.ao's model, the default.  The file must
    reproduce a second batch of other samples too, not only the example: a
    trace that baked in the example's shapes cannot pass.
    """
    if result.quantized is None or result.example is None:
        raise FlowError("this run has no quantized model in memory", "run the quantization again, then export")
    checks = [result.check_input] if result.check_input is not None else []
    row = (
        result.deployed
        if target is None
        else next((f for f in result.runtimes if f.name == target and f.precision == "int8"), None)
    )
    if target is not None and target != "torchscript" and row is None:
        measured = sorted({f.name for f in result.runtimes if f.precision == "int8"})
        raise ExportError(
            f"no INT8 {target} model was measured in this run",
            f"export one of: {', '.join(measured)}; or run again with --target {target}",
        )
    if row is None and result.recipe.deploy.target not in ("torchscript", "auto"):
        raise ExportError(
            f"the {result.recipe.deploy.target} target could not be built in this run ({result.target_note})",
            "see the skipped runtimes in the run's notes; export with --target torchscript instead",
        )
    if row is not None and row.name != "torchscript":
        with result.quantized.engine():
            info = deploy.export_artifact(result.artifacts[row.label], path, result.example, checks, atol)
        result.export = info
        return info
    if Path(path).suffix == "":
        path = Path(path).with_suffix(".pt")  # like the other runtimes' files: the suffix is added when missing
    with result.quantized.engine():  # the file is packed and verified with the kernels the run measured
        info = export_torchscript(
            result.quantized.module, path, result.example, atol=atol, check_inputs=checks, method=method
        )
    result.export = info
    return info


__all__ = [  # the run's data (qstudio.core.run_data) and record (qstudio.core.run_result) too: they were defined here
    "Measurement",
    "RunData",
    "RunResult",
    "SkipWorstOutcome",
    "announce_plan",
    "check_data_fits",
    "export_result",
    "input_dtype_for",
    "input_shape_for",
    "load_run_data",
    "resolve_groups",
    "run_plan",
    "run_recipe",
    "vocab_size",
]
