"""The last steps for every kind of source: CPU, float32, eval mode, and the input shape and dtype."""

from __future__ import annotations

import torch

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import LoadedModel, last_line

#: what each kind of source says about the input, for LoadedModel.input_origin
_ORIGINS = {
    "torchvision": "torchvision's documented input size",
    "factory": "the factory's input_shape attribute",
    "state_dict": "the factory's input_shape attribute",
    "safetensors": "the factory's input_shape attribute",
}


def finalize(module: torch.nn.Module, warns: list[str]) -> torch.nn.Module:
    """CPU, float32, eval mode."""
    tensors = [*module.parameters(), *module.buffers()]
    devices = sorted({t.device.type for t in tensors} - {"cpu"})
    if devices:
        try:
            module = module.to("cpu")
        except Exception as exc:
            raise LoadError(
                f"the model's weights on {', '.join(devices)} could not be moved to the CPU: {last_line(exc)}",
                "build the model with real weights on the CPU",
            ) from None
        warns.append(f"moved from {', '.join(devices)} to the CPU")
        tensors = [*module.parameters(), *module.buffers()]
    dtypes = sorted(
        {str(t.dtype).replace("torch.", "") for t in tensors if t.is_floating_point() and t.dtype != torch.float32}
    )
    if dtypes:
        try:
            module = module.float()
        except Exception as exc:
            raise LoadError(
                f"the model could not be converted from {', '.join(dtypes)} to float32: {last_line(exc)}",
                "save a float32 copy of the model",
            ) from None
        warns.append(f"converted from {', '.join(dtypes)} to float32")
    return module.eval()


def complete_input(loaded: LoadedModel) -> LoadedModel:
    """Fill the input shape and dtype the source did not give from the model itself (see qstudio.core.inputs)."""
    from qstudio.core.inputs import guess_input

    if loaded.scripted:
        loaded.input_origin = "TorchScript files do not say their input: set the input shape"
        loaded.input_dtype = loaded.input_dtype or "float32"
        return loaded
    origin = "the demo's metadata" if loaded.name == "demo" else _ORIGINS.get(loaded.kind, "")
    loaded.shape_declared = loaded.input_shape is not None and loaded.kind != "torchvision"
    guess = guess_input(loaded.module, loaded.input_shape, loaded.input_dtype, origin)
    loaded.input_shape, loaded.input_dtype, loaded.input_origin = guess.shape, guess.dtype, guess.origin
    return loaded
