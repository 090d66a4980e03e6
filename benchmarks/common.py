"""Shared by the benchmark scripts: the models, the machine description, markdown tables."""

from __future__ import annotations

import datetime

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
