"""The shipped demo: real digits, real weights, loaded the way the engine loads them (by file path).

These guard the files in resources/demo/ against a retrain or an edit that
breaks them: the splits keep their shapes and stay disjoint, the weights fit
``build()`` and still classify the eval split well.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo"
SIZES = {"train": 1197, "calib": 200, "eval": 400}
MIN_EVAL_TOP1 = 0.97  # the shipped weights reach 0.9925; a margin for CPU-kernel float noise


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"test_demo_{name}", DEMO / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data() -> ModuleType:
    return _load("data")


@pytest.fixture(scope="module")
def model_mod() -> ModuleType:
    return _load("model")


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((DEMO / "meta.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("split", list(SIZES))
def test_split_is_model_ready(data: ModuleType, split: str) -> None:
    x, y = data.load_split(split)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape) == (SIZES[split], 1, 32, 32) and tuple(y.shape) == (SIZES[split],)
    assert x.is_contiguous() and torch.isfinite(x).all()
    assert set(y.tolist()) == set(range(10))  # stratified: every class in every split


def test_train_split_is_standardised(data: ModuleType) -> None:
    x, _ = data.load_split("train")
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


def test_unknown_split_is_refused(data: ModuleType) -> None:
    with pytest.raises(ValueError, match="unknown demo split"):
        data.load_split("test")


def test_splits_are_disjoint(data: ModuleType) -> None:
    hashes = {}
    for split in SIZES:
        raw, _ = data.load_raw(split)
        assert raw.dtype == np.uint8 and raw.shape[1:] == (1, 8, 8) and raw.max() <= 16
        rows = {hashlib.sha256(img.tobytes()).hexdigest() for img in raw}
        assert len(rows) == len(raw), f"{split} holds duplicate images"
        hashes[split] = rows
    assert not hashes["train"] & hashes["calib"]
    assert not hashes["train"] & hashes["eval"]
    assert not hashes["calib"] & hashes["eval"]


def test_meta_describes_the_assets(meta: dict, data: ModuleType) -> None:
    assert meta["input_shape"] == [1, 1, 32, 32]
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["splits"] == SIZES
    assert meta["std"] > 0 and "load_digits" in meta["data_provenance"]
    assert meta["training"]["command"].endswith("train_demo.py")


def test_weights_fit_build_and_classify_eval(data: ModuleType, model_mod: ModuleType, meta: dict) -> None:
    model = model_mod.build()
    missing, unexpected = model.load_state_dict(load_file(str(DEMO / "digits_resnet.safetensors")), strict=True)
    assert not missing and not unexpected
    model.eval()
    x, y = data.load_split("eval")
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x.split(100)])
    top1 = float((pred == y).float().mean())
    assert top1 >= MIN_EVAL_TOP1
    assert abs(top1 - meta["eval_top1"]) <= 0.005  # meta.json tells the truth about these weights


def test_build_is_random_and_build_trained_loads_weights(data: ModuleType, model_mod: ModuleType) -> None:
    fresh, trained = model_mod.build(), model_mod.build_trained()
    assert not trained.training
    assert model_mod.build.input_shape == [1, 1, 32, 32]
    shipped = load_file(str(DEMO / "digits_resnet.safetensors"))
    assert torch.equal(trained.state_dict()["fc.weight"], shipped["fc.weight"])
    assert not torch.equal(fresh.state_dict()["fc.weight"], shipped["fc.weight"])
    x, y = data.load_split("calib")
    with torch.no_grad():
        assert float((trained(x).argmax(1) == y).float().mean()) >= MIN_EVAL_TOP1 - 0.02


def test_model_is_a_plain_user_model(model_mod: ModuleType) -> None:
    """No quantization helpers inside: the demo must take the same path as a user's model."""
    names = {type(m).__name__ for m in model_mod.build().modules()}
    assert "FloatFunctional" not in names and "QuantStub" not in names
    assert {"Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Linear"} <= names
