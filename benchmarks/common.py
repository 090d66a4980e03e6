"""Shared by the benchmark scripts: the models, the machine description, markdown tables."""

from __future__ import annotations

import contextlib
import copy
import datetime
from collections.abc import Callable, Iterator

import torch

from qstudio.core.environment import environment_info

#: torchvision models (random weights: nothing is downloaded) plus the bundled demo.
MODELS = ("demo", "resnet18", "mobilenet_v2", "resnet50")


def build_model(name: str) -> tuple[torch.nn.Module, list[int]]:
    """An FP32 model in eval mode and its input shape at batch 1."""
    from qstudio.core.loading import load_model
    from qstudio.core.recipe import ModelSource

    spec = "demo" if name == "demo" else f"torchvision:{name}"
    loaded = load_model(ModelSource(spec))
    shape = list(loaded.input_shape or [1, 3, 224, 224])
    if name != "demo":
        settle_batchnorm(loaded.module, shape)
    return loaded.module.eval(), shape


def settle_batchnorm(model: torch.nn.Module, shape: list[int], batches: int = 4, batch_size: int = 16) -> None:
    """Give a random-weight model realistic BatchNorm statistics (in place, then eval mode).

    torchvision initialises running_mean = 0 and running_var = 1, so with
    random weights nothing is normalised: mobilenet_v2's logits come out near
    1e-9, below the smallest scale an INT8 observer can represent, and every
    INT8 path then outputs zeros (cosine 0) while still being timed.  Running
    a few random batches in train mode with a cumulative average sets the
    statistics a trained model would have, so INT8 outputs are meaningful.
    Speed is unaffected; the weights stay random.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        model.eval()
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the settling batches
    model.train()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, *shape[1:], generator=gen))
    for m in norms:
        m.momentum = 0.1
    model.eval()


@contextlib.contextmanager
def engine(name: str) -> Iterator[None]:
    """Run with torch's quantized engine set to ``name`` (the kernels dispatch on it), then put it back."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def with_engine(name: str, fn: Callable):
    """``fn`` wrapped so every call runs on engine ``name`` (an onednn model must run on onednn)."""

    def call(x):
        with engine(name):
            return fn(x)

    return call


def bare_fx_ptq(
    model: torch.nn.Module, backend: str, calib: list[torch.Tensor], on_first_batch: Callable[[], None] | None = None
) -> torch.nn.Module:
    """The script from PyTorch's FX PTQ tutorial, as an expert writes it by hand: the peer qstudio is measured against.

    deepcopy, ``get_default_qconfig_mapping(backend)``, ``prepare_fx``, calibrate on ``calib``, ``convert_fx``.
    ``on_first_batch`` is called once the first calibration batch has run (memory is sampled there).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with engine(backend):
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping(backend), (calib[0][:1],))
        with torch.no_grad():
            for i, x in enumerate(calib):
                prepared(x)
                if i == 0 and on_first_batch is not None:
                    on_first_batch()
        return convert_fx(prepared)


def environment_lines() -> list[str]:
    env = environment_info()
    return [
        f"Measured {datetime.date.today().isoformat()} on {env['cpu']} ({env['cpu_count']} cores, "
        f"{env['cpu_capability']}, VNNI {env['vnni']}, AMX {env['amx']}), {env['os']}; "
        f"Python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
        f"default torch threads {env['threads']}.",
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
