"""Exporting the INT8 model: verified against the model in memory, written atomically, kept when it fails.

Real quantized models; a refused permission is simulated only where the tests run
as root (who ignores chmod), and says so.  A full disk: tests/core/test_fileio.py.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from engine_checks import FAST_BENCH, codes, loaded, run_cli
from torch import nn

from qstudio.core import fileio
from qstudio.core.benchmark import model_size_mb
from qstudio.core.errors import ExportError
from qstudio.core.export import ExportInfo, export_torchscript
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource, Recipe


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_quantized_export_reloads_identically(small_int8: nn.Module, small_input: torch.Tensor, tmp_path: Path) -> None:
    target = tmp_path / "small_int8.pt"
    info = export_torchscript(small_int8, target, small_input)
    assert isinstance(info, ExportInfo)
    assert info.verified and info.method == "traced" and info.path == str(target)
    assert info.max_abs_diff == 0.0
    assert info.size_mb == pytest.approx(target.stat().st_size / 1e6)
    assert tmp_files(tmp_path) == []

    loaded = torch.jit.load(str(target))
    x = torch.randn(5, 3, 96, 96)
    with torch.no_grad():
        for inp in (small_input, x):
            assert torch.equal(loaded(inp), small_int8(inp))

    # INT8 weights serialize to roughly a quarter of the FP32 state_dict.
    assert model_size_mb(loaded) < model_size_mb(small_int8) * 2


def _earlier_file(folder: Path) -> tuple[Path, bytes]:
    target = folder / "model.pt"
    content = b"an earlier export the user cares about\x00\x01" * 100
    target.write_bytes(content)
    return target, content


def test_export_into_missing_folder_fails_cleanly(small_fp32: nn.Module, tmp_path: Path) -> None:
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(ExportError, match="does not exist") as err:
        export_torchscript(small_fp32, missing / "m.pt", torch.randn(1, 3, 32, 32))
    assert err.value.fix
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_into_read_only_folder_fails_cleanly(
    small_fp32: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    target, content = _earlier_file(folder)
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            # Running as root: permissions do not stop us, so make creating the
            # temp file fail exactly as the kernel would for a normal user.
            def denied(*_a, **_k):
                raise PermissionError(errno.EACCES, "Permission denied")

            monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)
        with pytest.raises(ExportError, match="permission denied"):
            export_torchscript(small_fp32, target, torch.randn(1, 3, 32, 32))
    finally:
        folder.chmod(0o755)
    assert target.read_bytes() == content
    assert tmp_files(folder) == []


def test_export_that_does_not_verify_keeps_earlier_file(tmp_path: Path) -> None:
    class Noisy(nn.Module):
        """Random in eval mode: the reloaded file cannot reproduce the in-memory output."""

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x + torch.rand_like(x)

    target, content = _earlier_file(tmp_path)
    with pytest.raises(ExportError, match="differ"):
        export_torchscript(Noisy().eval(), target, torch.zeros(4))
    assert target.read_bytes() == content
    assert tmp_files(tmp_path) == []


# --------------------------------------------------------------------------- a failed export keeps the run
NOISY = """
import torch
from torch import nn

class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.fc(x)
        return y + 0.01 * torch.rand_like(y)  # a new draw on every call: no file reproduces it within 1e-4

# (dynamic mode keeps this forward as it is; FX would quantize the noise away at the output's scale)

def build():
    model = Noisy()
    model.input_shape = [1, 16]
    return model
"""


def test_export_that_fails_verification_keeps_json_and_report_and_exits_2(capsys, tmp_path):
    (tmp_path / "noisy.py").write_text(textwrap.dedent(NOISY))
    base = ["quantize", f"{tmp_path / 'noisy.py'}:build", "--mode", "dynamic", "--calib-data", "random",
            "--calib-batches", "2", "--iters", "5"]  # fmt: skip
    out = tmp_path / "m.pt"
    code, _, stderr = run_cli(
        capsys, *base, "--export", str(out), "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")
    )
    assert code == 2
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["export"] is None and doc["export_check"] is None
    assert "differ from the in-memory model" in doc["export_error"]
    assert any(v["code"] == "export-failed" for v in doc["verdicts"])
    assert doc["int8"]["latency_ms"] > 0 and doc["layers"]  # the run's figures are all there
    assert "EXPORT FAILED" in (tmp_path / "r.html").read_text()
    assert not out.exists()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("qstudio: error: the INT8 model was not exported to")
    assert "--export-tolerance" in last and "--export-method script" in last and str(tmp_path / "r.json") in last

    # the options the fix names work: a tolerance above the noise, and scripting instead of tracing
    code, _, stderr = run_cli(
        capsys, *base, "--export", str(out), "--export-tolerance", "0.1", "--export-method", "script",
        "--json", str(tmp_path / "ok.json"),
    )  # fmt: skip
    assert code == 0, stderr
    ok = json.loads((tmp_path / "ok.json").read_text())
    assert (
        ok["export"]["path"] == str(out) and ok["export_error"] is None and ok["export_check"]["method"] == "scripted"
    )
    assert out.stat().st_size > 0


def test_export_failure_in_the_engine_is_recorded_not_raised(tmp_path):
    """What the window gets: the result, with its export error; exporting again from it works."""
    from qstudio.core.pipeline import export_result

    namespace: dict = {}
    exec(textwrap.dedent(NOISY), namespace)
    model = namespace["build"]()
    recipe = Recipe(mode="dynamic", calib=DataSource(kind="random"), benchmark=dataclasses.replace(FAST_BENCH))
    result = run(run_recipe(recipe, loaded(model, [1, 16]), export=tmp_path / "m.pt", export_tolerance=0.0))
    assert result.export is None and result.export_error and "more than 0" in result.export_error
    assert codes(result)["export-failed"].text in result.warnings
    info = export_result(result, tmp_path / "m.pt", atol=1.0)
    assert info.verified and result.export is info
