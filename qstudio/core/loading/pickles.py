"""Reading torch.save files without running code: the weights-only unpickler, its self-check, CRCs, pickle globals.

Everything here is read with ``torch.load(weights_only=True)``, passed
explicitly so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override it, and a
probe checks that this holds before any untrusted file is opened.  A file
that can only be loaded by running code raises :class:`NeedsTrust`;
:func:`needs_trust` says the same up front from a static look at the file
(see :mod:`qstudio.core.trust`).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import last_line, open_file

TRUST_FIX = (
    "re-save it as a state_dict (torch.save(model.state_dict(), path)) or a .safetensors file and load it "
    "with its factory (model.py:function); or, only if you trust who made this file, pass --trust on the "
    "command line or confirm trust in the window"
)
_MAX_SCAN_BYTES = 256 * 1024 * 1024


class NeedsTrust(Exception):
    """The file can only be loaded by running code it contains; ``what`` says why, after "<file> is"."""

    def __init__(self, what: str, fix: str = TRUST_FIX) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def torchscript_needs_trust() -> NeedsTrust:
    return NeedsTrust("a TorchScript program, and loading it runs code it contains")


def _not_enforced(problem: str) -> NeedsTrust:
    return NeedsTrust(
        f"a file qstudio cannot open safely: PyTorch's weights-only mode is not in force here ({problem})",
        "unset TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD (and anything else that disables weights_only); or, only if "
        "you trust who made this file, pass --trust on the command line or confirm trust in the window",
    )


def _runs_code(unsafe: list[str]) -> NeedsTrust:
    shown = ", ".join(unsafe[:5]) + (", ..." if len(unsafe) > 5 else "")
    return NeedsTrust(f"a pickled Python object, and unpickling it can run arbitrary code (it uses {shown})")


def needs_trust(fh: BinaryIO, fmt: str) -> NeedsTrust | None:
    """Why loading a file of format ``fmt`` (see formats.sniff) would run code in it, or None: nothing is run.

    The loader's own verdict, taken before loading: TorchScript always; a
    torch.save file or pickle when the weights-only self-check fails, or when
    its pickle names a global the weights-only unpickler refuses.
    """
    if fmt == "torchscript":
        return torchscript_needs_trust()
    if fmt not in ("torch_zip", "pickle"):
        return None
    problem = weights_only_problem()
    if problem is not None:
        return _not_enforced(problem)
    unsafe = unsafe_globals(fh, fmt)
    return _runs_code(unsafe) if unsafe else None


# -- the weights-only self-check --------------------------------------------------------


def _probe_target() -> str:
    """What the probe pickle calls if a loader lets it through: nothing happens."""
    return "qstudio weights-only probe"


class _Probe:
    """Pickles as a call to :func:`_probe_target`, which any working weights-only loader refuses."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_probe_target, ())


_probe_results: dict[tuple[Any, ...], str | None] = {}


def weights_only_problem() -> str | None:
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
        problem = f"the weights-only self-check failed: {last_line(exc)}"
    _probe_results[key] = problem
    return problem


# -- loading ----------------------------------------------------------------------------


def safe_torch_load(path: Path, fmt: str) -> Any:
    """``torch.load(weights_only=True)`` of a torch_zip or pickle file; NeedsTrust if only running code loads it."""
    problem = weights_only_problem()
    if problem is not None:
        raise _not_enforced(problem)
    label = path.name
    if fmt == "torch_zip":
        check_zip_crc(path, label)
    try:
        # A file object, not the path: torch.load dispatches on the file name
        # (a path ending in .safetensors goes to safetensors), we dispatch on content.
        with open_file(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        try:
            with open(path, "rb") as fh:
                unsafe = unsafe_globals(fh, fmt)
        except OSError:
            unsafe = []
        if unsafe:
            raise _runs_code(unsafe) from None
        raise LoadError(
            f"{label} is damaged or not a PyTorch file ({torch_reason(exc)})",
            "save or download the file again; if it was saved by other software, re-save it with torch.save",
        ) from None
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(
            f"{label} is damaged or not a PyTorch file ({last_line(exc)})",
            "save or download the file again",
        ) from None


def check_zip_crc(path: Path, label: str) -> None:
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
            f"{label} is a damaged or truncated zip archive ({last_line(exc)})",
            "save or download the file again",
        ) from None
    if bad is not None:
        raise LoadError(
            f"{label} is damaged: the entry {bad.split('/', 1)[-1]!r} does not match its checksum",
            "save or download the file again",
        )


def torch_reason(exc: BaseException) -> str:
    """The useful part of torch's long weights-only message (never its advice to set weights_only=False)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    else:
        text = text.split("In PyTorch 2.6", 1)[0] if not text.startswith("In PyTorch") else ""
    text = " ".join(text.split())
    return (text or type(exc).__name__)[:300]


# -- what a pickle would import ------------------------------------------------------------


def _allowed_globals() -> set[str]:
    allowed: set[str] = set()
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except Exception:  # private API moved: show every global that is not torch's own
        pass
    for item in torch.serialization.get_safe_globals():
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            allowed.add(item[1])  # (object, "its.full.name"): the name the unpickler matches
            continue
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


def unsafe_globals(fh: BinaryIO, fmt: str) -> list[str]:
    """Globals in the file's pickle that the weights-only loader refuses, in order of first use."""
    try:
        fh.seek(0)
        if fmt == "torch_zip":
            with zipfile.ZipFile(fh) as zf:
                name = next(n for n in zf.namelist() if n.split("/", 1)[-1] == "data.pkl")
                if zf.getinfo(name).file_size > _MAX_SCAN_BYTES:
                    return []
                data = zf.read(name)
        else:
            data = fh.read(_MAX_SCAN_BYTES)
    except Exception:
        return []
    allowed = _allowed_globals()
    unsafe: list[str] = []
    for name in _pickle_globals(data):
        if name not in allowed and name not in unsafe:
            unsafe.append(name)
    return unsafe
