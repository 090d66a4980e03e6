"""Recipe settings -> torch.ao QConfig objects.  The only place observers are chosen."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.ao.quantization import (
    FusedMovingAvgObsFakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    QConfigMapping,
    default_dynamic_qconfig,
    float16_dynamic_qconfig,
    per_channel_dynamic_qconfig,
)

from qstudio.core.environment import has_vnni
from qstudio.core.recipe import QuantSettings

_ACT_OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "histogram": HistogramObserver,
}

#: x86/fbgemm kernels accumulate in 16 bits without VNNI; PyTorch's defaults use 7-bit activations there.
_REDUCE_RANGE = {"x86": True, "fbgemm": True, "qnnpack": False, "onednn": False}


def reduce_range(s: QuantSettings, *, dynamic: bool = False) -> bool:
    """Whether activations use 7 bits: the user's choice, else what was measured to be safe.

    ``auto`` keeps PyTorch's 7 bits for static x86/fbgemm models even on VNNI
    CPUs: fbgemm's depthwise-convolution kernels still saturate with 8-bit
    activations there (mobilenet_v2, settled random weights, AVX512-VNNI:
    output cosine to FP32 0.932 with 8 bits vs 0.957 with 7; onednn, which
    does not saturate, reaches 0.970 with 8).  Dynamic quantization only
    runs Linear/LSTM kernels, which are safe with 8 bits on VNNI, where they
    lift all-MiniLM-L6-v2's embedding cosine from 0.977 to 0.993.
    """
    if s.reduce_range != "auto":
        return s.reduce_range == "on"
    if dynamic:
        return _REDUCE_RANGE[s.backend] and not has_vnni()
    return _REDUCE_RANGE[s.backend]


def static_qconfig(s: QuantSettings, *, per_channel: bool | None = None) -> QConfig:
    """Post-training static quantization: observer for activations, min/max for weights.

    ``per_channel`` overrides the recipe's choice (``False`` for the module types in :data:`PER_TENSOR_ONLY`).
    """
    act_scheme = torch.per_tensor_symmetric if s.symmetric else torch.per_tensor_affine
    activation = _ACT_OBSERVERS[s.observer].with_args(
        dtype=torch.quint8, qscheme=act_scheme, quant_min=0, quant_max=127 if reduce_range(s) else 255
    )
    if s.per_channel if per_channel is None else per_channel:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=activation, weight=weight)


def qat_qconfig(s: QuantSettings, *, per_channel: bool | None = None) -> QConfig:
    """Fake-quant for training: moving-average observers, as in PyTorch's default QAT qconfig."""
    reduce = reduce_range(s)
    act_scheme = torch.per_tensor_symmetric if s.symmetric else torch.per_tensor_affine
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=127 if reduce else 255,
        dtype=torch.quint8,
        qscheme=act_scheme,
    )
    if s.per_channel if per_channel is None else per_channel:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
        )
    else:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAverageMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
    return QConfig(activation=activation, weight=weight)


#: Module types torch.ao cannot observe per channel (``_assert_valid_qconfig`` refuses them, and its own
#: default mapping gives them per-tensor weights); with per-channel on they fall back to per-tensor.
PER_TENSOR_ONLY: tuple[type[nn.Module], ...] = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_PER_TENSOR_ONLY_FUNCTIONS = (
    nn.functional.conv_transpose1d, nn.functional.conv_transpose2d, nn.functional.conv_transpose3d,
)  # fmt: skip


def qconfig(s: QuantSettings, *, qat: bool = False, per_channel: bool | None = None) -> QConfig:
    return qat_qconfig(s, per_channel=per_channel) if qat else static_qconfig(s, per_channel=per_channel)


def weight_is_per_channel(q: QConfig) -> bool:
    from torch.ao.quantization.utils import is_per_channel

    return is_per_channel(getattr(q.weight(), "qscheme", torch.per_tensor_symmetric))


def per_tensor_note(names: list[str]) -> str:
    """What the coverage says about the layers that fell back to per-tensor weights."""
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{shown} quantized with per-tensor weights: torch.ao has no per-channel weight observer for ConvTranspose "
        "(the rest of the model keeps per-channel weights)"
    )


def qconfig_mapping(s: QuantSettings, skip: list[str], *, qat: bool = False) -> QConfigMapping:
    """Global qconfig, per-tensor weights where torch.ao has no per-channel kind, ``None`` for skipped modules (FX)."""
    mapping = QConfigMapping().set_global(qconfig(s, qat=qat))
    if s.per_channel:
        per_tensor = qconfig(s, qat=qat, per_channel=False)
        for kind in (*PER_TENSOR_ONLY, *_PER_TENSOR_ONLY_FUNCTIONS):
            mapping.set_object_type(kind, per_tensor)
    for name in skip:
        mapping.set_module_name(name, None)
    return mapping


def per_tensor_fallbacks(model: nn.Module, skip: Sequence[str] = ()) -> list[str]:
    """The modules of ``model`` that :func:`qconfig_mapping` gives per-tensor weights (FX: for the note)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, PER_TENSOR_ONLY) and not any(name == k or name.startswith(k + ".") for k in skip):
            out.append(name)
    return out


#: Module types dynamic quantization handles.
DYNAMIC_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


def dynamic_qconfig(s: QuantSettings, module: nn.Module) -> QConfig:
    if s.dynamic_dtype == "float16":
        return float16_dynamic_qconfig
    if s.per_channel and type(module) is nn.Linear:
        return per_channel_dynamic_qconfig
    return default_dynamic_qconfig
