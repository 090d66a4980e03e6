"""Files that are code: a pickled module or a TorchScript program, deserialised only for a granted SHA-256.

The file is read into memory once; the SHA-256 of exactly those bytes must
be among the grants (see :mod:`qstudio.core.trust`), and exactly those bytes
are loaded, so a file swapped after the user agreed is refused, never run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import warnings
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

import torch

from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.loading.common import LoadedModel, format_tb, last_line, read_error
from qstudio.core.loading.finishing import finalize
from qstudio.core.loading.formats import sniff
from qstudio.core.loading.pickles import NeedsTrust, torch_reason
from qstudio.core.loading.state_dicts import extract_state_dict, from_state_dict, is_state_dict
from qstudio.core.recipe import ModelSource


def load_code_file(
    path: Path, source: ModelSource, grants: AbstractSet[str], need: NeedsTrust, warns: list[str]
) -> LoadedModel:
    label = path.name
    try:
        data = path.read_bytes()  # hash and load the very same bytes
    except OSError as exc:
        raise read_error(path, exc) from None
    sha = hashlib.sha256(data).hexdigest()
    if sha not in grants:
        problem = f"{label} is {need.what}"
        recorded = (source.trusted_sha256 or "").strip().lower()
        if recorded and recorded != sha:
            problem += "; it was trusted before, but the file has changed since, so that trust no longer applies"
        raise UntrustedFileError(problem, need.fix)
    trusted_source = dataclasses.replace(source, trusted_sha256=sha)
    fmt = sniff(io.BytesIO(data), label)  # the bytes we hashed, not whatever the path holds now
    if fmt == "safetensors":
        raise LoadError(f"{label} changed while it was being loaded", "load it again")
    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:
            raise LoadError(
                f"{label} is a TorchScript file that could not be loaded: {last_line(exc)}",
                "save it again with torch.jit.save from a matching PyTorch version",
                details=format_tb(exc),
            ) from None
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: {label} contains the whole model")
        module = finalize(module, warns)
        return LoadedModel(module, trusted_source, "torchscript", label, True, warns, None, None)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except pickle.UnpicklingError as exc:
        if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
            raise LoadError(
                f"{label} is trusted, but TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which stops PyTorch from loading "
                "pickled models",
                "unset TORCH_FORCE_WEIGHTS_ONLY_LOAD, or re-save the model as a state_dict with its factory",
            ) from None
        raise LoadError(
            f"{label} could not be unpickled: {torch_reason(exc)}",
            "save the file again",
        ) from None
    except (ImportError, AttributeError) as exc:
        raise LoadError(
            f"{label} is a pickled model whose Python code cannot be found: {last_line(exc)}",
            "run qstudio where that code is importable (e.g. add its folder to PYTHONPATH), or re-save the "
            "model as a state_dict and load it with its factory",
            details=format_tb(exc),
        ) from None
    except Exception as exc:
        raise LoadError(
            f"{label} could not be loaded: {last_line(exc)}",
            "save the file again, or re-save the model as a state_dict and load it with its factory",
            details=format_tb(exc),
        ) from None

    if isinstance(obj, Mapping) and not isinstance(obj, torch.nn.Module):
        for key in ("model", "module", "net"):
            if isinstance(obj.get(key), torch.nn.Module):
                warns.append(f"used the model stored under the key {key!r} of the checkpoint")
                obj = obj[key]
                break
    if not isinstance(obj, torch.nn.Module) and (is_state_dict(obj) or isinstance(obj, Mapping)):
        # a trusted checkpoint whose extras (optimizer, args, ...) needed pickle: use its weights
        state = extract_state_dict(obj, label, warns)
        return from_state_dict(path, source, state, "state_dict", warns, grants)
    if not isinstance(obj, torch.nn.Module):
        raise LoadError(
            f"{label} holds a {type(obj).__name__}, not a torch.nn.Module",
            "save the whole model (torch.save(model)) or its state_dict plus a factory",
        )
    if source.factory:
        warns.append(f"model.factory {source.factory!r} ignored: {label} contains the whole model")
    kind = "torchscript" if isinstance(obj, torch.jit.ScriptModule) else "pickle"
    module = finalize(obj, warns)
    return LoadedModel(module, trusted_source, kind, label, kind == "torchscript", warns, None, None)
