"""The demo model: a small residual CNN for the 8x8 UCI digits, upsampled to 32x32.

It is written the way an ordinary user writes a model (``nn.Conv2d`` +
``nn.BatchNorm2d`` + ``nn.ReLU``, residual ``out = out + identity``, no
``FloatFunctional``, no quant stubs) so the studio's demo exercises the same
path a real user model takes.

Why this size: at batch 1 a narrow convnet is dominated by per-op overhead and
INT8 barely beats FP32.  Stages of 64/128/256 channels at 32x32 (about
0.18 GMAC per image) make the convolutions dominate, which is where INT8
kernels pay off, and the net still trains in under three minutes on two CPU cores.

``build()`` returns the architecture with random init (the engine loads
``digits_resnet.safetensors`` into it); ``build_trained()`` loads those
weights itself, for the "factory returns a ready model" form.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 1, 32, 32)
WEIGHTS = Path(__file__).resolve().with_name("digits_resnet.safetensors")


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A bias-free conv and its BatchNorm (the bias would be folded into BN anyway)."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 Conv+BN, a projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class DigitsResNet(nn.Module):
    """Stem Conv+BN+ReLU, then one basic block per stage (32x32, 16x16, 8x8), pool, Linear."""

    def __init__(
        self, widths: tuple[int, ...] = (64, 128, 256), stem: int = 32, num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        conv, bn = conv_bn(1, stem)
        self.stem = nn.Sequential(conv, bn, nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        cin = stem
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(cin, width, stride=1 if i == 0 else 2))
            cin = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build() -> nn.Module:
    """The architecture with random init; the caller loads the shipped state_dict."""
    return DigitsResNet()


def build_trained() -> nn.Module:
    """The architecture with the shipped weights loaded, in eval mode."""
    from safetensors.torch import load_file

    model = DigitsResNet()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


# Input hints the studio reads from a factory (batch first), so no shape has to be typed in.
build.input_shape = list(INPUT_SHAPE)  # type: ignore[attr-defined]
build_trained.input_shape = list(INPUT_SHAPE)  # type: ignore[attr-defined]
