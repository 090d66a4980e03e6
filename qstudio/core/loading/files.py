"""A model file: by its content, a state_dict (torch.save or safetensors) plus its factory, or a file that is code."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path

import torch

from qstudio.core.loading.common import LoadedModel, check_path, open_file
from qstudio.core.loading.finishing import finalize
from qstudio.core.loading.formats import sniff
from qstudio.core.loading.pickles import NeedsTrust, safe_torch_load, torchscript_needs_trust
from qstudio.core.loading.state_dicts import extract_state_dict, from_state_dict, read_safetensors
from qstudio.core.loading.trusted_files import load_code_file
from qstudio.core.recipe import ModelSource


def load_file(path: Path, source: ModelSource, grants: AbstractSet[str], warns: list[str]) -> LoadedModel:
    """Weights are read without running code; only a file that cannot be read that way needs a grant."""
    check_path(path)
    label = path.name
    with open_file(path) as fh:
        fmt = sniff(fh, label)
    try:
        if fmt == "torchscript":
            raise torchscript_needs_trust()
        if fmt == "safetensors":
            state = read_safetensors(path)
            kind = "safetensors"
        else:
            obj = safe_torch_load(path, fmt)
            if isinstance(obj, torch.nn.Module):  # only if someone allow-listed its classes
                module = finalize(obj, warns)
                return LoadedModel(module, source, "pickle", label, False, warns, None, None)
            state = extract_state_dict(obj, label, warns)
            kind = "state_dict"
    except NeedsTrust as need:
        return load_code_file(path, source, grants, need, warns)
    return from_state_dict(path, source, state, kind, warns, grants)
