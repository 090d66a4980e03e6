"""``path/to/model.py:function``: a factory file that builds the model (and may load its own weights).

A factory ``.py`` file is code, by design: the user names it to run it.  The
loader reads its bytes once, checks their SHA-256 against the grants (see
:mod:`qstudio.core.trust`), and compiles exactly those bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import sys
import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.loading.common import format_tb, last_line, read_error
from qstudio.core.loading.torchvision import torchvision_model
from qstudio.core.recipe import INPUT_DTYPES, ModelSource

FACTORY_RE = re.compile(r"^(?P<file>.+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")


@dataclass
class FactoryInfo:
    spec: str
    name: str
    input_shape: list[int] | None
    input_dtype: str | None  # None: the factory does not say


_factory_lock = threading.RLock()


def parse_factory(spec: str) -> tuple[Path, str] | None:
    """(file, function) of a ``file.py:function`` spec, or None if ``spec`` is not one."""
    match = FACTORY_RE.match(spec.strip())
    if match is None:
        return None
    return Path(match["file"]).expanduser(), match["func"]


def factory_files(source: ModelSource) -> list[Path]:
    """The factory files loading ``source`` imports, as written (relative paths start from the current folder).

    The spec when it is a factory (``model.factory`` is then ignored), else
    ``model.factory``; none for the demo (shipped code), ``torchvision:NAME``
    and a ``.py`` spec without a function (refused before anything is imported).
    """
    spec = source.spec.strip()
    if spec.lower() == "demo" or spec.lower().startswith("torchvision:"):
        return []
    parsed = parse_factory(spec)
    if parsed is not None:
        return [parsed[0]]
    if spec.endswith(".py") or not source.factory:
        return []
    parsed = parse_factory(source.factory)
    return [parsed[0]] if parsed is not None else []


@contextlib.contextmanager
def _folder_on_sys_path(folder: Path) -> Iterator[None]:
    saved = list(sys.path)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path[:] = saved


def build_from_factory(spec: str, grants: AbstractSet[str] | None) -> tuple[torch.nn.Module, FactoryInfo]:
    """Import ``file.py`` under a unique module name and call ``function()``; or build ``torchvision:NAME``.

    ``grants``: the SHA-256s the file's bytes must match when they are read
    for import (a file not covered is refused, nothing run); None only for
    the code qstudio ships (the demo).
    """
    if spec.strip().lower().startswith("torchvision:"):
        name = spec.split(":", 1)[1].strip()
        module, shape = torchvision_model(name)
        return module, FactoryInfo(spec, name.lower(), shape, "float32")
    parsed = parse_factory(spec)
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
        raise read_error(path, exc) from None

    resolved = path.resolve()
    if grants is not None and hashlib.sha256(source_bytes).hexdigest() not in grants:
        raise UntrustedFileError(
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
                f"factory file {path} is not valid Python{where}: {last_line(exc)}",
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
                f"importing factory file {path} failed: {last_line(exc)}",
                "fix the error in that file (run it with python to see the full traceback)",
                details=format_tb(exc),
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
                f"factory {label} raised {last_line(exc)}",
                "fix the factory; it must build the model when called with no arguments",
                details=format_tb(exc),
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
    return built, FactoryInfo(spec, label, shape, dtype)


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
