"""A user's own model.py, written into the test's folder: the model the loading tests load in every form.

A small residual CNN that imports a sibling module (which only works while its folder
is on sys.path), with factories for token models, half and double precision, and
factories that fail.  Import it as ``from user_model import ...``; the ``model_py``
fixture (conftest.py) writes it.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from qstudio.core.loading import load_model
from qstudio.core.recipe import ModelSource

# A small residual CNN, written into tmp_path as the user's model.py.  It imports a
# sibling module, which only works while its folder is on sys.path.
LAYERS_PY = """
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
"""


MODEL_PY = """
from pathlib import Path

import torch
from torch import nn

from qs_fixture_layers import Block


class Net(nn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def build():
    torch.manual_seed(0)
    return Net()


build.input_shape = [1, 1, 32, 32]


def build_wide():
    return Net(width=16)


def build_pretrained():
    net = Net()
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(Path(__file__).parent / "own_weights.safetensors")))
    return net


build_pretrained.input_shape = [1, 1, 32, 32]


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.fc = nn.Linear(16, 2)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


def build_tokens():
    return Tokens()


build_tokens.input_shape = [1, 12]
build_tokens.input_dtype = "int64"


def build_half():
    return Net().half()


def build_double():
    return Net().double()


def build_raises():
    raise ValueError("boom from the factory")


def build_int():
    return 42


def build_class():
    return Net
"""


X = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def write_model_py(folder: Path, body: str = MODEL_PY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qs_fixture_layers.py").write_text(LAYERS_PY)
    path = folder / "model.py"
    path.write_text(body)
    return path


def reference_net(model_py: Path) -> torch.nn.Module:
    """The fixture's Net, built through the loader, with weights changed away from the seed."""
    net = load_model(ModelSource(spec=f"{model_py}:build")).module
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        net.block.bn1.running_mean.uniform_(-0.5, 0.5)
    return net.eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor = X) -> bool:
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def save_pickled(obj: object, path: Path, fmt: str) -> Path:
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def script_save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path
