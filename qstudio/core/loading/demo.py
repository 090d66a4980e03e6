"""``demo``: the shipped digits model, a factory plus ``.safetensors`` weights (qstudio's own code: no grant needed)."""

from __future__ import annotations

import json
from pathlib import Path

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import LoadedModel
from qstudio.core.loading.factories import build_from_factory
from qstudio.core.loading.finishing import finalize
from qstudio.core.loading.state_dicts import apply_state_dict, note_half, read_safetensors
from qstudio.core.recipe import INPUT_DTYPES, ModelSource


def load_demo(source: ModelSource, warns: list[str]) -> LoadedModel:
    from qstudio.core.paths import resources_dir

    folder = resources_dir() / "demo"
    factory = folder / "model.py"
    weights = folder / "digits_resnet.safetensors"
    for needed in (factory, weights):
        if not needed.is_file():
            raise LoadError(
                f"the demo model file {needed} is missing",
                "reinstall qstudio, or load your own model instead of the demo",
            )
    module, info = build_from_factory(f"{factory}:build", None)  # shipped with qstudio
    state = read_safetensors(weights)
    note_half(state, weights.name, warns)
    apply_state_dict(module, state, weights.name, info.spec, warns)
    module = finalize(module, warns)
    shape, dtype = info.input_shape, info.input_dtype
    if shape is None:  # build() carries no hint: fall back to the demo's meta.json
        shape, dtype = _meta_hint(folder / "meta.json", dtype)
    return LoadedModel(module, source, "safetensors", "demo", False, warns, shape, dtype)


def _meta_hint(meta_path: Path, dtype: str | None) -> tuple[list[int] | None, str | None]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = meta.get("input_shape")
        dtype = meta.get("input_dtype", dtype)
    except (OSError, ValueError, AttributeError):
        return None, dtype
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        shape = None
    return shape, dtype if dtype in INPUT_DTYPES else "float32"
