"""Where qstudio's shipped files live, in an installed wheel and in a source checkout."""

from __future__ import annotations

from pathlib import Path


def resources_dir() -> Path:
    """The ``resources`` folder: inside the package when installed (``qstudio/resources``), else the checkout's.

    The package's own copy is looked for first, so another distribution that
    happens to install a top-level ``resources/`` folder can never be used.
    """
    here = Path(__file__).resolve()
    packaged = here.parents[1] / "resources"
    return packaged if packaged.is_dir() else here.parents[2] / "resources"
