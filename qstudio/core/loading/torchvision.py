"""``torchvision:NAME``: a torchvision architecture, built with ``weights=None`` (nothing is downloaded)."""

from __future__ import annotations

import difflib

import torch

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import LoadedModel, format_tb, last_line
from qstudio.core.loading.finishing import finalize
from qstudio.core.recipe import ModelSource


def load_torchvision(source: ModelSource, name: str, warns: list[str]) -> LoadedModel:
    module, shape = torchvision_model(name)
    module = finalize(module, warns)
    return LoadedModel(module, source, "torchvision", name.lower(), False, warns, shape, None)


def torchvision_model(name: str) -> tuple[torch.nn.Module, list[int] | None]:
    """The architecture ``name`` with random weights, and its documented input shape (None if it has none)."""
    import torchvision

    known = torchvision.models.list_models()
    if name.lower() not in known:
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise LoadError(
            f"torchvision has no model named {name!r}",
            f"{hint}see python -c 'import torchvision; print(torchvision.models.list_models())' for all names",
        )
    try:
        module = torchvision.models.get_model(name.lower(), weights=None)
    except Exception as exc:
        raise LoadError(
            f"torchvision could not build {name!r}: {last_line(exc)}",
            "choose another torchvision model",
            details=format_tb(exc),
        ) from None
    return module, _input_shape(name.lower())


def _input_shape(name: str) -> list[int] | None:
    import torchvision

    models = torchvision.models
    if name in models.list_models(module=models):
        side = 299 if name == "inception_v3" else 224
        return [1, 3, side, side]
    if name in models.list_models(module=models.quantization):
        side = 299 if "inception" in name else 224
        return [1, 3, side, side]
    if name in models.list_models(module=models.segmentation):
        return [1, 3, 520, 520]
    if name in models.list_models(module=models.video):
        return [1, 3, 16, 112, 112]
    return None  # detection and optical flow take lists or pairs of images
