"""Small helpers for model outputs, which may be tensors, tuples, lists or dicts."""

from __future__ import annotations

from typing import Any

import torch


def first_tensor(out: Any) -> torch.Tensor:
    """The main output of a model: the tensor itself, or the first tensor inside a container.

    Quantized outputs are dequantized so they compare with float ones.
    """
    if isinstance(out, torch.Tensor):
        return out.dequantize() if out.is_quantized else out
    if isinstance(out, dict):
        for key in ("sentence_embedding", "logits", "last_hidden_state"):
            if key in out:
                return first_tensor(out[key])
        out = list(out.values())
    elif hasattr(out, "to_tuple"):  # transformers ModelOutput
        out = out.to_tuple()
    if isinstance(out, (list, tuple)):
        for item in out:
            try:
                return first_tensor(item)
            except TypeError:
                continue
    raise TypeError(f"model output of type {type(out).__name__} holds no tensor")


def sqnr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Signal to quantization noise ratio in dB: 20*log10(|ref| / |ref - other|).  Higher is better."""
    ref = reference.detach().float().flatten()
    noise = (ref - other.detach().float().flatten()).norm()
    signal = ref.norm()
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(20 * torch.log10(signal / noise))
