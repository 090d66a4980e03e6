"""Asking before a model is loaded: the window's one place for trust.

:func:`ask_before_loading` runs on the GUI thread before any load work
starts.  The engine (:func:`qstudio.core.trust.what_runs`) says which files
opening the model would run as code; what the user already covered is not
asked again (a factory they picked themselves, a file they trusted before:
remembered per SHA-256 in the window's settings under ``trust/code/<sha>``);
everything left is asked about once, in one prompt, Cancel being the
default.  The answer is the :class:`~qstudio.core.trust.Grants` the loader
checks each file against, so a file changed after the question is not run.

Two prompts, named for tests (docs/ui-testing.md):

* ``trustBox``: a pickled module or TorchScript file the user opens;
* ``codeTrustBox``: Python code a recipe names (a factory ``.py``, or a
  pickled or TorchScript model it marks as trusted).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow, QMessageBox, QWidget

from qstudio.core.recipe import ModelSource, Recipe
from qstudio.core.trust import CodeRisk, Grants, granted, uncovered, what_runs

SETTINGS_GROUP = "trust/code"


def remembered(settings: QSettings, risks: list[CodeRisk]) -> Grants:
    """The files among ``risks`` the user said yes to before, for this exact content."""
    return granted(
        r for r in risks if r.sha256 is not None and settings.value(f"{SETTINGS_GROUP}/{r.sha256}") is not None
    )


def remember(settings: QSettings, risks: list[CodeRisk]) -> None:
    """Record a yes for each file's content as it was when the question was asked (never as it reads now)."""
    for risk in risks:
        if risk.sha256 is not None:
            settings.setValue(f"{SETTINGS_GROUP}/{risk.sha256}", str(risk.path))


def ask_before_loading(
    parent: QMainWindow,
    settings: QSettings,
    target: ModelSource | Recipe,
    *,
    recipe: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> Grants | None:
    """The grants to load ``target`` with, asking first if needed; None if the user declined (load nothing).

    ``recipe``: how to name the recipe being opened ("recipe shared.toml");
    None when the user opened the model themselves (File > Open, a recent
    entry, a dropped file), whose factory files are their own choice: granted
    and remembered without a question.
    """
    risks = what_runs(target)
    own = [r for r in risks if r.kind == "factory"] if recipe is None else []
    remember(settings, own)
    grants = granted(own) | remembered(settings, risks)
    pending = uncovered(risks, grants)
    if not pending:
        return grants
    spec = (target.model if isinstance(target, Recipe) else target).spec
    if recipe is not None and (len(pending) > 1 or pending[0].kind == "factory" or pending[0].replayed):
        if not confirm_code_files(parent, recipe, [r.path for r in pending]):
            names = ", ".join(r.path.name for r in pending)
            message = f"{recipe} was not opened: it would run code from {names} and you declined"
            log(f"{message}; nothing was run and your model and settings are unchanged")
            parent.statusBar().showMessage(message, 10000)
            return None
        log(f"trust given for code named by {recipe}: {', '.join(str(r.path) for r in pending)}")
    else:
        (risk,) = pending  # factories opened by the user are theirs: only the model file can be left
        if not confirm_trust(parent, str(risk.path), risk.reason):
            log(f"not opened: {spec} needs trust and none was given")
            return None
        log(f"trust given for {spec}")
    remember(settings, pending)  # the hashes taken before the question: a file swapped meanwhile is not covered
    return grants | granted(pending)


def _ask_before_running_code(parent: QWidget, name: str, title: str, text: str, info: str, accept: str) -> bool:
    """A warning box whose only way to say yes is the named ``accept`` button; Cancel is the default."""
    box = QMessageBox(parent)
    box.setObjectName(name)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    box.setInformativeText(info)
    yes = box.addButton(accept, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is yes


def confirm_trust(parent: QWidget, path: str, reason: str) -> bool:
    """Ask for explicit trust, naming the file; the answer defaults to No."""
    return _ask_before_running_code(
        parent,
        "trustBox",
        "Trust this file?",
        f"Opening “{Path(path).name}” will run code stored in the file.",
        f"{reason}\n\nFull path: {path}\n\nOnly trust it if you know who made it. "
        "qstudio records the trust for this exact file content (its SHA-256).",
        "I trust this file",
    )


def confirm_code_files(parent: QWidget, what: str, files: list[Path]) -> bool:
    """Ask before opening ``what`` (a recipe) imports Python files it names; the answer defaults to No."""
    names = ", ".join(f"“{f.name}”" for f in files)
    listing = "\n".join(f"  • {f}" for f in files)
    return _ask_before_running_code(
        parent,
        "codeTrustBox",
        "Run code from this recipe?",
        f"Opening {what} will run code from {names}.",
        "The recipe names code that builds its model (a factory .py file, or a pickled or TorchScript model it "
        f"marks as trusted); loading it executes these files with your permissions:\n{listing}\n\n"
        "A recipe from someone else can name any file. Only continue if you trust "
        "this code; otherwise choose Cancel and nothing is opened. qstudio remembers a yes for this exact file "
        "content (its SHA-256), so an edited file asks again.",
        "Run this code",
    )
