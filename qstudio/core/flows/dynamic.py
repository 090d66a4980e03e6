"""Dynamic quantization: Linear/LSTM/GRU weights in int8 (or float16), activations quantized on the fly.

No calibration and no fusion: it suits transformers and recurrent models, and
models that take token ids.  Defaults keep accuracy: per-channel int8 weights
for Linear, per-tensor for recurrent layers (their dynamic kernels take only
per-tensor weights).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

from qstudio.core.errors import FlowError
from qstudio.core.flows.base import FlowInput, QuantizedModel, check_memory, quantized_engine
from qstudio.core.flows.failures import refusals
from qstudio.core.flows.qconfig import DYNAMIC_TYPES, dynamic_qconfig, reduce_range
from qstudio.core.flows.traits import mode_traits
from qstudio.core.progress import Progress


class NoFastPath(nn.Module):
    """Runs a model with PyTorch's fused transformer fast path off.

    ``nn.TransformerEncoderLayer``'s inference fast path reads
    ``linear1.weight`` as a tensor; on a dynamically quantized Linear it is a
    method, and the layer crashes.  With the fast path off the layer runs its
    ordinary ops, which use the quantized Linear kernels.  Tracing (the
    export path) records those ops, so the exported file needs no wrapper.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        enabled = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            return self.model(*args, **kwargs)
        finally:
            torch.backends.mha.set_fastpath_enabled(enabled)


def _full_range_activations(model: nn.Module) -> None:
    """Quantize Linear inputs with 8 bits instead of 7.

    torch's DynamicQuantizedLinear (format version 4) hard-codes
    ``reduce_range=True``; version 3 calls the same kernel with its default,
    full 8-bit range.  On VNNI CPUs that is safe, and on all-MiniLM-L6-v2 it
    lifts the embeddings' cosine to FP32 from 0.977 to 0.993.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for module in model.modules():
        if type(module) is DynamicLinear and module._packed_params.dtype == torch.qint8:
            module.version = 3


def is_conv1d(module: nn.Module) -> bool:
    """GPT-2's ``transformers.pytorch_utils.Conv1D``: a Linear whose weight is stored transposed, ``(in, out)``.

    Recognised by class name and shape, without importing transformers: a
    ``Conv1D`` with an ``nf`` attribute (its output features) and a 2-D weight.
    """
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
    )


def conv1d_as_linear(model: nn.Module) -> int:
    """Replace every GPT-2 ``Conv1D`` in ``model`` (in place) with the ``nn.Linear`` it is; returns how many.

    Conv1D computes ``x @ W + b`` with ``W`` of shape ``(in, out)``: a Linear
    with weight ``W.T``.  quantize_dynamic only knows ``nn.Linear``, so
    without this GPT-2's attention and MLP projections stay float.
    """
    found = [(name, m) for name, m in model.named_modules() if name and is_conv1d(m)]
    for name, conv in found:
        weight = conv.weight.detach()
        bias = getattr(conv, "bias", None)
        linear = nn.Linear(
            weight.shape[0], weight.shape[1], bias=bias is not None, device=weight.device, dtype=weight.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(weight.t())
            if bias is not None:
                linear.bias.copy_(bias.detach())
        linear.train(conv.training)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, linear)
    return len(found)


def _targets(inp: FlowInput, model: nn.Module | None = None) -> dict[str, object]:
    s = inp.recipe.settings
    skip = tuple(s.skip)
    spec: dict[str, object] = {}
    for name, module in (inp.model if model is None else model).named_modules():
        if not (type(module) in DYNAMIC_TYPES or is_conv1d(module)) or not name:
            continue
        if any(name == k or name.startswith(k + ".") for k in skip):
            continue
        spec[name] = dynamic_qconfig(s, module)
    return spec


class Dynamic:
    """quantize_dynamic on the Linear/LSTM/GRU layers outside the skip list."""

    traits = mode_traits("dynamic")

    @property
    def mode(self) -> str:
        return self.traits.mode

    def preflight(self, inp: FlowInput) -> list[str]:
        if not _targets(inp):
            kinds = ", ".join(t.__name__ for t in DYNAMIC_TYPES)
            raise FlowError(
                f"dynamic quantization found nothing to quantize: the model has no {kinds} modules outside the skip list",
                "use static quantization (--mode fx) for convolutional models",
            )
        check_memory(inp)
        return []

    def run(self, inp: FlowInput) -> Generator[Progress, None, QuantizedModel]:
        s = inp.recipe.settings
        with quantized_engine(s.backend):
            spec = _targets(inp)
            yield Progress("quantize", 0, 1, f"quantizing {len(spec)} modules' weights ({s.dynamic_dtype})")
            start = time.perf_counter()
            model = copy.deepcopy(inp.model).eval()
            if conv1d_as_linear(model):
                spec = _targets(inp, model)  # the Conv1Ds are Linears now: Linear's qconfig (per-channel) applies
            with refusals("quantize_dynamic", model):
                quantized = quantize_dynamic(model, qconfig_spec=spec, inplace=True)
            if not reduce_range(s, dynamic=True):
                _full_range_activations(quantized)
            yield Progress("quantize", 1, 1)
            seconds = time.perf_counter() - start
        wrapped = any(isinstance(m, nn.TransformerEncoderLayer) for m in quantized.modules())
        module, prefix = (NoFastPath(quantized), "model.") if wrapped else (quantized, "")
        return QuantizedModel(module.eval(), inp.model, self.mode, s.backend, prefix, 0.0, seconds)
