"""What a model file is, by its content (never by its name): torchscript, torch_zip, safetensors or pickle.

Cheap: the first bytes and, for a zip, its list of entries.  Nothing in the
file is interpreted.  :mod:`qstudio.core.trust` uses the same answer to decide
up front whether loading a file would run code.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import BinaryIO

from qstudio.core.errors import LoadError
from qstudio.core.loading.common import last_line


def sniff(fh: BinaryIO, label: str) -> str:
    """Classify a file by content: torchscript, torch_zip, safetensors or pickle; a LoadError for anything else."""
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
                f"{label} is a damaged or truncated zip archive ({last_line(exc)})",
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
