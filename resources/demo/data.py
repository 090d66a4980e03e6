"""The demo data: real hand-written digits, shipped raw and made model-ready on load.

The images are the UCI ML hand-written digits as bundled in scikit-learn
(``sklearn.datasets.load_digits``: 1797 8x8 images, pixel counts 0..16, 10
classes).  ``train_demo.py`` split them once (stratified, fixed seed) and saved
each split raw as uint8 ``digits_<split>_x.npy`` (N, 1, 8, 8) plus int64
``digits_<split>_y.npy`` (N,).  Raw storage keeps the shipped data at about
130 KB instead of 7 MB of float32 32x32 images, and the preprocessing below
is a few lines that anyone can read.

The engine imports this file by path (it must stay self-contained: numpy,
torch and the files beside it) and calls :func:`load_split`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SPLITS = ("train", "calib", "eval")
IMAGE_SIZE = 32
PIXEL_MAX = 16.0  # load_digits pixels count "on" pixels in a 4x4 block: 0..16


def load_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The stored split: uint8 images (N, 1, 8, 8) and int64 labels (N,)."""
    if split not in SPLITS:
        raise ValueError(f"unknown demo split {split!r}; expected one of {', '.join(SPLITS)}")
    x = np.load(HERE / f"digits_{split}_x.npy", allow_pickle=False)
    y = np.load(HERE / f"digits_{split}_y.npy", allow_pickle=False)
    return x, y


def normalisation() -> tuple[float, float]:
    """Mean and std of the train split after upsampling and /16, as recorded in meta.json."""
    meta = json.loads((HERE / "meta.json").read_text(encoding="utf-8"))
    return float(meta["mean"]), float(meta["std"])


def upsample(raw: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Raw 0..16 pixels (N, 1, 8, 8) -> float32 0..1 images (N, 1, 32, 32), bilinear."""
    x = torch.as_tensor(raw).to(torch.float32) / PIXEL_MAX
    return F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)


def preprocess(raw: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """The model's whole input pipeline: upsample to 32x32, scale to 0..1, standardise."""
    return ((upsample(raw) - mean) / std).contiguous()


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-ready float32 inputs (N, 1, 32, 32) and int64 labels (N,) for ``split``."""
    raw, labels = load_raw(split)
    mean, std = normalisation()
    return preprocess(raw, mean, std), torch.from_numpy(labels.astype(np.int64))
