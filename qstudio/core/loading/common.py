"""What every kind of source shares: the loaded model, path checks, read errors, a file's SHA-256."""

from __future__ import annotations

import hashlib
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from qstudio.core.errors import LoadError
from qstudio.core.recipe import ModelSource

KINDS = ("torchvision", "state_dict", "safetensors", "factory", "pickle", "torchscript")

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar", ".jit", ".ts")


@dataclass
class LoadedModel:
    """A model ready for inspection: eval mode, CPU, float32."""

    module: torch.nn.Module
    source: ModelSource
    kind: str
    name: str
    scripted: bool = False
    warnings: list[str] = field(default_factory=list)
    input_shape: list[int] | None = None
    input_dtype: str | None = "float32"  # None only inside loading: load_model fills it
    input_origin: str = ""  # where input_shape/input_dtype came from (see qstudio.core.inputs)
    shape_declared: bool = False  # the model's own code or metadata states the shape (data must match it)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content, as lowercase hex."""
    path = Path(path)
    check_path(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise read_error(path, exc) from None
    return digest.hexdigest()


def check_path(path: Path) -> None:
    """Refuse, naming the problem, a model path that is missing, a folder, not a regular file or empty."""
    try:
        exists = path.exists()
    except OSError as exc:
        raise read_error(path, exc) from None
    except ValueError:  # e.g. an embedded NUL character
        raise LoadError(f"{str(path)!r} is not a valid file name", "check the model path") from None
    if not exists:
        raise LoadError(f"model file {path} does not exist", _missing_hint(path))
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)[:5]
        inside = f" (it contains {', '.join(found)})" if found else ""
        raise LoadError(f"{path} is a folder, not a model file{inside}", "name the model file inside the folder")
    if not path.is_file():
        raise LoadError(f"{path} is not a regular file", "name a model file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise read_error(path, exc) from None
    if size == 0:
        raise LoadError(f"model file {path} is empty (0 bytes)", "save or download it again; the write was cut short")


def _missing_hint(path: Path) -> str:
    text = str(path)
    if not path.suffix and re.fullmatch(r"[A-Za-z0-9_]+", text):
        import torchvision

        if text.lower() in torchvision.models.list_models():
            return f"for the torchvision architecture write torchvision:{text.lower()}"
    return "check the path; relative paths start from the current folder " + repr(os.getcwd())


def read_error(path: Path, exc: OSError) -> LoadError:
    if isinstance(exc, PermissionError):
        return LoadError(f"cannot read {path} (permission denied)", "check the file's permissions")
    return LoadError(f"cannot read {path}: {exc.strerror or exc}", "check the file and the disk")


def open_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise read_error(path, exc) from None


def last_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    text = lines[-1].strip() if lines else type(exc).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
