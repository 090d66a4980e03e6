"""The headless commands (``inspect``, ``quantize``, ``run``) and launching the window.

Each command takes the parsed options and returns the exit status; problems
the user can fix are raised as :class:`~qstudio.core.errors.QStudioError` and
turned into one line by :func:`qstudio.cli.main.main`.  torch, the engine's
heavy modules and the window are imported inside the commands, so ``--help``
and bad options answer at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qstudio.core.errors import QStudioError
from qstudio.core.recipe import ModelSource, Recipe
from qstudio.options import UsageError, apply_deploy_args, recipe_from_args


def cmd_inspect(args: argparse.Namespace) -> int:
    from qstudio.core.fusion import Suggestion
    from qstudio.core.session import Session
    from qstudio.core.trust import granted_by_user

    source = ModelSource(spec=args.model, factory=args.factory)
    # the window's loading path without its state: model, example input, fusion suggestion, tree
    session = Session(Recipe(model=source, mode=args.mode, input_shape=args.input_shape, input_dtype=args.input_dtype))
    prepared = session.prepare_load(source, grants=granted_by_user(source, trust_model_file=args.trust))
    loaded, root = prepared.loaded, prepared.tree
    shape = args.input_shape or loaded.input_shape
    suggestion = Suggestion(prepared.groups, prepared.method or "none", prepared.notes)  # "none": TorchScript
    if args.json:
        doc = {
            "model": loaded.name,
            "kind": loaded.kind,
            "input_shape": shape,
            "fusion_groups": suggestion.groups,
            "fusion_method": suggestion.method,
            "warnings": loaded.warnings + suggestion.notes,
            "tree": root.to_dict(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    from qstudio.console import print_tree

    print_tree(loaded, root, suggestion, shape)
    return 0


def check_output_folders(*paths: str | None) -> None:
    """Fail on an output whose folder does not exist before minutes of work, not after."""
    for out in paths:
        if out and not Path(out).resolve().parent.is_dir():
            raise UsageError(f"the folder of {out} does not exist", "create it first or choose another path")


def write_outputs(result, args: argparse.Namespace) -> None:
    """The ``--json`` and ``--report`` files of a finished run."""
    from qstudio.core.fileio import atomic_write_bytes

    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result.to_json(), indent=2).encode("utf-8"), "JSON result")
    if args.report:
        from qstudio.core.report import write_report

        write_report(result, args.report)


def run_recipe_command(recipe: Recipe, args: argparse.Namespace, trust: bool = False) -> int:
    """One run of ``recipe`` with a progress bar, the outputs the options ask for, and the result tables.

    ``trust`` (``--trust``): grant the model file as it reads now (see :func:`qstudio.core.trust.granted_by_user`).
    """
    from qstudio.console import ProgressPrinter, print_result
    from qstudio.core.loading import load_model
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.progress import run
    from qstudio.core.trust import granted_by_user

    apply_deploy_args(recipe, args)
    loaded = load_model(recipe.model, grants=granted_by_user(recipe, trust_model_file=trust))
    recipe.model = loaded.source  # carries the file hash when trust was given
    if getattr(args, "save_recipe", None):
        recipe.save(args.save_recipe)
    check_output_folders(args.export, args.report, args.json)
    with ProgressPrinter() as printer:
        work = run_recipe(
            recipe, loaded, export=args.export, export_tolerance=args.export_tolerance, export_method=args.export_method
        )
        result = run(work, printer.update)
    write_outputs(result, args)
    print_result(result, args)
    if result.export_error:
        raise export_failure(result.export_error, args)
    return 0


def export_failure(error: str, args: argparse.Namespace) -> QStudioError:
    """The one line for an export that failed at the end of a kept run: what failed, what was written, the fix."""
    problem, _, fix = error.rstrip(".").partition(". Fix: ")
    written = [f"{label} {path}" for label, path in (("JSON", args.json), ("report", args.report)) if path]
    kept = f"; the run's figures were kept{' (' + ', '.join(written) + ')' if written else ''}"
    other = {"auto": "script", "trace": "script", "script": "trace"}[args.export_method]
    if "differ" in problem:  # verification: the file computes something else
        fix = (
            f"if a difference of that size is acceptable, re-run with --export-tolerance above it "
            f"(now {args.export_tolerance:g}); if not, check the model has no randomness or data-dependent control "
            f"flow in eval mode, or re-run with --export-method {other}"
        )
    elif not fix or any(w in f"{problem} {fix}" for w in ("conver", "trac", "script", "loaded back")):
        # conversion or reload: the other way may work
        fix = "; ".join(part for part in (fix, f"re-run with --export-method {other}") if part)
    return QStudioError(f"the INT8 model was not exported to {args.export}: {problem}{kept}", fix)


def cmd_quantize(args: argparse.Namespace) -> int:
    model = ModelSource(spec=args.model, factory=args.factory)
    recipe = recipe_from_args(args, model)
    return run_recipe_command(recipe, args, trust=args.trust)


def cmd_run(args: argparse.Namespace) -> int:
    recipe = Recipe.load(args.recipe)
    return run_recipe_command(recipe, args)


def cmd_search(args: argparse.Namespace) -> int:
    """``qstudio search``: the fastest configuration within ``--max-drop`` points of FP32, exported like ``quantize``.

    Ctrl-C (once) or SIGTERM stops the search and keeps the best configuration
    found so far, with every output written; a second one leaves at once.  Exit 0
    when a configuration met the budget, 1 when none did (the closest is
    reported), 2 on bad input.
    """
    import signal

    from qstudio.console import SearchPrinter, print_search
    from qstudio.core.loading import load_model
    from qstudio.core.pipeline import export_result
    from qstudio.core.progress import CancelToken, run
    from qstudio.core.search import SearchSettings, search
    from qstudio.core.trust import granted_by_user
    from qstudio.options import data_source

    model = ModelSource(spec=args.model, factory=args.factory)
    mode_given = args.mode is not None
    if not mode_given:
        args.mode = "fx"
    recipe = recipe_from_args(args, model)
    holdout = data_source(args.holdout_data, args.holdout_labels, "eval", args)
    settings = SearchSettings(
        max_drop=args.max_drop,
        metric=args.metric,
        time_budget=args.time_budget,
        trials=args.trials,
        seed=args.seed,
        runtimes=args.runtimes,
        workers=args.workers,
        storage=args.storage,
        study_name=args.study_name,
    )
    check_output_folders(args.export, args.report, args.json, args.save_recipe)
    loaded = load_model(recipe.model, grants=granted_by_user(recipe, trust_model_file=args.trust))
    recipe.model = loaded.source
    if not mode_given and loaded.input_dtype == "int64":
        recipe.mode = "dynamic"  # token ids: static quantization needs float inputs

    cancel = CancelToken()

    def on_sigint(_sig: int, _frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    # SIGTERM (a CI job's timeout, `kill`) as Ctrl-C: stop with the best so far and write every output, not lose it all
    previous = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SearchPrinter(settings) as printer:
            result = run(
                search(recipe, loaded, settings, cancel=cancel, holdout=holdout, on_trial=printer.trial_done),
                printer.update,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    final = result.final
    if args.export and final is not None:
        try:
            export_result(final, args.export, atol=args.export_tolerance)
        except QStudioError as exc:
            final.export_error = str(exc)
    if args.save_recipe and final is not None:
        final.recipe.save(args.save_recipe)
    if args.json:
        from qstudio.core.fileio import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(result.to_json(), indent=2).encode("utf-8"), "JSON result")
    if args.report:
        from qstudio.core.report import write_search_report

        write_search_report(result, args.report)
    print_search(result, args)
    if final is not None and final.export_error:
        raise QStudioError(
            f"the winner was not exported to {args.export}: {final.export_error}; the search's figures were kept",
            "export another target, or replay the saved recipe with qstudio run --export",
        )
    return 0 if result.best is not None else 1


def cmd_window(argv: list[str]) -> int:
    """``qstudio [MODEL] [options]``: the window (the only place the CLI imports qstudio.ui, and only here)."""
    from qstudio.ui.platform_check import ensure_window_can_open, import_problem

    if not {"-h", "--help"} & set(argv):
        # before Qt is loaded: a missing screen or system library is one message and exit 2, not Qt's abort
        ensure_window_can_open()
    try:
        from qstudio.ui.app import main as window_main
    except ImportError as exc:
        problem = import_problem(exc)
        if problem is None:
            raise  # not a missing package or library: an internal error
        raise problem from None
    return int(window_main(argv) or 0)
