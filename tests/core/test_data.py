"""Data sources: image folders, tensor files, demo, random; every bad input is a clear DataError."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_checks import QUICK, assert_clean, drive, zoo
from PIL import Image

from qstudio.core.data import load_dataset
from qstudio.core.errors import DataError
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.recipe import DataSource, Recipe


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder_with_classes_resize_crop_normalise(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = load_dataset(DataSource(kind="folder", path=str(root), resize=32, crop=24), input_shape=[1, 3, 24, 24])
    assert ds.inputs.shape == (6, 3, 24, 24) and ds.inputs.dtype == torch.float32
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.class_names == ["cat", "dog"]
    assert ds.inputs.mean().abs() < 1.5  # ImageNet normalisation applied


def test_image_folder_problems(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"broken\.png.*corrupt"):
        load_dataset(DataSource(kind="folder", path=str(root), resize=32, crop=24))
    mixed = make_folder(tmp_path / "mixed", classes=("a",))
    Image.new("RGB", (64, 64)).save(mixed / "a" / "big.png")
    with pytest.raises(DataError, match=r"different sizes.*resize"):
        load_dataset(DataSource(kind="folder", path=str(mixed)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset(DataSource(kind="folder", path=str(tmp_path / "empty")))


def test_tensor_files_and_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.random.rand(10, 1, 8, 8).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(10))
    ds = load_dataset(DataSource(kind="tensor", path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")),
                      input_shape=[1, 1, 8, 8])  # fmt: skip
    assert len(ds) == 10 and ds.labels.dtype == torch.int64
    torch.save(torch.randint(0, 50, (4, 12)), tmp_path / "ids.pt")
    ids = load_dataset(DataSource(kind="tensor", path=str(tmp_path / "ids.pt")), input_dtype="int64", vocab_size=50)
    assert ids.inputs.dtype == torch.int64


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.zeros((0, 1, 8, 8), np.float32), {}, "empty"),
        (np.zeros((4, 3, 8, 8), np.float32), {"input_shape": [1, 1, 8, 8]}, r"shape \[3, 8, 8\].*\[1, 8, 8\]"),
        (np.zeros((4, 1, 8, 8), np.int64), {}, "int64 values but the model takes float32"),
        (np.full((4, 1, 8, 8), np.nan, np.float32), {}, "NaN or Inf"),
        (np.full((4, 8), 1.5, np.float32), {"input_dtype": "int64"}, "token ids"),
        (np.full((4, 8), 99, np.int64), {"input_dtype": "int64", "vocab_size": 50}, "outside 0..49"),
    ],
)
def test_bad_tensors(tmp_path, x, kwargs, match):
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=match) as err:
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "x.npy")), **kwargs)
    assert "Fix:" in str(err.value)


def test_bad_files_and_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    with pytest.raises(DataError, match="one integer label per sample"):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable"):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "junk.npy")))
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match="numeric"):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "obj.npy")))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "none.npy")))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unknown type"):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "x.csv")))


def test_pickled_tensor_file_is_not_unpickled(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "x.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError):
        load_dataset(DataSource(kind="tensor", path=str(tmp_path / "x.pt")))
    assert not (tmp_path / "pwned").exists()


def test_random_is_flagged_and_demo_is_real():
    ds = load_dataset(DataSource(kind="random", limit=8), input_shape=[1, 3, 16, 16])
    assert ds.is_random and "RANDOM" in ds.description and ds.inputs.shape == (8, 3, 16, 16)
    with pytest.raises(DataError, match="input shape"):
        load_dataset(DataSource(kind="random"))
    demo = load_dataset(DataSource(kind="demo", split="eval"))
    assert not demo.is_random and demo.labels is not None and len(demo) == 400


# --------------------------------------------------------------------------- bad data stops a run before its first batch


@pytest.mark.parametrize(
    ("x", "named"),
    [
        (np.zeros((0, 1, 32, 32), np.float32), "empty"),
        (np.zeros((4, 1, 28, 28), np.float32), "shape [1, 28, 28]"),
        (np.zeros((4, 1, 32, 32), np.uint8), "uint8 values"),
        (np.where(np.arange(4 * 1024).reshape(4, 1, 32, 32) == 5, np.inf, 0).astype(np.float32), "NaN or Inf"),
        (np.where(np.arange(4 * 1024).reshape(4, 1, 32, 32) == 9, -np.inf, 0).astype(np.float32), "in 1 samples"),
        (np.full((4, 1, 32, 32), np.nan, np.float32), "in 4 samples"),
    ],
    ids=["empty", "wrong-shape", "wrong-dtype", "inf", "minus-inf", "nan"],
)
def test_bad_calibration_data_stops_the_run_before_calibrating(tmp_path: Path, x: np.ndarray, named: str) -> None:
    np.save(tmp_path / "x.npy", x)
    loaded = load_model(zoo("plain_cnn"))
    recipe = Recipe(mode="fx", calib=DataSource(kind="tensor", path=str(tmp_path / "x.npy")), benchmark=QUICK)
    with pytest.raises(DataError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, named)
    assert info.value.seen == []  # nothing ran: data is checked before the first step


def test_labels_of_the_wrong_length_and_a_corrupt_image_stop_the_run(tmp_path: Path) -> None:
    loaded = load_model(zoo("plain_cnn"))
    np.save(tmp_path / "x.npy", np.zeros((6, 1, 32, 32), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(5, np.int64))
    labeled = DataSource(kind="tensor", path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    with pytest.raises(DataError) as info:
        drive(run_recipe(Recipe(mode="fx", calib=labeled, benchmark=QUICK), loaded))
    assert_clean(info.value, "labels have shape [5]", "6 samples", fix_words=("one integer label per sample",))

    from PIL import Image

    images = tmp_path / "imgs" / "cat"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (32, 32), color=i * 40).save(images / f"{i}.png")
    (images / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))  # a PNG signature, then garbage
    folder = DataSource(kind="folder", path=str(tmp_path / "imgs"), grayscale=True)
    with pytest.raises(DataError) as info:
        drive(run_recipe(Recipe(mode="fx", calib=folder, benchmark=QUICK), loaded))
    assert_clean(info.value, "3.png", "corrupt", fix_words=("remove or replace",))
    assert info.value.seen == []
