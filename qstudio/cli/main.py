"""``main``: parse, dispatch to a command or the window, and leave with one of the documented exits."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence

from qstudio.cli import commands
from qstudio.cli.errors import internal_error_line
from qstudio.core.errors import Cancelled, QStudioError
from qstudio.core.recipe import MODES
from qstudio.options import (
    ArgumentParser,
    add_model_options,
    add_output_options,
    add_quantize_options,
    add_search_options,
)

SUBCOMMANDS = ("inspect", "quantize", "run", "search")
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_CANCELLED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="qstudio", description="Quantization studio for PyTorch models.")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", parser_class=ArgumentParser)

    p = sub.add_parser("inspect", help="show the module tree, output shapes and suggested fusion groups")
    add_model_options(p)
    p.add_argument("--mode", choices=MODES, default="fx", help="mode used to judge what is quantizable")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("quantize", help="quantize a model, compare with FP32, optionally export")
    add_model_options(p)
    add_quantize_options(p, required_mode=True)
    add_output_options(p)
    p.add_argument("--save-recipe", metavar="OUT.toml", help="save the recipe of this run")
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "search",
        help="find the fastest configuration within an accuracy budget (--max-drop), export it",
        description="Try configurations (mode, backend, observer, calibration size, layers kept in float, runtime) "
        "with Optuna and keep the fastest whose accuracy, or agreement with FP32, is within --max-drop points of "
        "FP32. Every trial is a recipe: replay any with qstudio run. Exit 0: found; 1: none met the budget.",
    )
    add_model_options(p)
    add_quantize_options(p, required_mode=False)
    add_search_options(p)
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("run", help="run a saved recipe")
    p.add_argument("recipe", metavar="RECIPE.toml")
    add_output_options(p)
    p.add_argument("--verbose", "-v", action="store_true", help=argparse.SUPPRESS)
    return parser


def _from_argparse(exc: SystemExit) -> bool:
    """argparse's own exit (``--help``), which is no failure."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "argparse"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        # torch announces the deprecation of torch.ao/TorchScript on every call; qstudio's own warnings
        # (coverage, random data, fusion) are printed by qstudio itself
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(quantize_per_tensor|reduce_range will be deprecated).*")
        # "No CUDA runtime is found" when a library imports torch's C++ extension helpers: CPU-only is the design;
        # torchao's import registers enums torch now calls deprecated to register
        for chatty in ("torch.utils.cpp_extension", "torch.utils._pytree"):
            logging.getLogger(chatty).setLevel(logging.ERROR)
        # torch.ao keeps its fixed output ranges (hardsigmoid, softmax...) whatever the qconfig says: correct, and
        # told once per op; deprecations inside the user's model libraries are for their authors
        warnings.filterwarnings("ignore", message=r".*QConfig must specify a FixedQParamsObserver.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|timm|torchvision)(\.|$)")
    try:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first not in SUBCOMMANDS and not {"-h", "--help"} & set(argv[:1]):
            return commands.cmd_window(argv)
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        # looked up at call time, so a test can replace a command
        command = {
            "inspect": commands.cmd_inspect,
            "quantize": commands.cmd_quantize,
            "run": commands.cmd_run,
            "search": commands.cmd_search,
        }
        return command[args.command](args)
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
