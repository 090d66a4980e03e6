"""Files qstudio writes (export, report, recipe, JSON): a full disk is an error, not an abort; normal permissions.

Every disk-full test writes onto a real, nearly full tmpfs (``small_disk`` /
``full_disk`` in tests/conftest.py): the kernel itself refuses the write.  The
earlier file at the target is written before the disk is filled and must come
out byte-identical, with no temporary file left beside it.

Before the fix, torch's C++ zip writer threw from a destructor on ENOSPC
(``terminate called after throwing an instance of 'c10::Error'``) and the
process died with SIGABRT; an abort here would kill pytest itself, and the CLI
test checks the exit code of a separate process.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from qstudio.cli.commands import write_outputs
from qstudio.core import fileio
from qstudio.core.errors import ExportError
from qstudio.core.pipeline import RunResult, export_result, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, ModelSource, QuantSettings, Recipe
from qstudio.core.report import write_report

FAST = ["--calib-batches", "2", "--iters", "3"]


@pytest.fixture(scope="module")
def result(demo) -> RunResult:
    """A real FX-quantized demo model with its results, kept in memory for export."""
    recipe = Recipe(
        mode="fx",
        settings=QuantSettings(calib_batches=2),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=1, iters=3),
    )
    return run(run_recipe(recipe, demo))


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def assert_disk_full(err: ExportError, name: str) -> None:
    """The message names the file, says the disk is full with sizes, and gives the fix."""
    assert name in err.problem, err
    assert "is full" in err.problem and "needed" in err.problem and "free" in err.problem, err
    assert "free space or choose another folder" in err.fix, err
    assert "unchanged" in err.fix, err


def write_json(result: RunResult, path: Path) -> None:
    """The CLI's own --json writer."""
    write_outputs(result, argparse.Namespace(json=str(path), report=None))


# --------------------------------------------------------------------------- full disk


def test_export_onto_a_full_disk_is_an_error_and_keeps_the_earlier_file(result, small_disk) -> None:
    target = small_disk / "model.pt"
    export_result(result, target)  # the earlier export, while there is room
    earlier = target.read_bytes()
    small_disk.fill()
    with pytest.raises(ExportError) as info:
        export_result(result, target)
    assert_disk_full(info.value, "model.pt")
    assert target.read_bytes() == earlier  # byte-identical
    assert small_disk.files() == ["model.pt"]  # no temporary or partial file
    torch.jit.load(str(target))  # and still a loadable model


def test_export_onto_a_full_disk_with_no_earlier_file_leaves_nothing(result, full_disk) -> None:
    with pytest.raises(ExportError) as info:
        export_result(result, full_disk / "new.pt")
    assert_disk_full(info.value, "new.pt")
    assert full_disk.files() == []


def test_disk_filling_up_during_the_write_is_an_error(result, small_disk, monkeypatch) -> None:
    """The kernel's own ENOSPC in the middle of ``os.write`` (another program took the space after the check)."""
    target = small_disk / "model.pt"
    export_result(result, target)
    earlier = target.read_bytes()
    small_disk.fill(leave=256 * 1024)  # room for a part of the file, not for all of it
    monkeypatch.setattr(fileio, "check_space", lambda *a, **k: None)  # skip the up-front check, not the write
    with pytest.raises(ExportError) as info:
        export_result(result, target)
    monkeypatch.undo()
    assert "model.pt" in info.value.problem and "is full" in info.value.problem
    assert "free space or choose another folder" in info.value.fix
    assert target.read_bytes() == earlier
    assert small_disk.files() == ["model.pt"]


@pytest.mark.parametrize("kind", ["report", "recipe", "json"])
def test_report_recipe_and_json_onto_a_full_disk_keep_the_earlier_file(result, small_disk, kind) -> None:
    name = {"report": "report.html", "recipe": "recipe.toml", "json": "result.json"}[kind]
    target = small_disk / name
    # the second version is made larger than the few KB left free: a recipe or a JSON file is smaller than that
    first, second = result, dataclasses.replace(result, model_name="m" * 64 * 1024)
    recipe = copy.deepcopy(result.recipe)
    recipe.model = ModelSource(spec="s" * 64 * 1024)
    write = {
        "report": lambda r: write_report(r, target),
        "recipe": lambda r: (result.recipe if r is first else recipe).save(target),
        "json": lambda r: write_json(r, target),
    }[kind]
    write(first)
    earlier = target.read_bytes()
    small_disk.fill()
    with pytest.raises(ExportError) as info:
        write(second)
    assert_disk_full(info.value, name)
    assert target.read_bytes() == earlier
    assert small_disk.files() == [name]


def test_no_inodes_left_for_the_temporary_file_is_an_error(result, mount_tmpfs) -> None:
    """A tmpfs out of inodes: creating the temporary file itself fails with ENOSPC."""
    disk = mount_tmpfs(1024 * 1024, nr_inodes=8)
    target = result.recipe.save(disk / "r.toml")
    earlier = target.read_bytes()
    n = 0
    with contextlib.suppress(OSError):
        while n < 100:
            (disk / f"f{n}").touch()
            n += 1
    assert n < 100
    with pytest.raises(ExportError) as info:
        result.recipe.save(target)
    assert "r.toml" in info.value.problem and "is full" in info.value.problem, info.value
    assert "free space or choose another folder" in info.value.fix
    assert target.read_bytes() == earlier
    assert not [p for p in disk.path.iterdir() if p.name.endswith(".tmp")]


def test_cli_export_onto_a_full_disk_exits_2_with_one_line(small_disk, tmp_path) -> None:
    target = small_disk / "x.pt"
    target.write_bytes(b"earlier export")
    small_disk.fill()
    ok = tmp_path / "ok"
    ok.mkdir()
    cmd = [sys.executable, "-m", "qstudio.cli", "quantize", "demo", "--mode", "fx", *FAST]
    cmd += ["--export", str(target), "--json", str(ok / "r.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])  # 134 was SIGABRT
    assert "Traceback" not in proc.stderr and "terminate called" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("qstudio: error:")]
    assert len(errors) == 1, proc.stderr
    assert "x.pt" in errors[0] and "is full" in errors[0] and "Fix: free space or choose another folder" in errors[0]
    assert target.read_bytes() == b"earlier export"
    assert small_disk.files() == ["x.pt"]


# --------------------------------------------------------------------------- permissions


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_mode_open_would_give_them(result, tmp_path, umask_022) -> None:
    export_result(result, tmp_path / "m.pt")
    write_report(result, tmp_path / "r.html")
    result.recipe.save(tmp_path / "r.toml")
    write_json(result, tmp_path / "r.json")
    modes = {p.name: oct(_mode(p)) for p in tmp_path.iterdir()}
    assert modes == {"m.pt": "0o644", "r.html": "0o644", "r.toml": "0o644", "r.json": "0o644"}

    os.umask(0o027)
    result.recipe.save(tmp_path / "new.toml")
    assert _mode(tmp_path / "new.toml") == 0o640
    with open(tmp_path / "by_open.toml", "w") as fh:  # the reference: what open() gives
        fh.write("x")
    assert _mode(tmp_path / "by_open.toml") == _mode(tmp_path / "new.toml")


def test_replacing_a_file_keeps_its_permissions_like_open_does(result, tmp_path, umask_022) -> None:
    private = tmp_path / "private.toml"
    result.recipe.save(private)
    private.chmod(0o600)  # the user made it private: saving over it must not make it readable again
    result.recipe.save(private)
    assert _mode(private) == 0o600


def test_umask_is_read_without_changing_it(umask_022) -> None:
    assert fileio.current_umask() == 0o022
    assert fileio.new_file_mode() == 0o644
    os.umask(0o077)
    assert fileio.current_umask() == 0o077
    assert os.umask(0o022) == 0o077  # reading it did not change it
