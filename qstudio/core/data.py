"""Calibration, training and evaluation data.

Inputs are whatever the model takes: float images or int64 token ids.  Every
source ends as one :class:`Dataset` (a tensor of inputs plus optional labels)
so the flows, the comparison and the benchmark never care where data came
from.  Random data is allowed but flagged so no result made with it can pass
for a real one.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qstudio.core import memory
from qstudio.core.errors import DataError
from qstudio.core.recipe import DataSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
RANDOM_SAMPLES = 64


@dataclass
class Dataset:
    """Model-ready inputs (first dimension = samples) and optional integer labels."""

    inputs: torch.Tensor
    labels: torch.Tensor | None
    description: str
    is_random: bool = False
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def batches(
        self, batch_size: int, max_batches: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self)
        count = math.ceil(n / batch_size)
        if max_batches is not None:
            count = min(count, max_batches)
        for i in range(count):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            yield self.inputs[sl], (self.labels[sl] if self.labels is not None else None)

    def num_batches(self, batch_size: int, max_batches: int | None = None) -> int:
        count = math.ceil(len(self) / batch_size)
        return min(count, max_batches) if max_batches is not None else count

    def sample(self, batch_size: int = 1) -> torch.Tensor:
        """The first ``batch_size`` inputs, repeated if the set is smaller."""
        x = self.inputs[:batch_size]
        if x.shape[0] < batch_size:
            reps = math.ceil(batch_size / x.shape[0])
            x = x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size]
        return x


def load_dataset(
    source: DataSource,
    *,
    input_shape: list[int] | None = None,
    input_dtype: str = "float32",
    vocab_size: int | None = None,
) -> Dataset:
    """Read ``source`` and check it fits a model taking ``input_shape``/``input_dtype``."""
    if source.kind == "demo":
        ds = _load_demo(source.split)
    elif source.kind == "random":
        ds = _random(input_shape, input_dtype, vocab_size, source.limit or RANDOM_SAMPLES)
    elif source.kind == "tensor":
        ds = _load_tensor_file(source)
    else:
        ds = _load_image_folder(source)
    if source.limit is not None and len(ds) > source.limit:
        ds.inputs = ds.inputs[: source.limit]
        if ds.labels is not None:
            ds.labels = ds.labels[: source.limit]
    _validate(ds, input_shape, input_dtype, vocab_size)
    return ds


# -- sources ----------------------------------------------------------------
def _load_demo(split: str) -> Dataset:
    from qstudio.core.paths import resources_dir

    path = resources_dir() / "demo" / "data.py"
    if not path.exists():
        raise DataError("the demo data is missing from this installation", "reinstall qstudio")
    spec = importlib.util.spec_from_file_location("qstudio_demo_data", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = mod.load_split(split)
    return Dataset(x, y, f"demo digits, {split} split ({len(x)} images)", class_names=[str(i) for i in range(10)])


def _random(shape: list[int] | None, dtype: str, vocab: int | None, n: int) -> Dataset:
    if shape is None:
        raise DataError(
            "random data needs an input shape",
            "pass --input-shape (e.g. 1,3,224,224) or use real data",
        )
    gen = torch.Generator().manual_seed(0)
    sample_shape = [n, *shape[1:]]
    need = math.prod(sample_shape) * (8 if dtype == "int64" else 4)
    room = memory.available_bytes()
    if room is not None and need > room * 0.8:
        per_sample = max(need // n, 1)
        raise DataError(
            f"{n} random samples of shape {list(shape[1:])} need {memory.format_bytes(need)}, "
            f"more than the {memory.format_bytes(room)} of memory available",
            f"ask for fewer samples (data.limit, at most about {max(int(room * 0.5) // per_sample, 1)})",
        )
    if dtype == "int64":
        x = torch.randint(0, vocab or 1000, sample_shape, generator=gen)
    else:
        x = torch.randn(sample_shape, generator=gen)
    return Dataset(x, None, f"RANDOM data {list(sample_shape)} (results are not meaningful)", is_random=True)


def _read_array(path: Path, what: str) -> torch.Tensor:
    if not path.exists():
        raise DataError(f"{what} file {path} does not exist", "check the path")
    if path.is_dir():
        raise DataError(
            f"{what} path {path} is a folder", "name a .npy or .pt file, or use --calib-data with an image folder"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.dtype.kind not in "biuf":
                raise DataError(f"{what} file {path} holds {arr.dtype} values", "save a numeric array")
            return torch.from_numpy(np.ascontiguousarray(arr))
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and len(obj) == 1:
                obj = next(iter(obj.values()))
            if not isinstance(obj, torch.Tensor):
                raise DataError(f"{what} file {path} does not hold a single tensor", "torch.save one tensor")
            return obj
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"cannot read {what} file {path} (permission denied)", "check the file's permissions") from None
    except Exception as exc:  # numpy/torch raise many types for corrupt files
        raise DataError(
            f"{what} file {path} is unreadable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "save it again with numpy.save or torch.save",
        ) from None
    raise DataError(f"{what} file {path} has an unknown type {suffix!r}", "use a .npy or .pt file, or an image folder")


def _load_tensor_file(source: DataSource) -> Dataset:
    assert source.path is not None
    x = _read_array(Path(source.path), "data")
    y = _read_array(Path(source.labels), "labels") if source.labels else None
    return Dataset(x, y, source.describe())


def _load_image_folder(source: DataSource) -> Dataset:
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    assert source.path is not None
    root = Path(source.path)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist", "check the path")
    if not root.is_dir():
        return _load_tensor_file(source)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files: list[tuple[Path, int | None]] = []
    if classes:
        for idx, name in enumerate(classes):
            files += [(p, idx) for p in sorted((root / name).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(p, None) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(
            f"image folder {root} holds no images",
            f"put {', '.join(sorted(IMAGE_SUFFIXES))} files in it, one sub-folder per class for labels",
        )
    if source.limit is not None:
        files = files[: source.limit]
    mean = source.mean or (None if source.grayscale else IMAGENET_MEAN)
    std = source.std or (None if source.grayscale else IMAGENET_STD)
    tensors = []
    for path, _ in files:
        try:
            with Image.open(path) as img:
                img = img.convert("L" if source.grayscale else "RGB")
                t = TF.pil_to_tensor(img).float() / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"image {path} is corrupt or unreadable ({exc})", "remove or replace that file") from None
        if source.resize:
            t = TF.resize(t, source.resize, antialias=True)
        if source.crop:
            t = TF.center_crop(t, source.crop)
        if mean is not None and std is not None:
            t = TF.normalize(t, mean, std)
        tensors.append(t)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise DataError(
            f"images in {root} have different sizes {sorted(shapes)[:3]}",
            "set resize and crop (e.g. --resize 256 --crop 224) so all images match",
        )
    labels = torch.tensor([c for _, c in files], dtype=torch.int64) if classes else None
    return Dataset(
        torch.stack(tensors), labels, source.describe() + f" ({len(files)} images)", class_names=classes or None
    )


# -- validation -------------------------------------------------------------
def _validate(ds: Dataset, shape: list[int] | None, dtype: str, vocab: int | None) -> None:
    x = ds.inputs
    if x.dim() == 0 or x.shape[0] == 0:
        raise DataError(f"{ds.description} is empty", "give at least one sample")
    if shape is not None and list(x.shape[1:]) != list(shape[1:]):
        raise DataError(
            f"{ds.description} has samples of shape {list(x.shape[1:])} but the model takes {list(shape[1:])}",
            "give data whose shape after the batch dimension matches the model input (or change --input-shape)",
        )
    if dtype == "int64":
        if x.is_floating_point() or x.is_complex():
            raise DataError(
                f"{ds.description} holds {x.dtype} values but the model takes integer token ids",
                "save the token ids as int64, or if the model takes float inputs set the input dtype to float32 "
                "(--input-dtype float32, or Settings > Input dtype)",
            )
        ds.inputs = x = x.to(torch.int64)
        if vocab is not None and (int(x.min()) < 0 or int(x.max()) >= vocab):
            raise DataError(
                f"{ds.description} has token ids outside 0..{vocab - 1}",
                "tokenize with the model's own tokenizer",
            )
    else:
        if not x.is_floating_point():
            raise DataError(
                f"{ds.description} holds {x.dtype} values but the model takes float32 inputs",
                "convert it to float32 with the model's normalisation; if these are token ids, set the input dtype "
                'to int64 (--input-dtype int64, Settings > Input dtype, or input_dtype = "int64" in the recipe)',
            )
        ds.inputs = x = x.to(torch.float32)
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise DataError(
                f"{ds.description} contains NaN or Inf values in {bad} samples", "clean the data before calibrating"
            )
    if ds.labels is not None:
        y = ds.labels
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"labels have shape {list(y.shape)} but there are {x.shape[0]} samples",
                "give one integer label per sample",
            )
        if y.is_floating_point():
            raise DataError("labels are floating point numbers", "save class indices as int64")
        ds.labels = y.to(torch.int64)
