"""Turn a :class:`ModelSource` into a float32 ``nn.Module`` in eval mode on the CPU.

One module per kind of source:

* ``torchvision:NAME`` (:mod:`.torchvision`): a torchvision architecture, built with ``weights=None``;
* ``demo`` (:mod:`.demo`): the shipped digits model (a factory plus ``.safetensors`` weights);
* ``path/to/model.py:function`` (:mod:`.factories`): a factory that builds the
  model and loads its own weights;
* a weights file (:mod:`.files`, :mod:`.state_dicts`): a ``.pt``/``.pth``/``.bin``
  state_dict or ``.safetensors``, with ``source.factory`` naming the factory
  that builds the empty model; the format is told by content (:mod:`.formats`);
* a pickled module (``torch.save(model)``) or a TorchScript file (:mod:`.trusted_files`).

Then :mod:`.finishing` moves it to the CPU, float32 and eval mode and
completes the input shape and dtype.

Security: a pickled module, a TorchScript file and a factory ``.py`` are
code.  Which files a source would run is decided up front by
:mod:`qstudio.core.trust` (``what_runs``); the loader takes the user's grants
(the SHA-256s of the file contents they agreed to run) and refuses any such
file whose bytes, as read for loading, are not covered.  Everything else is
read with ``torch.load(weights_only=True)`` (passed explicitly, so
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override it; a probe checks that
this holds before any untrusted file is opened, :mod:`.pickles`) or with
safetensors, neither of which can run code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Set as AbstractSet
from pathlib import Path

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import KINDS, LoadedModel, file_sha256
from qstudio.core.loading.demo import load_demo
from qstudio.core.loading.factories import build_from_factory, factory_files, parse_factory
from qstudio.core.loading.files import load_file
from qstudio.core.loading.finishing import complete_input, finalize
from qstudio.core.loading.pickles import _probe_target
from qstudio.core.loading.torchvision import load_torchvision
from qstudio.core.recipe import ModelSource


def load_model(source: ModelSource, *, grants: AbstractSet[str] | None = None, trust: bool = False) -> LoadedModel:
    """Load the model ``source`` describes; raise :class:`LoadError` for anything the user can fix.

    ``grants``: the SHA-256s of the file contents the user agreed to run
    (:class:`qstudio.core.trust.Grants`).  Every factory ``.py`` and every
    pickled-module or TorchScript file is checked against them with the very
    bytes that are about to run; one not covered raises
    :class:`~qstudio.core.errors.UntrustedFileError` and nothing of it runs.
    A pickle or TorchScript file loaded this way comes back with
    ``source.trusted_sha256`` set, so a saved recipe replays the trust only
    for the identical file.

    ``grants=None`` is for a source the caller names itself (scripts, tests,
    benchmarks): :func:`own_grants`, i.e. the factory files it names as they
    read now and the recipe's ``model.trusted_sha256``.  ``trust=True`` (kept
    for compatibility) also grants the model file ``source.spec`` as it reads now.
    """
    granted = frozenset(own_grants(source) if grants is None else (s.strip().lower() for s in grants))
    if trust:
        granted |= own_grants(ModelSource(source.spec), trust_model_file=True)
    return complete_input(_load(source, granted))


def own_grants(source: ModelSource, *, trust_model_file: bool = False) -> frozenset[str]:
    """What someone who names ``source`` themselves grants: the SHA-256s, as the files read now, of the factory
    files it names, its ``trusted_sha256`` (a recipe replaying trust) and, with ``trust_model_file`` (``--trust``),
    the model file ``source.spec``.  A file that cannot be read grants nothing (loading it then fails)."""
    shas = {source.trusted_sha256.strip().lower()} if (source.trusted_sha256 or "").strip() else set()
    files = factory_files(source)
    if trust_model_file:
        files.append(Path(source.spec.strip()).expanduser())
    for path in files:
        with contextlib.suppress(LoadError):
            shas.add(file_sha256(path))
    return frozenset(shas)


def _load(source: ModelSource, grants: frozenset[str]) -> LoadedModel:
    spec = source.spec.strip()
    warns: list[str] = []
    if spec.lower() == "demo":
        return load_demo(source, warns)
    if spec.lower().startswith("torchvision:"):
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: torchvision models build themselves")
        return load_torchvision(source, spec.split(":", 1)[1].strip(), warns)
    if parse_factory(spec) is not None:
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: the spec is already a factory")
        module, info = build_from_factory(spec, grants)
        module = finalize(module, warns)
        return LoadedModel(module, source, "factory", info.name, False, warns, info.input_shape, info.input_dtype)
    if spec.endswith(".py"):
        raise LoadError(
            f"{spec} is a Python file but names no function",
            f"add the function that builds the model after a colon, e.g. {spec}:build",
        )
    return load_file(Path(spec).expanduser(), source, grants, warns)


__all__ = ["KINDS", "LoadedModel", "_probe_target", "file_sha256", "load_model", "own_grants"]
