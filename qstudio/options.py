"""The ``qstudio`` command line's options, shared by the CLI and the window.

``qstudio [MODEL] [options]`` opens the window with the same model, quantization,
data and benchmark options that ``qstudio quantize`` takes, so both front ends
build their parsers from the public builders here and turn the parsed options
into a :class:`~qstudio.core.recipe.Recipe` with :func:`recipe_from_args`.

This module sits below both front ends (``qstudio.cli`` launches the window;
the window must not import the CLI) and above the engine; it imports neither
Qt nor torch, so ``--help`` and bad options are answered before either loads.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from qstudio.core.errors import QStudioError
from qstudio.core.recipe import (
    BACKENDS,
    DEFAULT_MAX_DROP,
    DYNAMIC_DTYPES,
    MODES,
    OBSERVERS,
    RUNTIMES,
    TARGETS,
    BenchmarkSettings,
    DataSource,
    DeploySettings,
    ModelSource,
    QATSettings,
    QuantSettings,
    Recipe,
)

# qstudio.core.torchscript.EXPORT_METHODS and qstudio.core.export.DEFAULT_ATOL, without importing torch to parse options
EXPORT_METHODS = ("auto", "trace", "script")
DEFAULT_EXPORT_TOLERANCE = 1e-4


class UsageError(QStudioError):
    """A command-line option is wrong."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so every bad input leaves the same way."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, f"see `{self.prog} --help`")


# -- lists ---------------------------------------------------------------------------
# One syntax for every list a user types, on the command line and in the window: items separated by commas,
# semicolons or spaces, optionally inside [] or (), empty items ignored; whole numbers (shapes, batch sizes) may
# also be written 1x3x224x224 ("x" or "×" between two numbers).
_SEPARATOR = re.compile(r"[,;\s]+")
_TIMES = re.compile(r"(?<=\d)\s*[x×]\s*(?=\d)")


def split_list(text: str, *, dimensions: bool = False) -> list[str]:
    """``"[1, 3,224,224]"`` -> ``["1", "3", "224", "224"]``; ``""`` -> ``[]``; ``dimensions``: ``1x3`` is two items."""
    cleaned = text.strip().strip("[]()")
    if dimensions:
        cleaned = _TIMES.sub(",", cleaned)
    return [part for part in _SEPARATOR.split(cleaned) if part]


def parse_int_list(text: str, *, positive: bool = False) -> list[int]:
    """Whole numbers (a shape, batch sizes); raises ValueError when one is not (or, with ``positive``, is <= 0)."""
    values = [int(part) for part in split_list(text, dimensions=True)]
    if positive and any(v <= 0 for v in values):
        raise ValueError(f"{text!r} has a size that is not positive")
    return values


def parse_float_list(text: str) -> list[float]:
    """Numbers (a normalisation mean or std); raises ValueError when one is not a number."""
    return [float(part) for part in split_list(text)]


def parse_name_list(text: str) -> list[str]:
    """Module names (a fusion group ``conv1,bn1,relu``), as the model's tree names them."""
    return split_list(text)


# -- value types ------------------------------------------------------------------
def _shape(text: str) -> list[int]:
    try:
        dims = parse_int_list(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write it like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write positive sizes like 1,3,224,224")
    return dims


def _floats(text: str) -> list[float]:
    try:
        values = parse_float_list(text)
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers; write it like 0.485,0.456,0.406")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = parse_int_list(text)
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers; write it like 1,8")
    return values


def _non_negative(text: str, problem: str) -> float:
    """A number >= 0 (NaN and text refused): ``problem`` follows the value in the error."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return value


def _tolerance(text: str) -> float:
    return _non_negative(text, "is not a tolerance; give a number >= 0 like 1e-3")


# -- option builders ------------------------------------------------------------------
def _runtime_list(text: str) -> list[str]:
    if text.strip() == "all":
        return list(RUNTIMES)
    if text.strip() == "none":
        return []
    names = parse_name_list(text)
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown runtime {', '.join(unknown)}; use {', '.join(RUNTIMES)}, all or none"
        )
    return names


def _max_drop(text: str) -> float:
    return _non_negative(text, "is not a number of points >= 0 (e.g. 0.5)")


def apply_deploy_args(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """``--target``, ``--runtimes`` and ``--max-drop`` over the recipe's [deploy] section (a replayed recipe too)."""
    deploy = recipe.deploy
    recipe.deploy = DeploySettings(
        runtimes=getattr(args, "runtimes", None) if getattr(args, "runtimes", None) is not None else deploy.runtimes,
        target=getattr(args, "target", None) or deploy.target,
        max_drop=getattr(args, "max_drop", None) if getattr(args, "max_drop", None) is not None else deploy.max_drop,
    )
    return recipe


def add_model_options(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """MODEL (``demo`` when ``optional`` and not given), --factory, --trust, --input-shape, --input-dtype."""
    help_text = "demo, torchvision:NAME, a weights/TorchScript/pickle file, or FILE.py:FUNC"
    if optional:
        p.add_argument("model", metavar="MODEL", nargs="?", default="demo", help=help_text + " (default: demo)")
    else:
        p.add_argument("model", metavar="MODEL", help=help_text)
    p.add_argument(
        "--factory", metavar="FILE.py:FUNC", help="function that builds the module a state_dict is loaded into"
    )
    p.add_argument(
        "--trust", action="store_true", help="allow loading this pickle/TorchScript file, which can run code"
    )
    p.add_argument("--input-shape", type=_shape, metavar="1,3,224,224", help="model input shape, batch first")
    p.add_argument("--input-dtype", choices=("float32", "int64"), help="int64 for token-id models (default: float32)")


def add_quantize_options(p: argparse.ArgumentParser, *, required_mode: bool) -> None:
    """The quantization, data and benchmark option groups that :func:`recipe_from_args` reads."""
    g = p.add_argument_group("quantization")
    g.add_argument("--mode", choices=MODES, required=required_mode, help="eager/fx static PTQ, qat, or dynamic")
    g.add_argument("--backend", choices=BACKENDS, help="quantized kernel backend (default x86)")
    g.add_argument("--observer", choices=OBSERVERS, help="activation observer (default histogram)")
    g.add_argument(
        "--per-channel", action=argparse.BooleanOptionalAction, default=None, help="per-channel weights (default on)"
    )
    g.add_argument(
        "--symmetric",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="symmetric activations (default affine)",
    )
    g.add_argument("--dynamic-dtype", choices=DYNAMIC_DTYPES, help="dynamic mode weight type (default qint8)")
    g.add_argument("--skip", nargs="+", default=[], metavar="MODULE", help="modules to keep in float")
    g.add_argument(
        "--skip-worst", type=int, metavar="K", help="re-quantize with the K worst layers (by SQNR) kept in float"
    )
    g.add_argument(
        "--fusion", action="append", metavar="A,B[,C]", help="a fusion group (repeat); default: suggested groups"
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--calib-data", metavar="PATH|demo|random", help="image folder, .npy/.pt tensor file, demo or random"
    )
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


def add_output_options(p: argparse.ArgumentParser) -> None:
    """--export, --export-tolerance, --export-method, --report, --json (the headless commands' outputs)."""
    o = p.add_argument_group("outputs")
    o.add_argument(
        "--export",
        metavar="OUT",
        help="write the verified INT8 model of --target here (.pt, .pt2, .onnx, .xml+.bin; the suffix is added)",
    )
    o.add_argument(
        "--target",
        choices=TARGETS,
        help="the runtime the export runs on (default torchscript); auto: the fastest INT8 runtime measured "
        f"within --max-drop points of torch.ao's accuracy (agreement without labels; default {DEFAULT_MAX_DROP:g})",
    )
    o.add_argument(
        "--runtimes",
        type=_runtime_list,
        metavar="onnx,openvino|all|none",
        help="the runtimes measured side by side besides torch (default: every installed runtime that builds "
        "in seconds: " + ", ".join(RUNTIMES[1:3]) + "; pt2 only when named)",
    )
    o.add_argument("--max-drop", type=_max_drop, metavar="POINTS", help="--target auto's accuracy budget in points")
    o.add_argument(
        "--export-tolerance",
        type=_tolerance,
        default=DEFAULT_EXPORT_TOLERANCE,
        metavar="ATOL",
        help="largest difference between the reloaded export and the model that passes verification "
        f"(default {DEFAULT_EXPORT_TOLERANCE:g})",
    )
    o.add_argument(
        "--export-method",
        choices=EXPORT_METHODS,
        default="auto",
        help="how the export becomes TorchScript: trace, script, or auto (trace; script where tracing fails or is unsafe)",
    )
    o.add_argument("--report", metavar="OUT.html", help="write the HTML report here")
    o.add_argument("--json", metavar="OUT.json", help="write the figures as JSON here")


def _seconds(text: str) -> float:
    value = _non_negative(text, "is not a number of seconds (e.g. 600)")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 (e.g. 600)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def add_search_options(p: argparse.ArgumentParser) -> None:
    """``qstudio search``'s own options: the budget, the limits, hold-out data, the executor, the outputs."""
    s = p.add_argument_group("search")
    s.add_argument(
        "--max-drop",
        type=_max_drop,
        required=True,
        metavar="POINTS",
        help="the accuracy (or agreement) the winner may lose against FP32, in points (0 allowed)",
    )
    s.add_argument(
        "--metric",
        choices=("accuracy", "agreement"),
        help="accuracy on labelled eval data (the default when labels are given), or top-1 agreement with FP32",
    )
    s.add_argument("--time-budget", type=_seconds, metavar="SECONDS", help="stop after this long with the best so far")
    s.add_argument(
        "--trials", type=_count, metavar="N", help="stop after N trials (default 16, or none with --time-budget)"
    )
    s.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    s.add_argument(
        "--runtimes",
        type=_runtime_list,
        metavar="onnx,openvino|all|none",
        help="the runtimes a trial may deploy to besides TorchScript (default: every installed one)",
    )
    s.add_argument("--holdout-data", metavar="PATH", help="data the search never sees, to measure the winner on")
    s.add_argument("--holdout-labels", metavar="PATH", help="labels of --holdout-data")
    s.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="run trials in N processes sharing one Optuna journal (default 1: here, one after another)",
    )
    s.add_argument(
        "--storage",
        metavar="URL|JOURNAL",
        help="an Optuna storage (sqlite:///s.db, postgresql://..., or a journal file on a shared disk): "
        "every machine running this search with the same --storage and --study-name shares its trials",
    )
    s.add_argument("--study-name", metavar="NAME", help="the study's name in --storage (default: from the model)")
    o = p.add_argument_group("outputs")
    o.add_argument(
        "--export", metavar="OUT", help="write the winner's verified INT8 model here (its runtime's suffix is added)"
    )
    o.add_argument(
        "--export-tolerance",
        type=_tolerance,
        default=DEFAULT_EXPORT_TOLERANCE,
        metavar="ATOL",
        help=f"largest difference the reloaded export may have (default {DEFAULT_EXPORT_TOLERANCE:g})",
    )
    o.add_argument("--json", metavar="OUT.json", help="write every trial, the Pareto front and the winner as JSON")
    o.add_argument("--save-recipe", metavar="OUT.toml", help="save the winner's recipe (replay it with qstudio run)")
    o.add_argument("--report", metavar="OUT.html", help="write the HTML report: Pareto chart and the winner's recipe")


def parse_window_args(argv: list[str]) -> argparse.Namespace:
    """``qstudio [MODEL] [options]``: the window's command line (raises :class:`UsageError` on a bad option)."""
    parser = ArgumentParser(prog="qstudio", description="Open the qstudio window (on the demo when no MODEL is given).")
    add_model_options(parser, optional=True)
    add_quantize_options(parser, required_mode=False)
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser.parse_args(argv)


# -- options -> recipe ------------------------------------------------------------------
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
    """The recipe the options of :func:`add_quantize_options` (and ``--input-*``) describe, for ``model``."""
    settings = QuantSettings()
    for key in (
        "backend",
        "observer",
        "per_channel",
        "symmetric",
        "dynamic_dtype",
        "calib_batches",
        "batch_size",
        "skip_worst",
    ):
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
    fusion = [parse_name_list(g) for g in args.fusion] if args.fusion else None
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


__all__ = [
    "DEFAULT_EXPORT_TOLERANCE",
    "EXPORT_METHODS",
    "ArgumentParser",
    "UsageError",
    "add_model_options",
    "add_output_options",
    "add_quantize_options",
    "add_search_options",
    "apply_deploy_args",
    "data_source",
    "parse_float_list",
    "parse_int_list",
    "parse_name_list",
    "parse_window_args",
    "recipe_from_args",
    "split_list",
]
