"""Small real models for the engine tests, written as users write them.

Each factory is a plain function, so tests load them through the same
``FILE.py:FUNC`` path a user's ``--factory`` takes.
"""

from __future__ import annotations

import torch
from torch import nn


class PlainCNN(nn.Module):
    """No residuals, no functional ops between modules: eager mode works on it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32, 32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.flatten(self.pool(x))
        return self.fc2(self.relu3(self.fc1(x)))


def plain_cnn() -> nn.Module:
    return PlainCNN()


plain_cnn.input_shape = [1, 1, 32, 32]  # type: ignore[attr-defined]


class Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.conv(x)
        return x


class GatedCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.gate = Gate()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.stem(x)))


def gated_cnn() -> nn.Module:
    return GatedCNN()


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 500, dim: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, 128, batch_first=True)
        self.fc = nn.Linear(128, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out[:, -1])


def lstm_classifier() -> nn.Module:
    torch.manual_seed(0)
    return LSTMClassifier()


lstm_classifier.input_shape = [1, 24]  # type: ignore[attr-defined]
lstm_classifier.input_dtype = "int64"  # type: ignore[attr-defined]


class SentenceEncoder(nn.Module):
    """A small sentence-embedding transformer: token ids in, mean-pooled normalised embedding out."""

    def __init__(self, vocab: int = 1000, dim: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, 64, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        h = self.encoder(h)
        return nn.functional.normalize(self.proj(h.mean(1)), dim=-1)


def sentence_encoder() -> nn.Module:
    torch.manual_seed(0)
    return SentenceEncoder()


sentence_encoder.input_shape = [1, 32]  # type: ignore[attr-defined]
sentence_encoder.input_dtype = "int64"  # type: ignore[attr-defined]


class Outlier(nn.Module):
    """fc1 puts one channel at 1e4, the rest near 1; fc2 ignores that channel: per-tensor INT8 loses all it reads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)
        with torch.no_grad():
            self.fc1.bias[0] = 1e4
            self.fc2.weight[:, 0] = 0

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def outlier() -> nn.Module:
    return Outlier()


outlier.input_shape = [1, 16]  # type: ignore[attr-defined]
