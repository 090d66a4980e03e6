"""A payload that runs code when a file holding it is opened: what the trust tests must never let run.

Import it as ``from untrusted import Evil`` (pytest puts tests/ on ``sys.path`` for its conftest.py).
"""

from __future__ import annotations

from pathlib import Path


class Evil:
    """Unpickling this opens (creates) the marker file: stands in for any malicious payload.

    The pickle names ``io.open``, not this class, so it loads (and runs) without this module.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
