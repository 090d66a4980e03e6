"""Trust: which files opening a model would run as code, and which of them the user agreed to run.

Two questions, one place:

* :func:`what_runs` decides up front, before anything is loaded or imported,
  which files a model source or recipe would execute: the factory ``.py``
  files it names, and a model file that can only be read by running code
  stored in it (a pickled module, a TorchScript program).  A state_dict or a
  ``.safetensors`` file runs nothing.  Each :class:`CodeRisk` carries the
  file's SHA-256 and the reason in words.
* :class:`Grants` is the user's answer, in one representation: the SHA-256s
  of the file contents they agreed to run.  They come from ``--trust`` (the
  named file as it reads then), from a recipe's ``model.trusted_sha256``, or
  from the window's questions and its remembered answers.

The loader (:func:`qstudio.core.loading.load_model`) takes the grants and
checks the bytes it is about to run against them, so a file swapped between
the question and the load is refused, never run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qstudio.core.errors import LoadError
from qstudio.core.loading import own_grants
from qstudio.core.loading.common import check_path, file_sha256, open_file
from qstudio.core.loading.factories import factory_files, parse_factory
from qstudio.core.loading.formats import sniff
from qstudio.core.loading.pickles import needs_trust
from qstudio.core.recipe import ModelSource, Recipe


@dataclass(frozen=True)
class CodeRisk:
    """One file that loading would execute."""

    path: Path  # resolved
    sha256: str | None  # of the content now; None: it cannot be read (loading then fails, running nothing)
    kind: str  # "factory" (a .py imported to build the model) or "model file" (a pickle or TorchScript)
    reason: str  # in words, for the question: "evil.pt is a pickled Python object, and unpickling it ..."
    replayed: bool = False  # a recipe's model.trusted_sha256 names exactly this content (someone's earlier trust)


class Grants(frozenset[str]):
    """The SHA-256s (lowercase hex) of the file contents the user agreed to run; nothing else is run."""

    def __new__(cls, shas: Iterable[str | None] = ()) -> Grants:
        return super().__new__(cls, (s.strip().lower() for s in shas if s and s.strip()))

    def __or__(self, other: Iterable[str | None]) -> Grants:  # type: ignore[override]
        return Grants([*self, *other])

    def covers(self, risk: CodeRisk) -> bool:
        return risk.sha256 is not None and risk.sha256 in self


def _source(target: ModelSource | Recipe) -> ModelSource:
    return target.model if isinstance(target, Recipe) else target


def _resolve(path: Path, base: Path | None) -> Path:
    path = path.expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return path.absolute()


def _sha_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except LoadError:
        return None


def what_runs(target: ModelSource | Recipe, base: Path | None = None) -> list[CodeRisk]:
    """The files loading ``target``'s model would execute, decided before anything is loaded; nothing is run.

    Factory files first (as named, even if missing: the user should see what
    a recipe names), then the model file if reading it needs its code.  The
    demo (shipped code) and ``torchvision:NAME`` give an empty list.  A model
    file that is missing or damaged gives no risk here: loading it fails with
    the problem named.  Relative paths start from the current folder, or from
    ``base`` if the caller loads the model with paths relative to ``base``.
    """
    source = _source(target)
    risks = []
    for file in factory_files(source):
        path = _resolve(file, base)
        risks.append(
            CodeRisk(
                path, _sha_or_none(path), "factory", f"{path.name} is Python code: opening the model imports (runs) it"
            )
        )
    model = _model_file_risk(source, base)
    if model is not None:
        risks.append(model)
    return risks


def _model_file_risk(source: ModelSource, base: Path | None) -> CodeRisk | None:
    spec = source.spec.strip()
    if spec.lower() == "demo" or spec.lower().startswith("torchvision:") or spec.endswith(".py"):
        return None
    if parse_factory(spec) is not None:
        return None
    path = _resolve(Path(spec), base)
    try:
        check_path(path)
        with open_file(path) as fh:  # one open file: the format, the pickle's globals and the hash
            need = needs_trust(fh, sniff(fh, path.name))
            if need is None:
                return None
            fh.seek(0)
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
    except (LoadError, OSError):
        return None  # loading reports the problem, running nothing
    recorded = (source.trusted_sha256 or "").strip().lower()
    reason = f"{path.name} is {need.what}"
    if recorded and recorded != sha:
        reason += "; it was trusted before, but the file has changed since, so that trust no longer applies"
    return CodeRisk(path, sha, "model file", reason, replayed=recorded == sha)


def uncovered(risks: Iterable[CodeRisk], grants: Iterable[str]) -> list[CodeRisk]:
    """The risks the grants do not cover, i.e. what to ask about (a file that cannot be read is not asked about)."""
    granted = grants if isinstance(grants, Grants) else Grants(grants)
    return [r for r in risks if r.sha256 is not None and not granted.covers(r)]


def granted(risks: Iterable[CodeRisk]) -> Grants:
    """Grants for exactly these files, as they were when :func:`what_runs` read them."""
    return Grants(r.sha256 for r in risks)


def granted_by_user(target: ModelSource | Recipe, *, trust_model_file: bool = False) -> Grants:
    """What someone who names ``target`` themselves (the command line) grants, each file taken once, now.

    The factory files it names (``python net.py`` runs net.py too), a recipe's
    ``model.trusted_sha256``, and with ``trust_model_file`` (``--trust``) the
    model file as it reads now: an edited or swapped file is not covered.
    """
    return Grants(own_grants(_source(target), trust_model_file=trust_model_file))


def code_files(recipe: Recipe, base: Path | None = None) -> list[Path]:
    """The files a recipe names whose code its model could run, resolved; read from the recipe alone, no file opened.

    The factory ``.py`` files named by ``model.spec`` or ``model.factory``, plus
    the model file when the recipe replays trust for it (``model.trusted_sha256``
    set).  :func:`what_runs` is the decision (it also looks at the model file);
    this is the recipe's own list, e.g. to show what a recipe names.
    """
    source = recipe.model
    files = [_resolve(f, base) for f in factory_files(source)]
    spec = source.spec.strip()
    plain_file = not (spec.lower() == "demo" or spec.lower().startswith("torchvision:") or spec.endswith(".py"))
    if plain_file and parse_factory(spec) is None and (source.trusted_sha256 or "").strip():
        files.append(_resolve(Path(spec), base))
    return files


__all__ = ["CodeRisk", "Grants", "code_files", "granted", "granted_by_user", "uncovered", "what_runs"]
