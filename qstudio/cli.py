"""The ``qstudio`` command: the window, or the same engine headless.

    qstudio                          open the window on the demo
    qstudio inspect MODEL ...        module tree, shapes, fusion groups
    qstudio quantize MODEL ...       one run from command-line options
    qstudio run RECIPE.toml ...      replay a recipe saved from the window or the CLI

Exit status, always with one line on stderr and never a traceback unless
``--verbose`` is given:

    0    success
    2    bad input: the line names the problem and the fix (also: no screen
         for the window, or system libraries Qt needs, with the apt-get line)
    3    internal error: an exception qstudio did not turn into a message (a
         bug in qstudio, or the model's own code raising, or calling sys.exit,
         where qstudio did not expect it); the line names the exception, where
         it was raised, and how to report it
    130  cancelled (Ctrl+C)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qstudio.core.errors import Cancelled, QStudioError
from qstudio.core.recipe import (
    BACKENDS,
    DYNAMIC_DTYPES,
    MODES,
    OBSERVERS,
    BenchmarkSettings,
    DataSource,
    ModelSource,
    QATSettings,
    QuantSettings,
    Recipe,
)

SUBCOMMANDS = ("inspect", "quantize", "run")
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_CANCELLED = 130


class UsageError(QStudioError):
    """A command-line option is wrong."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad input leaves the same way."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, f"see `{self.prog} --help`")


# -- option parsing -------------------------------------------------------------
def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write it like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write positive sizes like 1,3,224,224")
    return dims


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers; write it like 0.485,0.456,0.406") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers; write it like 1,8") from None


def _model_args(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    help_text = "demo, torchvision:NAME, a weights/TorchScript/pickle file, or FILE.py:FUNC"
    if optional:
        p.add_argument("model", metavar="MODEL", nargs="?", default="demo", help=help_text + " (default: demo)")
    else:
        p.add_argument("model", metavar="MODEL", help=help_text)
    p.add_argument("--factory", metavar="FILE.py:FUNC", help="function that builds the module a state_dict is loaded into")
    p.add_argument("--trust", action="store_true", help="allow loading this pickle/TorchScript file, which can run code")
    p.add_argument("--input-shape", type=_shape, metavar="1,3,224,224", help="model input shape, batch first")
    p.add_argument("--input-dtype", choices=("float32", "int64"), help="int64 for token-id models (default: float32)")


def _quantize_args(p: argparse.ArgumentParser, *, required_mode: bool) -> None:
    g = p.add_argument_group("quantization")
    g.add_argument("--mode", choices=MODES, required=required_mode, help="eager/fx static PTQ, qat, or dynamic")
    g.add_argument("--backend", choices=BACKENDS, help="quantized kernel backend (default x86)")
    g.add_argument("--observer", choices=OBSERVERS, help="activation observer (default histogram)")
    g.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None, help="per-channel weights (default on)")
    g.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None, help="symmetric activations (default affine)")
    g.add_argument("--dynamic-dtype", choices=DYNAMIC_DTYPES, help="dynamic mode weight type (default qint8)")
    g.add_argument("--skip", nargs="+", default=[], metavar="MODULE", help="modules to keep in float")
    g.add_argument("--skip-worst", type=int, metavar="K", help="re-quantize with the K worst layers (by SQNR) kept in float")
    g.add_argument("--fusion", action="append", metavar="A,B[,C]", help="a fusion group (repeat); default: suggested groups")
    d = p.add_argument_group("data")
    d.add_argument("--calib-data", metavar="PATH|demo|random", help="image folder, .npy/.pt tensor file, demo or random")
    d.add_argument("--calib-batches", type=int, help="number of calibration batches (default 16)")
    d.add_argument("--batch-size", type=int, help="calibration batch size (default 16)")
    d.add_argument("--train-data", metavar="PATH|demo", help="QAT training inputs")
    d.add_argument("--train-labels", metavar="PATH", help="QAT training labels (.npy/.pt)")
    d.add_argument("--epochs", type=int, help="QAT epochs (default 2)")
    d.add_argument("--lr", type=float, help="QAT learning rate (default 0.001)")
    d.add_argument("--qat-graph", choices=("fx", "eager"), help="QAT in FX graph mode (default) or eager mode")
    d.add_argument("--eval-data", metavar="PATH|demo", help="evaluation inputs (default: the calibration data)")
    d.add_argument("--eval-labels", metavar="PATH", help="evaluation labels: top-1 before/after")
    d.add_argument("--resize", type=int, help="image folders: resize the short side to this")
    d.add_argument("--crop", type=int, help="image folders: centre crop to this")
    d.add_argument("--mean", type=_floats, help="image folders: normalisation mean per channel")
    d.add_argument("--std", type=_floats, help="image folders: normalisation std per channel")
    d.add_argument("--grayscale", action="store_true", default=None, help="image folders: load as one channel")
    b = p.add_argument_group("benchmark")
    b.add_argument("--batch-sizes", type=_ints, metavar="1,8", help="benchmark batch sizes (default 1)")
    b.add_argument("--threads", type=int, help="benchmark threads (default: torch's)")
    b.add_argument("--iters", type=int, help="timed iterations per batch size (default 50)")


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tolerance; give a number >= 0 like 1e-3")
    return value


# qstudio.core.benchmark.EXPORT_METHODS and qstudio.core.export.DEFAULT_ATOL, without importing torch to parse options
EXPORT_METHODS = ("auto", "trace", "script")
DEFAULT_EXPORT_TOLERANCE = 1e-4


def _output_args(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("outputs")
    o.add_argument("--export", metavar="OUT.pt", help="write the verified INT8 TorchScript model here")
    o.add_argument(
        "--export-tolerance", type=_tolerance, default=DEFAULT_EXPORT_TOLERANCE, metavar="ATOL",
        help="largest difference between the reloaded export and the model that passes verification "
        f"(default {DEFAULT_EXPORT_TOLERANCE:g})",
    )
    o.add_argument(
        "--export-method", choices=EXPORT_METHODS, default="auto",
        help="how the export becomes TorchScript: trace, script, or auto (trace; script where tracing fails or is unsafe)",
    )
    o.add_argument("--report", metavar="OUT.html", help="write the HTML report here")
    o.add_argument("--json", metavar="OUT.json", help="write the figures as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qstudio", description="Quantization studio for PyTorch models.")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("inspect", help="show the module tree, output shapes and suggested fusion groups")
    _model_args(p)
    p.add_argument("--mode", choices=MODES, default="fx", help="mode used to judge what is quantizable")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("quantize", help="quantize a model, compare with FP32, optionally export")
    _model_args(p)
    _quantize_args(p, required_mode=True)
    _output_args(p)
    p.add_argument("--save-recipe", metavar="OUT.toml", help="save the recipe of this run")
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("run", help="run a saved recipe")
    p.add_argument("recipe", metavar="RECIPE.toml")
    _output_args(p)
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)
    return parser


def data_source(value: str | None, labels: str | None, split: str, args: argparse.Namespace) -> DataSource | None:
    """Turn ``--calib-data``-style values into a DataSource."""
    if value is None:
        if labels:
            raise UsageError(f"labels {labels} were given without their data", "give the matching --*-data option")
        return None
    common: dict[str, Any] = {
        k: getattr(args, k, None) for k in ("resize", "crop", "mean", "std") if getattr(args, k, None) is not None
    }
    if getattr(args, "grayscale", None):
        common["grayscale"] = True
    if value == "demo":
        return DataSource(kind="demo", split=split)
    if value == "random":
        return DataSource(kind="random")
    kind = "folder" if Path(value).is_dir() else "tensor"
    return DataSource(kind=kind, path=value, labels=labels, **common)


def recipe_from_args(args: argparse.Namespace, model: ModelSource) -> Recipe:
    settings = QuantSettings()
    for key in ("backend", "observer", "per_channel", "symmetric", "dynamic_dtype", "calib_batches", "batch_size", "skip_worst"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(settings, key, value)
    settings.skip = list(args.skip or [])
    qat = QATSettings()
    for key, attr in (("epochs", "epochs"), ("lr", "lr"), ("qat_graph", "graph")):
        value = getattr(args, key, None)
        if value is not None:
            setattr(qat, attr, value)
    bench = BenchmarkSettings()
    if args.batch_sizes:
        bench.batch_sizes = args.batch_sizes
    if args.threads is not None:
        bench.threads = args.threads
    if args.iters is not None:
        bench.iters = args.iters
    calib_default = "demo" if model.spec == "demo" else None
    calib = data_source(args.calib_data or calib_default, None, "calib", args)
    if calib is None:
        raise UsageError(
            "no calibration data was given",
            "pass --calib-data PATH (an image folder or a .npy/.pt tensor file), or --calib-data random to try it out",
        )
    fusion = [g.split(",") for g in args.fusion] if args.fusion else None
    # __post_init__ validates every section and names the bad option's key
    recipe = Recipe(
        model=model,
        mode=args.mode,
        input_shape=args.input_shape,
        input_dtype=args.input_dtype,
        fusion=fusion,
        settings=QuantSettings(**settings.__dict__),
        qat=QATSettings(**qat.__dict__),
        calib=calib,
        train=data_source(args.train_data, args.train_labels, "train", args),
        eval=data_source(args.eval_data, args.eval_labels, "eval", args),
        benchmark=BenchmarkSettings(**bench.__dict__),
    )
    return recipe


# -- commands ---------------------------------------------------------------------
def _load(spec: str, factory: str | None, trust: bool, trusted_sha256: str | None = None):
    from qstudio.core.loading import load_model

    return load_model(ModelSource(spec=spec, factory=factory, trusted_sha256=trusted_sha256), trust=trust)


def cmd_inspect(args: argparse.Namespace) -> int:
    import torch

    from qstudio.core import fusion, tree

    loaded = _load(args.model, args.factory, args.trust)
    shape = args.input_shape or loaded.input_shape
    dtype = args.input_dtype or loaded.input_dtype
    example = None
    if shape is not None:
        example = torch.zeros(shape, dtype=torch.int64) if dtype == "int64" else torch.randn(shape)
    suggestion = fusion.suggest_groups(loaded.module) if not loaded.scripted else fusion.Suggestion([], "none")
    root = tree.build_tree(loaded.module, example, args.mode, suggestion.groups)
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


def _write_outputs(result, args: argparse.Namespace) -> None:
    from qstudio.core.fileio import atomic_write_bytes

    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result.to_json(), indent=2).encode("utf-8"), "JSON result")
    if args.report:
        from qstudio.core.report import write_report

        write_report(result, args.report)


def _run(recipe: Recipe, args: argparse.Namespace, trust: bool = False) -> int:
    from qstudio.console import ProgressPrinter, print_result
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.progress import run

    src = recipe.model
    loaded = _load(src.spec, src.factory, trust, src.trusted_sha256)
    recipe.model = loaded.source  # carries the file hash when trust was given
    if getattr(args, "save_recipe", None):
        recipe.save(args.save_recipe)
    # fail on unwritable outputs before minutes of work, not after
    for out in (args.export, args.report, args.json):
        if out and not Path(out).resolve().parent.is_dir():
            raise UsageError(f"the folder of {out} does not exist", "create it first or choose another path")
    with ProgressPrinter() as printer:
        work = run_recipe(
            recipe, loaded, export=args.export, export_tolerance=args.export_tolerance, export_method=args.export_method
        )
        result = run(work, printer.update)
    _write_outputs(result, args)
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
    return _run(recipe, args, trust=args.trust)


def cmd_run(args: argparse.Namespace) -> int:
    recipe = Recipe.load(args.recipe)
    return _run(recipe, args)


def cmd_window(argv: list[str]) -> int:
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


# -- errors ----------------------------------------------------------------------------------
def _one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, whitespace collapsed, cut at ``limit`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_QSTUDIO_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))


def _is_library(filename: str) -> bool:
    """A frame in torch, another installed package or the standard library (not qstudio, not the model)."""
    path = os.path.abspath(filename)
    if path.startswith(_QSTUDIO_DIR + os.sep):
        return False
    return filename.startswith("<") or any(m in path for m in _LIBRARY_MARKERS) or path.startswith(_STDLIB_DIR + os.sep)


def _short_path(filename: str) -> str:
    """``model.py`` under the current folder, ``qstudio/core/x.py``, ``torch/ao/...`` for installed packages."""
    path = os.path.abspath(filename)
    parent = os.path.dirname(_QSTUDIO_DIR)
    if path.startswith(_QSTUDIO_DIR + os.sep):
        return os.path.relpath(path, parent)
    for marker in _LIBRARY_MARKERS:
        if marker in path:
            return path.split(marker, 1)[1]
    if path.startswith(_STDLIB_DIR + os.sep):
        return os.path.relpath(path, _STDLIB_DIR)
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


def _where(exc: BaseException) -> str:
    """``at FILE:LINE`` of the frame that raised, plus the nearest frame of qstudio or the model below a library."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return ""
    last = frames[-1]
    text = f" at {_short_path(last[0])}:{last[1]}"
    if _is_library(last[0]):
        own = next((f for f in reversed(frames) if not _is_library(f[0])), None)
        if own is not None and own != frames[0]:
            text += f", called from {_short_path(own[0])}:{own[1]}"
    return text


def _exception_name(exc: BaseException) -> str:
    """``RuntimeError``, ``torch.fx.proxy.TraceError``; a class from a factory file by its own name."""
    cls = type(exc)
    module = cls.__module__ or ""
    # factory files are imported under a private name (loading.py): it would only confuse
    if module == "builtins" or module.startswith("_qstudio_factory_"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def internal_error_line(exc: BaseException) -> str:
    """One line for an exception that is not a :class:`QStudioError`: what, where, and how to report it."""
    if isinstance(exc, SystemExit):
        what = f"SystemExit({exc.code!r}): sys.exit() was called during the run, which did not finish"
    else:
        message = _one_line(str(exc))
        what = f"{_exception_name(exc)}: {message}" if message else _exception_name(exc)
    where = _where(exc)
    return (
        f"qstudio: internal error: {what}{f' (raised{where})' if where else ''}. "
        "This is a bug in qstudio, or the model's own code failing where qstudio did not expect it; "
        "to report it, re-run the same command with --verbose and attach its output to a qstudio issue."
    )


def _from_argparse(exc: SystemExit) -> bool:
    """argparse's own exit (``--help``), which is no failure."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "argparse"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # torch announces the deprecation of torch.ao/TorchScript on every call; qstudio's own warnings
        # (coverage, random data, fusion) are printed by qstudio itself
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(quantize_per_tensor|reduce_range will be deprecated).*")
    try:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first not in SUBCOMMANDS and not {"-h", "--help"} & set(argv[:1]):
            return cmd_window(argv)
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        return {"inspect": cmd_inspect, "quantize": cmd_quantize, "run": cmd_run}[args.command](args)
    except QStudioError as exc:
        if verbose:
            traceback.print_exc()
        print(f"qstudio: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        if verbose:
            traceback.print_exc()
        print("qstudio: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except SystemExit as exc:
        if _from_argparse(exc):
            raise  # --help printed its text
        return _internal_error(exc, verbose)  # sys.exit() in a model's code is no success
    except BaseException as exc:  # anything else: one line, never a bare traceback
        return _internal_error(exc, verbose)


def _internal_error(exc: BaseException, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    print(internal_error_line(exc), file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
