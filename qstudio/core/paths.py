"""Where qstudio's shipped files live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path


def resources_dir() -> Path:
    """The ``resources`` folder: the repository's in a checkout, else the one inside the package."""
    checkout = Path(__file__).resolve().parents[2] / "resources"
    if checkout.is_dir():
        return checkout
    import qstudio

    return Path(qstudio.__file__).resolve().parent / "resources"
