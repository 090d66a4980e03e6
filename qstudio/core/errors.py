"""One error type for everything the user can fix.

Every failure that bad input can cause is raised as a :class:`QStudioError`
carrying a *problem* (what is wrong, naming the file, key or module) and a
*fix* (what to do about it).  The command line prints ``str(err)`` on one line
and exits 2; the window shows the same two parts.  Anything else that escapes
is a bug in qstudio and is shown with its traceback.
"""

from __future__ import annotations


class QStudioError(Exception):
    """A problem the user can fix: ``problem`` says what, ``fix`` says how."""

    def __init__(self, problem: str, fix: str = "", *, details: str = "", key: str = "") -> None:
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".")
        self.details = details
        #: the setting at fault, where one is (``calib``, ``eval``, ``train``, ``input_shape``, ``input_dtype``):
        #: the window marks that setting, the CLI names it
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.fix:
            return f"{self.problem}. Fix: {self.fix}."
        return f"{self.problem}."


class LoadError(QStudioError):
    """A model file or factory could not be loaded."""


class UntrustedFileError(LoadError):
    """Loading would execute code from a file the user has not trusted."""


class RecipeError(QStudioError):
    """A recipe file or value is invalid."""


class DataError(QStudioError):
    """Calibration, training or evaluation data is unusable."""


class FusionError(QStudioError):
    """A fusion group is invalid."""


class FlowError(QStudioError):
    """A quantization flow cannot be applied to this model."""


class ExportError(QStudioError):
    """The quantized model could not be exported or did not verify."""


class Cancelled(Exception):
    """Raised inside long work when the user cancelled; not an error."""
