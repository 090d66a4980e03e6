"""Weights without code: a state_dict (from a torch.save file or safetensors) loaded into the module a factory builds."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import torch

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import LoadedModel, last_line
from qstudio.core.loading.factories import build_from_factory
from qstudio.core.loading.finishing import finalize
from qstudio.core.recipe import ModelSource

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def from_state_dict(
    path: Path, source: ModelSource, state: dict[str, Any], kind: str, warns: list[str], grants: AbstractSet[str]
) -> LoadedModel:
    """The module ``source.factory`` builds, with the weights in ``state``."""
    label = path.name
    if not source.factory:
        raise LoadError(
            f"{label} holds only weights (a state_dict of {len(state)} entries), not the code that builds the model",
            "give the factory that builds it: --factory path/to/model.py:function, or model.factory in the recipe",
        )
    module, info = build_from_factory(source.factory, grants)
    note_half(state, label, warns)
    apply_state_dict(module, state, label, info.spec, warns)
    module = finalize(module, warns)
    return LoadedModel(module, source, kind, label, False, warns, info.input_shape, info.input_dtype)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise LoadError(
            f"{path.name} is not a readable safetensors file ({reason})",
            "save or download it again",
        ) from None


def is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    has_tensor = False
    for key, value in obj.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, torch.Tensor):
            has_tensor = True
        elif not key.endswith("_extra_state"):
            return False
    return has_tensor


def extract_state_dict(obj: Any, label: str, warns: list[str]) -> dict[str, Any]:
    """The state_dict in what a file holds: itself, or a checkpoint's ``state_dict`` (or ``model``, ...) entry."""
    if is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            inner = obj.get(key)
            if is_state_dict(inner):
                if key not in ("state_dict", "model_state_dict"):
                    warns.append(f"used the weights stored under the key {key!r} of the checkpoint")
                return dict(inner)
        keys = [repr(k) for k in list(obj)[:8]]
        shown = ", ".join(keys) if keys else "none"
        raise LoadError(
            f"{label} holds a dict (keys: {shown}) with no state_dict in it",
            "save model.state_dict(), or store it under the key 'state_dict'",
        )
    raise LoadError(
        f"{label} holds a {type(obj).__name__}, not a state_dict or a model",
        "save model.state_dict() with torch.save, or the whole model",
    )


def note_half(state: Mapping[str, Any], label: str, warns: list[str]) -> None:
    dtypes = sorted(
        {
            str(t.dtype).replace("torch.", "")
            for t in state.values()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32
        }
    )
    if dtypes:
        warns.append(f"weights in {label} converted from {', '.join(dtypes)} to float32")


def _shape(t: Any) -> tuple[int, ...] | None:
    try:
        return tuple(t.shape)
    except Exception:  # uninitialized (lazy) parameters have no shape yet
        return None


def apply_state_dict(
    module: torch.nn.Module, state: dict[str, Any], label: str, factory: str, warns: list[str] | None = None
) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch lists the first missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()

    def compare(sd: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        shapes = []
        for k, v in expected.items():
            if k in sd and isinstance(v, torch.Tensor) and isinstance(sd[k], torch.Tensor):
                want, got = _shape(v), _shape(sd[k])
                if want is not None and got is not None and want != got:
                    shapes.append(f"{k} (file {list(got)}, model {list(want)})")
        return missing, unexpected, shapes

    missing, unexpected, shapes = compare(state)
    if (missing or unexpected) and state and all(k.startswith("module.") for k in state):
        stripped = {k[len("module.") :]: v for k, v in state.items()}
        if not any(compare(stripped)):
            state.clear()
            state.update(stripped)
            missing, unexpected, shapes = [], [], []
            if warns is not None:
                warns.append("removed the 'module.' prefix (saved from DataParallel) from the weight names")
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {title}: {', '.join(items[:5])}{more}")
        raise LoadError(
            f"the weights in {label} do not match the model built by {factory}: {'; '.join(parts)}",
            "check that the factory builds the same architecture the checkpoint was saved from "
            "(same class, layer names and sizes)",
        )
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise LoadError(
            f"the weights in {label} could not be loaded into the model built by {factory}: {last_line(exc)}",
            "check that the factory matches the checkpoint",
        ) from None
