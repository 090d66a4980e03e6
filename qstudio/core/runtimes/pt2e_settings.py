"""PT2E's scoped third-party state: torch/torchao loggers quieted, torchao imported with its global inductor pass
put back, torch's thread count and inductor's compile settings set only while a graph compiles.

Nothing here leaves global torch configuration changed after its ``with`` block.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch

_CHATTY = ("torch._dynamo", "torch._inductor", "torch._export", "torch.export", "torch.fx", "torch.utils", "torchao")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide dynamo's/inductor's warnings and log chatter; errors still raise and ERROR records still print."""
    saved = {name: logging.getLogger(name).level for name in _CHATTY}
    with warnings.catch_warnings():
        for category in (UserWarning, FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(torch|torchao)(\..*)?$")
        try:
            for name in saved:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)


@functools.cache
def _torchao() -> dict[str, Any]:
    """Import torchao's PT2E pieces once.

    Importing the X86 quantizer registers its inductor patterns (only active
    with freezing) and sets ``torch._inductor.config.pre_grad_custom_pass``
    globally; that one is put back and set only while we compile.
    """
    import torch._inductor.config as inductor_config

    before = inductor_config.pre_grad_custom_pass
    try:
        with _quiet():
            from torchao.quantization.pt2e.inductor_passes.x86 import quant_lift_up
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer,
                get_default_x86_inductor_quantization_config,
            )
    finally:
        inductor_config.pre_grad_custom_pass = before
    config = get_default_x86_inductor_quantization_config
    return {"prepare": prepare_pt2e, "convert": convert_pt2e, "quantizer": X86InductorQuantizer, "config": config,
            "lift_up": quant_lift_up}  # fmt: skip


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """``n`` intra-op threads inside (dynamo guards on the count; inductor writes it into its kernels)."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _compiling(precision: str) -> Iterator[None]:
    """Inductor's settings for our graphs, only while dynamo traces and inductor compiles them."""
    import torch._inductor.config as inductor_config

    patch: dict[str, Any] = {"freezing": True}  # weights become constants: oneDNN prepacks them, q/dq fold away
    if precision == "int8":
        patch["pre_grad_custom_pass"] = _torchao()["lift_up"]
    with _quiet(), inductor_config.patch(patch), torch.no_grad():
        yield
