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
    return loaded.module.eval(), shape


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
