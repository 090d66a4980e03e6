"""Turn a :class:`ModelSource` into a float32 ``nn.Module`` in eval mode on the CPU.

Forms of ``source.spec``:

* ``torchvision:NAME``: a torchvision architecture, built with ``weights=None``;
* ``demo``: the shipped digits model (a factory plus ``.safetensors`` weights);
* ``path/to/model.py:function``: a factory that builds the model and loads its
  own weights;
* a weights file (``.pt``/``.pth``/``.bin`` state_dict or ``.safetensors``) with
  ``source.factory`` naming the factory that builds the empty model;
* a pickled module (``torch.save(model)``) or a TorchScript file.

Security: a pickled module or a TorchScript file is code.  Neither is ever
deserialised unless the user trusted that exact file (``trust=True``, or
``source.trusted_sha256`` equal to the file's SHA-256).  Everything else is
read with ``torch.load(weights_only=True)`` (passed explicitly, so
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override it; a probe checks that
this holds before any untrusted file is opened) or with safetensors, neither
of which can run code.  Files that need trust are read into memory once, and
exactly the bytes that were hashed are the bytes that get loaded.

A factory ``.py`` file is code too, by design: the user names it to run it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import hashlib
import importlib.util
import io
import os
import pickle
import pickletools
import re
import struct
import sys
import threading
import traceback
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.recipe import INPUT_DTYPES, ModelSource

KINDS = ("torchvision", "state_dict", "safetensors", "factory", "pickle", "torchscript")

_TRUST_FIX = (
    "re-save it as a state_dict (torch.save(model.state_dict(), path)) or a .safetensors file and load it "
    "with its factory (model.py:function); or, only if you trust who made this file, pass --trust on the "
    "command line or confirm trust in the window"
)
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar", ".jit", ".ts")
_MAX_SCAN_BYTES = 256 * 1024 * 1024
_FACTORY_RE = re.compile(r"^(?P<file>.+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


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


#: Factory path -> SHA-256 the user agreed to run, for the load in progress on this thread (see load_model).
_EXPECTED_CODE: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("expected_code", default=None)

# --------------------------------------------------------------------------- public API


def load_model(
    source: ModelSource, *, trust: bool = False, expected_code: Mapping[str, str] | None = None
) -> LoadedModel:
    """Load the model ``source`` describes; raise :class:`LoadError` for anything the user can fix.

    ``trust=True`` allows deserialising code (a pickled module or TorchScript)
    from the file ``source.spec`` names; the returned ``source`` then carries
    that file's ``trusted_sha256`` so a saved recipe replays the trust only for
    the identical file.

    ``expected_code`` maps resolved factory paths to the SHA-256 the user
    agreed to run (the window asks before a recipe imports Python).  A factory
    whose bytes differ when they are read for import is refused, so a file
    swapped between the question and the import never runs.
    """
    token = _EXPECTED_CODE.set(dict(expected_code) if expected_code is not None else None)
    try:
        loaded = _load_model(source, trust)
    finally:
        _EXPECTED_CODE.reset(token)
    return _complete_input(loaded)


#: what each kind of source says about the input, for LoadedModel.input_origin
_ORIGINS = {
    "torchvision": "torchvision's documented input size",
    "factory": "the factory's input_shape attribute",
    "state_dict": "the factory's input_shape attribute",
    "safetensors": "the factory's input_shape attribute",
}


def _complete_input(loaded: LoadedModel) -> LoadedModel:
    """Fill the input shape and dtype the source did not give from the model itself (see qstudio.core.inputs)."""
    from qstudio.core.inputs import guess_input

    if loaded.scripted:
        loaded.input_origin = "TorchScript files do not say their input: set the input shape"
        loaded.input_dtype = loaded.input_dtype or "float32"
        return loaded
    origin = "the demo's metadata" if loaded.name == "demo" else _ORIGINS.get(loaded.kind, "")
    loaded.shape_declared = loaded.input_shape is not None and loaded.kind != "torchvision"
    guess = guess_input(loaded.module, loaded.input_shape, loaded.input_dtype, origin)
    loaded.input_shape, loaded.input_dtype, loaded.input_origin = guess.shape, guess.dtype, guess.origin
    return loaded


def _load_model(source: ModelSource, trust: bool) -> LoadedModel:
    spec = source.spec.strip()
    warns: list[str] = []
    if spec.lower() == "demo":
        return _load_demo(source, warns)
    if spec.lower().startswith("torchvision:"):
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: torchvision models build themselves")
        return _load_torchvision(source, spec.split(":", 1)[1].strip(), warns)
    parsed = _parse_factory(spec)
    if parsed is not None:
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: the spec is already a factory")
        module, info = _build_from_factory(spec)
        module = _finalize(module, warns)
        return LoadedModel(module, source, "factory", info.name, False, warns, info.input_shape, info.input_dtype)
    if spec.endswith(".py"):
        raise LoadError(
            f"{spec} is a Python file but names no function",
            f"add the function that builds the model after a colon, e.g. {spec}:build",
        )
    return _load_file(Path(spec).expanduser(), source, trust, warns)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content, as lowercase hex."""
    path = Path(path)
    _check_path(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise _read_error(path, exc) from None
    return digest.hexdigest()


# --------------------------------------------------------------------------- torchvision and demo


def _load_torchvision(source: ModelSource, name: str, warns: list[str]) -> LoadedModel:
    module, shape = _torchvision_model(name)
    module = _finalize(module, warns)
    return LoadedModel(module, source, "torchvision", name.lower(), False, warns, shape, None)


def _torchvision_model(name: str) -> tuple[torch.nn.Module, list[int] | None]:
    import torchvision

    known = torchvision.models.list_models()
    if name.lower() not in known:
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise LoadError(
            f"torchvision has no model named {name!r}",
            f"{hint}see python -c 'import torchvision; print(torchvision.models.list_models())' for all names",
        )
    try:
        module = torchvision.models.get_model(name.lower(), weights=None)
    except Exception as exc:
        raise LoadError(
            f"torchvision could not build {name!r}: {_last_line(exc)}",
            "choose another torchvision model",
            details=_format_tb(exc),
        ) from None
    return module, _torchvision_input_shape(name.lower())


def _torchvision_input_shape(name: str) -> list[int] | None:
    import torchvision

    models = torchvision.models
    if name in models.list_models(module=models):
        side = 299 if name == "inception_v3" else 224
        return [1, 3, side, side]
    if name in models.list_models(module=models.quantization):
        side = 299 if "inception" in name else 224
        return [1, 3, side, side]
    if name in models.list_models(module=models.segmentation):
        return [1, 3, 520, 520]
    if name in models.list_models(module=models.video):
        return [1, 3, 16, 112, 112]
    return None  # detection and optical flow take lists or pairs of images


def _load_demo(source: ModelSource, warns: list[str]) -> LoadedModel:
    from qstudio.core.paths import resources_dir

    folder = resources_dir() / "demo"
    factory = folder / "model.py"
    weights = folder / "digits_resnet.safetensors"
    for needed in (factory, weights):
        if not needed.is_file():
            raise LoadError(
                f"the demo model file {needed} is missing",
                "reinstall qstudio, or load your own model instead of the demo",
            )
    module, info = _build_from_factory(f"{factory}:build")
    state = _read_safetensors(weights)
    _note_half(state, weights.name, warns)
    _apply_state_dict(module, state, weights.name, info.spec, warns)
    module = _finalize(module, warns)
    shape, dtype = info.input_shape, info.input_dtype
    if shape is None:  # build() carries no hint: fall back to the demo's meta.json
        shape, dtype = _demo_meta_hint(folder / "meta.json", dtype)
    return LoadedModel(module, source, "safetensors", "demo", False, warns, shape, dtype)


def _demo_meta_hint(meta_path: Path, dtype: str) -> tuple[list[int] | None, str]:
    import json

    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = meta.get("input_shape")
        dtype = meta.get("input_dtype", dtype)
    except (OSError, ValueError, AttributeError):
        return None, dtype
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        shape = None
    return shape, dtype if dtype in INPUT_DTYPES else "float32"


# --------------------------------------------------------------------------- factories


@dataclass
class _FactoryInfo:
    spec: str
    name: str
    input_shape: list[int] | None
    input_dtype: str | None  # None: the factory does not say


_factory_lock = threading.RLock()


def _parse_factory(spec: str) -> tuple[Path, str] | None:
    match = _FACTORY_RE.match(spec.strip())
    if match is None:
        return None
    return Path(match["file"]).expanduser(), match["func"]


@contextlib.contextmanager
def _folder_on_sys_path(folder: Path) -> Iterator[None]:
    saved = list(sys.path)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path[:] = saved


def _build_from_factory(spec: str) -> tuple[torch.nn.Module, _FactoryInfo]:
    """Import ``file.py`` under a unique module name and call ``function()``; or build ``torchvision:NAME``."""
    if spec.strip().lower().startswith("torchvision:"):
        name = spec.split(":", 1)[1].strip()
        module, shape = _torchvision_model(name)
        return module, _FactoryInfo(spec, name.lower(), shape, "float32")
    parsed = _parse_factory(spec)
    if parsed is None:
        raise LoadError(
            f"factory {spec!r} is not of the form path/to/model.py:function",
            "name the Python file and the function that builds the model, e.g. model.py:build",
        )
    path, func_name = parsed
    label = f"{path.name}:{func_name}"
    try:
        path.exists()
    except (OSError, ValueError):
        raise LoadError(f"factory path {str(path)!r} is not a valid file name", "check the path") from None
    if not path.exists():
        raise LoadError(f"factory file {path} does not exist", "check the path before the colon")
    if not path.is_file():
        raise LoadError(f"factory {path} is a folder, not a Python file", "name the .py file that builds the model")
    try:
        source_bytes = path.read_bytes()
    except OSError as exc:
        raise _read_error(path, exc) from None

    resolved = path.resolve()
    expected = (_EXPECTED_CODE.get() or {}).get(str(resolved))
    if expected is not None and hashlib.sha256(source_bytes).hexdigest() != expected.lower():
        raise LoadError(
            f"factory file {path} changed after you agreed to run it; it was not run",
            "open the recipe again to review the new version",
        )
    mod_name = "_qstudio_factory_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    with _factory_lock, _folder_on_sys_path(resolved.parent):
        module_spec = importlib.util.spec_from_file_location(mod_name, resolved)
        if module_spec is None:
            raise LoadError(f"cannot import {path}", "name a .py file")
        py_module = importlib.util.module_from_spec(module_spec)
        try:
            # Compile ourselves instead of loader.exec_module: no __pycache__ is
            # written next to the user's file and an edit is never masked by a
            # stale cached bytecode file.
            code = compile(source_bytes, str(resolved), "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
            raise LoadError(
                f"factory file {path} is not valid Python{where}: {_last_line(exc)}",
                "fix the file, or name the right .py file",
            ) from None
        previous = sys.modules.get(mod_name)
        sys.modules[mod_name] = py_module  # dataclasses, pickling and fx look classes up here
        try:
            exec(code, py_module.__dict__)
        except (Exception, SystemExit) as exc:
            if previous is not None:
                sys.modules[mod_name] = previous
            else:
                sys.modules.pop(mod_name, None)
            raise LoadError(
                f"importing factory file {path} failed: {_last_line(exc)}",
                "fix the error in that file (run it with python to see the full traceback)",
                details=_format_tb(exc),
            ) from None

        fn: Any = py_module
        for part in func_name.split("."):
            fn = getattr(fn, part, None)
            if fn is None:
                available = sorted(
                    n
                    for n, v in vars(py_module).items()
                    if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod_name
                )
                listed = f"; it defines {', '.join(available[:8])}" if available else ""
                raise LoadError(
                    f"factory file {path} has no function {func_name!r}{listed}",
                    "name the function that builds the model after the colon",
                )
        if not callable(fn):
            raise LoadError(
                f"{label} is a {type(fn).__name__}, not a function",
                "name a function (or class) that returns the model",
            )
        try:
            built = fn()
        except (Exception, SystemExit) as exc:
            raise LoadError(
                f"factory {label} raised {_last_line(exc)}",
                "fix the factory; it must build the model when called with no arguments",
                details=_format_tb(exc),
            ) from None

    if isinstance(built, type) and issubclass(built, torch.nn.Module):
        raise LoadError(
            f"factory {label} returned the class {built.__name__}, not a model",
            f"return an instance: {built.__name__}(...)",
        )
    if not isinstance(built, torch.nn.Module):
        raise LoadError(
            f"factory {label} returned a {type(built).__name__}, not a torch.nn.Module",
            "make the function return the model (an nn.Module instance)",
        )
    shape, dtype = _factory_input_hint(fn, label)
    return built, _FactoryInfo(spec, label, shape, dtype)


def _factory_input_hint(fn: Any, label: str) -> tuple[list[int] | None, str | None]:
    shape = getattr(fn, "input_shape", None)
    dtype = getattr(fn, "input_dtype", None)
    if shape is not None:
        shape_ok = isinstance(shape, (list, tuple)) and bool(shape)
        shape_ok = shape_ok and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        if not shape_ok:
            raise LoadError(
                f"{label}.input_shape = {shape!r} is invalid",
                "give positive integers with the batch first, e.g. build.input_shape = [1, 3, 224, 224]",
            )
        shape = list(shape)
    if dtype is not None and dtype not in INPUT_DTYPES:
        raise LoadError(
            f"{label}.input_dtype = {dtype!r} is invalid",
            f"use one of: {', '.join(INPUT_DTYPES)}",
        )
    return shape, dtype


# --------------------------------------------------------------------------- files


class _NeedsTrust(Exception):
    """Internal: the file can only be loaded by running code it contains."""

    def __init__(self, what: str, fix: str = _TRUST_FIX) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def _check_path(path: Path) -> None:
    try:
        exists = path.exists()
    except OSError as exc:
        raise _read_error(path, exc) from None
    except ValueError:  # e.g. an embedded NUL character
        raise LoadError(f"{str(path)!r} is not a valid file name", "check the model path") from None
    if not exists:
        raise LoadError(f"model file {path} does not exist", _missing_hint(path))
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _WEIGHT_SUFFIXES)[:5]
        inside = f" (it contains {', '.join(found)})" if found else ""
        raise LoadError(f"{path} is a folder, not a model file{inside}", "name the model file inside the folder")
    if not path.is_file():
        raise LoadError(f"{path} is not a regular file", "name a model file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _read_error(path, exc) from None
    if size == 0:
        raise LoadError(f"model file {path} is empty (0 bytes)", "save or download it again; the write was cut short")


def _missing_hint(path: Path) -> str:
    text = str(path)
    if not path.suffix and re.fullmatch(r"[A-Za-z0-9_]+", text):
        import torchvision

        if text.lower() in torchvision.models.list_models():
            return f"for the torchvision architecture write torchvision:{text.lower()}"
    return "check the path; relative paths start from the current folder " + repr(os.getcwd())


def _read_error(path: Path, exc: OSError) -> LoadError:
    if isinstance(exc, PermissionError):
        return LoadError(f"cannot read {path} (permission denied)", "check the file's permissions")
    return LoadError(f"cannot read {path}: {exc.strerror or exc}", "check the file and the disk")


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise _read_error(path, exc) from None


def _sniff(fh: BinaryIO, label: str) -> str:
    """Classify a file by content: torchscript, torch_zip, safetensors or pickle."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(16)
    fh.seek(0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(fh) as zf:
                names = zf.namelist()
        except Exception as exc:
            raise LoadError(
                f"{label} is a damaged or truncated zip archive ({_last_line(exc)})",
                "save or download the file again",
            ) from None
        finally:
            fh.seek(0)
        inner = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
            return "torchscript"
        if "data.pkl" in inner:
            return "torch_zip"
        raise LoadError(
            f"{label} is a zip archive but not a PyTorch file (no data.pkl inside)",
            "name a file saved with torch.save, torch.jit.save or safetensors",
        )
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= min(size - 8, 100 * 1024 * 1024) and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    what = (
        "not a valid safetensors file"
        if label.endswith(".safetensors")
        else ("not a PyTorch, safetensors or TorchScript file")
    )
    raise LoadError(
        f"{label} is {what}",
        "name a .pt/.pth/.bin file saved with torch.save, a .safetensors file or a TorchScript file",
    )


def _load_file(path: Path, source: ModelSource, trust: bool, warns: list[str]) -> LoadedModel:
    _check_path(path)
    label = path.name
    with _open(path) as fh:
        fmt = _sniff(fh, label)
    try:
        if fmt == "torchscript":
            raise _NeedsTrust("a TorchScript program, and loading it runs code it contains")
        if fmt == "safetensors":
            state = _read_safetensors(path)
            kind = "safetensors"
        else:
            obj = _safe_torch_load(path, fmt)
            if isinstance(obj, torch.nn.Module):  # only if someone allow-listed its classes
                module = _finalize(obj, warns)
                return LoadedModel(module, source, "pickle", label, False, warns, None, None)
            state = _extract_state_dict(obj, label, warns)
            kind = "state_dict"
    except _NeedsTrust as need:
        return _load_code_file(path, source, trust, need, warns)
    return _from_state_dict(path, source, state, kind, warns)


def _from_state_dict(
    path: Path, source: ModelSource, state: dict[str, Any], kind: str, warns: list[str]
) -> LoadedModel:
    label = path.name
    if not source.factory:
        raise LoadError(
            f"{label} holds only weights (a state_dict of {len(state)} entries), not the code that builds the model",
            "give the factory that builds it: --factory path/to/model.py:function, or model.factory in the recipe",
        )
    module, info = _build_from_factory(source.factory)
    _note_half(state, label, warns)
    _apply_state_dict(module, state, label, info.spec, warns)
    module = _finalize(module, warns)
    return LoadedModel(module, source, kind, label, False, warns, info.input_shape, info.input_dtype)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise LoadError(
            f"{path.name} is not a readable safetensors file ({reason})",
            "save or download it again",
        ) from None


# -- safe torch.load ----------------------------------------------------------------


def _probe_target() -> str:
    """What the probe pickle calls if a loader lets it through: nothing happens."""
    return "qstudio weights-only probe"


class _Probe:
    """Pickles as a call to :func:`_probe_target`, which any working weights-only loader refuses."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_probe_target, ())


_probe_results: dict[tuple[Any, ...], str | None] = {}


def _weights_only_problem() -> str | None:
    """Prove that ``torch.load(weights_only=True)`` refuses globals here; return why not, or None.

    torch 2.14 honours an explicit ``weights_only=True`` even when
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set (that variable only changes
    the default), but that is an implementation detail of one version: check
    it instead of trusting it.  Cached per relevant environment.
    """
    key = (
        os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
        os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"),
        tuple(map(id, torch.serialization.get_safe_globals())),
    )
    if key in _probe_results:
        return _probe_results[key]
    buf = io.BytesIO()
    torch.save(_Probe(), buf)
    buf.seek(0)
    problem: str | None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(buf, map_location="cpu", weights_only=True)
        problem = "torch.load(weights_only=True) accepted a pickled function call in this environment"
    except pickle.UnpicklingError:
        problem = None
    except Exception as exc:
        problem = f"the weights-only self-check failed: {_last_line(exc)}"
    _probe_results[key] = problem
    return problem


def _safe_torch_load(path: Path, fmt: str) -> Any:
    problem = _weights_only_problem()
    if problem is not None:
        raise _NeedsTrust(
            f"a file qstudio cannot open safely: PyTorch's weights-only mode is not in force here ({problem})",
            "unset TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (and anything else that disables weights_only); or, only if "
            "you trust who made this file, pass --trust on the command line or confirm trust in the window",
        )
    label = path.name
    if fmt == "torch_zip":
        _check_zip_crc(path, label)
    try:
        # A file object, not the path: torch.load dispatches on the file name
        # (a path ending in .safetensors goes to safetensors), we dispatch on content.
        with _open(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = _unsafe_globals(path, fmt)
        if unsafe:
            shown = ", ".join(unsafe[:5]) + (", ..." if len(unsafe) > 5 else "")
            raise _NeedsTrust(
                f"a pickled Python object, and unpickling it can run arbitrary code (it uses {shown})"
            ) from None
        raise LoadError(
            f"{label} is damaged or not a PyTorch file ({_torch_reason(exc)})",
            "save or download the file again; if it was saved by other software, re-save it with torch.save",
        ) from None
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(
            f"{label} is damaged or not a PyTorch file ({_last_line(exc)})",
            "save or download the file again",
        ) from None


def _check_zip_crc(path: Path, label: str) -> None:
    """Refuse a torch.save zip whose entries do not match their CRC-32.

    torch.load does not check the checksums, so a flipped byte inside a tensor
    record would load silently as a wrong weight.  One streaming pass over the
    file; nothing in it is interpreted.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # zipfile raises BadZipFile, EOFError, ValueError, OSError, ...
        raise LoadError(
            f"{label} is a damaged or truncated zip archive ({_last_line(exc)})",
            "save or download the file again",
        ) from None
    if bad is not None:
        raise LoadError(
            f"{label} is damaged: the entry {bad.split('/', 1)[-1]!r} does not match its checksum",
            "save or download the file again",
        )


def _torch_reason(exc: BaseException) -> str:
    """The useful part of torch's long weights-only message (never its advice to set weights_only=False)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    else:
        text = text.split("In PyTorch 2.6", 1)[0] if not text.startswith("In PyTorch") else ""
    text = " ".join(text.split())
    return (text or type(exc).__name__)[:300]


def _allowed_globals() -> set[str]:
    allowed: set[str] = set()
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except Exception:  # private API moved: show every global that is not torch's own
        pass
    for item in torch.serialization.get_safe_globals():
        obj = item[0] if isinstance(item, tuple) else item
        allowed.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    return allowed


_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}
_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _pickle_globals(data: bytes, max_pickles: int = 6) -> list[str]:
    """Statically list the globals (classes, functions) the pickles in ``data`` import; nothing is executed."""
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(max_pickles):
        if stream.tell() >= len(data):
            break
        memo: dict[int, Any] = {}
        recent: list[Any] = []
        last: Any = None
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.append(f"{_RENAMED_MODULES.get(module, module)}.{attr}")
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                        found.append(f"{_RENAMED_MODULES.get(recent[-2], recent[-2])}.{recent[-1]}")
                    else:
                        found.append("<a dynamically named global>")
                if name in _STRING_OPS:
                    last = arg
                    recent.append(arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = last
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    last = memo.get(arg)
                    recent.append(last)
                else:
                    last = None
        except Exception:  # damaged or not a pickle: report what was seen so far
            break
    return found


def _unsafe_globals(path: Path, fmt: str) -> list[str]:
    """Globals in the file's pickle that the weights-only loader refuses, in order of first use."""
    try:
        if fmt == "torch_zip":
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n.split("/", 1)[-1] == "data.pkl")
                if zf.getinfo(name).file_size > _MAX_SCAN_BYTES:
                    return []
                data = zf.read(name)
        else:
            with _open(path) as fh:
                data = fh.read(_MAX_SCAN_BYTES)
    except Exception:
        return []
    allowed = _allowed_globals()
    unsafe: list[str] = []
    for name in _pickle_globals(data):
        if name not in allowed and name not in unsafe:
            unsafe.append(name)
    return unsafe


# -- files that are code -------------------------------------------------------------


def _load_code_file(path: Path, source: ModelSource, trust: bool, need: _NeedsTrust, warns: list[str]) -> LoadedModel:
    label = path.name
    try:
        data = path.read_bytes()  # hash and load the very same bytes
    except OSError as exc:
        raise _read_error(path, exc) from None
    sha = hashlib.sha256(data).hexdigest()
    recorded = (source.trusted_sha256 or "").strip().lower()
    if not (trust or recorded == sha):
        problem = f"{label} is {need.what}"
        if recorded:
            problem += "; it was trusted before, but the file has changed since, so that trust no longer applies"
        raise UntrustedFileError(problem, need.fix)
    trusted_source = dataclasses.replace(source, trusted_sha256=sha)
    fmt = _sniff(io.BytesIO(data), label)  # the bytes we hashed, not whatever the path holds now
    if fmt == "safetensors":
        raise LoadError(f"{label} changed while it was being loaded", "load it again")
    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:
            raise LoadError(
                f"{label} is a TorchScript file that could not be loaded: {_last_line(exc)}",
                "save it again with torch.jit.save from a matching PyTorch version",
                details=_format_tb(exc),
            ) from None
        if source.factory:
            warns.append(f"model.factory {source.factory!r} ignored: {label} contains the whole model")
        module = _finalize(module, warns)
        return LoadedModel(module, trusted_source, "torchscript", label, True, warns, None, None)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except pickle.UnpicklingError as exc:
        if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
            raise LoadError(
                f"{label} is trusted, but TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which stops PyTorch from loading "
                "pickled models",
                "unset TORCH_FORCE_WEIGHTS_ONLY_LOAD, or re-save the model as a state_dict with its factory",
            ) from None
        raise LoadError(
            f"{label} could not be unpickled: {_torch_reason(exc)}",
            "save the file again",
        ) from None
    except (ImportError, AttributeError) as exc:
        raise LoadError(
            f"{label} is a pickled model whose Python code cannot be found: {_last_line(exc)}",
            "run qstudio where that code is importable (e.g. add its folder to PYTHONPATH), or re-save the "
            "model as a state_dict and load it with its factory",
            details=_format_tb(exc),
        ) from None
    except Exception as exc:
        raise LoadError(
            f"{label} could not be loaded: {_last_line(exc)}",
            "save the file again, or re-save the model as a state_dict and load it with its factory",
            details=_format_tb(exc),
        ) from None

    if isinstance(obj, Mapping) and not isinstance(obj, torch.nn.Module):
        for key in ("model", "module", "net"):
            if isinstance(obj.get(key), torch.nn.Module):
                warns.append(f"used the model stored under the key {key!r} of the checkpoint")
                obj = obj[key]
                break
    if not isinstance(obj, torch.nn.Module) and (_is_state_dict(obj) or isinstance(obj, Mapping)):
        # a trusted checkpoint whose extras (optimizer, args, ...) needed pickle: use its weights
        state = _extract_state_dict(obj, label, warns)
        return _from_state_dict(path, source, state, "state_dict", warns)
    if not isinstance(obj, torch.nn.Module):
        raise LoadError(
            f"{label} holds a {type(obj).__name__}, not a torch.nn.Module",
            "save the whole model (torch.save(model)) or its state_dict plus a factory",
        )
    if source.factory:
        warns.append(f"model.factory {source.factory!r} ignored: {label} contains the whole model")
    kind = "torchscript" if isinstance(obj, torch.jit.ScriptModule) else "pickle"
    module = _finalize(obj, warns)
    return LoadedModel(module, trusted_source, kind, label, kind == "torchscript", warns, None, None)


# --------------------------------------------------------------------------- state dicts


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    has_tensor = False
    for key, value in obj.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, torch.Tensor):
            has_tensor = True
        elif not key.endswith("_extra_state"):
            return False
    return has_tensor


def _extract_state_dict(obj: Any, label: str, warns: list[str]) -> dict[str, Any]:
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                if key not in ("state_dict", "model_state_dict"):
                    warns.append(f"used the weights stored under the key {key!r} of the checkpoint")
                return dict(inner)
        keys = [repr(k) for k in list(obj)[:8]]
        shown = ", ".join(keys) if keys else "none"
        raise LoadError(
            f"{label} holds a dict (keys: {shown}) with no state_dict in it",
            "save model.state_dict(), or store it under the key 'state_dict'",
        )
    raise LoadError(
        f"{label} holds a {type(obj).__name__}, not a state_dict or a model",
        "save model.state_dict() with torch.save, or the whole model",
    )


def _note_half(state: Mapping[str, Any], label: str, warns: list[str]) -> None:
    dtypes = sorted(
        {
            str(t.dtype).replace("torch.", "")
            for t in state.values()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32
        }
    )
    if dtypes:
        warns.append(f"weights in {label} converted from {', '.join(dtypes)} to float32")


def _shape(t: Any) -> tuple[int, ...] | None:
    try:
        return tuple(t.shape)
    except Exception:  # uninitialized (lazy) parameters have no shape yet
        return None


def _apply_state_dict(
    module: torch.nn.Module, state: dict[str, Any], label: str, factory: str, warns: list[str] | None = None
) -> None:
    expected = module.state_dict()

    def compare(sd: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        shapes = []
        for k, v in expected.items():
            if k in sd and isinstance(v, torch.Tensor) and isinstance(sd[k], torch.Tensor):
                want, got = _shape(v), _shape(sd[k])
                if want is not None and got is not None and want != got:
                    shapes.append(f"{k} (file {list(got)}, model {list(want)})")
        return missing, unexpected, shapes

    missing, unexpected, shapes = compare(state)
    if (missing or unexpected) and state and all(k.startswith("module.") for k in state):
        stripped = {k[len("module.") :]: v for k, v in state.items()}
        if not any(compare(stripped)):
            state.clear()
            state.update(stripped)
            missing, unexpected, shapes = [], [], []
            if warns is not None:
                warns.append("removed the 'module.' prefix (saved from DataParallel) from the weight names")
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {title}: {', '.join(items[:5])}{more}")
        raise LoadError(
            f"the weights in {label} do not match the model built by {factory}: {'; '.join(parts)}",
            "check that the factory builds the same architecture the checkpoint was saved from "
            "(same class, layer names and sizes)",
        )
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise LoadError(
            f"the weights in {label} could not be loaded into the model built by {factory}: {_last_line(exc)}",
            "check that the factory matches the checkpoint",
        ) from None


# --------------------------------------------------------------------------- finishing


def _finalize(module: torch.nn.Module, warns: list[str]) -> torch.nn.Module:
    """CPU, float32, eval mode."""
    tensors = [*module.parameters(), *module.buffers()]
    devices = sorted({t.device.type for t in tensors} - {"cpu"})
    if devices:
        try:
            module = module.to("cpu")
        except Exception as exc:
            raise LoadError(
                f"the model's weights on {', '.join(devices)} could not be moved to the CPU: {_last_line(exc)}",
                "build the model with real weights on the CPU",
            ) from None
        warns.append(f"moved from {', '.join(devices)} to the CPU")
        tensors = [*module.parameters(), *module.buffers()]
    dtypes = sorted(
        {str(t.dtype).replace("torch.", "") for t in tensors if t.is_floating_point() and t.dtype != torch.float32}
    )
    if dtypes:
        try:
            module = module.float()
        except Exception as exc:
            raise LoadError(
                f"the model could not be converted from {', '.join(dtypes)} to float32: {_last_line(exc)}",
                "save a float32 copy of the model",
            ) from None
        warns.append(f"converted from {', '.join(dtypes)} to float32")
    return module.eval()


def _last_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    text = lines[-1].strip() if lines else type(exc).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def _format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


__all__ = ["KINDS", "LoadedModel", "file_sha256", "load_model"]
