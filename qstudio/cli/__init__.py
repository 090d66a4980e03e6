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

The package: :mod:`~qstudio.cli.main` (``main``, the exits above),
:mod:`~qstudio.cli.commands` (inspect, quantize, run, and launching the
window), :mod:`~qstudio.cli.errors` (the one line for an internal error).
The options are :mod:`qstudio.options`, which the window uses too.
"""

from __future__ import annotations

from qstudio.cli.errors import internal_error_line
from qstudio.cli.main import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, SUBCOMMANDS, build_parser, main
from qstudio.options import DEFAULT_EXPORT_TOLERANCE, EXPORT_METHODS, UsageError, recipe_from_args

__all__ = [
    "DEFAULT_EXPORT_TOLERANCE",
    "EXIT_BAD_INPUT",
    "EXIT_CANCELLED",
    "EXIT_INTERNAL",
    "EXPORT_METHODS",
    "SUBCOMMANDS",
    "UsageError",
    "build_parser",
    "internal_error_line",
    "main",
    "recipe_from_args",
]
