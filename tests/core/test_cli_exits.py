"""The CLI never ends in a traceback without --verbose: bad input 2, internal error 3, cancelled 130.

Each case runs the real ``qstudio`` command in a subprocess on a model factory
file written to tmp_path whose ``forward`` (or another method) raises.  The
engine turns most model faults into a message about the model (exit 2); what
it does not turn is caught by the CLI's outer handler (exit 3).  Either way
stderr ends in exactly one ``qstudio:`` line and holds no traceback; with
``--verbose`` the traceback is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qstudio import cli
from qstudio.cli import commands

QSTUDIO = Path(sys.executable).with_name("qstudio")
RUN = ["quantize", "model.py:build", "--mode", "fx", "--calib-data", "random", "--input-shape", "1,3,8,8",
       "--calib-batches", "1", "--iters", "2"]  # fmt: skip

MODEL = '''\
import torch
from torch import nn


class ModelAbort(BaseException):
    """Not an Exception: no `except Exception` in the engine stops it."""


def fail():
    {raise_line}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if {where_forward} and isinstance(x, torch.Tensor):  # real data, not torch.fx tracing
            fail()
        return self.conv(x)

    def state_dict(self, *args, **kwargs):
        if {where_state_dict}:
            fail()
        return super().state_dict(*args, **kwargs)


def build():
    return Net()
'''
RAISE_LINE = 10  # the line of {raise_line} in model.py


def write_model(folder: Path, raise_line: str, where: str = "forward") -> Path:
    text = MODEL.format(raise_line=raise_line, where_forward=where == "forward", where_state_dict=where == "state_dict")
    assert text.splitlines()[RAISE_LINE - 1].strip() == raise_line
    (folder / "model.py").write_text(text)
    return folder / "model.py"


def qstudio(folder: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(QSTUDIO)] if QSTUDIO.is_file() else [sys.executable, "-m", "qstudio.cli"]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    return subprocess.run([*command, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def the_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``qstudio:`` line, which must end stderr (progress bars and warnings may come before it)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("qstudio:")]
    assert len(ours) == 1, proc.stderr
    assert lines[-1] == ours[0], proc.stderr
    return ours[0]


def assert_internal_error_line(line: str, name: str, message: str) -> None:
    assert line.startswith(f"qstudio: internal error: {name}: {message}"), line
    assert f"model.py:{RAISE_LINE}" in line, line  # where it was raised
    assert "--verbose" in line and "issue" in line, line  # how to report it


@pytest.mark.parametrize("kind", ["RuntimeError", "AssertionError", "TypeError"])
def test_exception_in_forward_is_one_line_not_a_traceback(tmp_path, kind):
    write_model(tmp_path, f'raise {kind}("boom inside forward")')
    proc = qstudio(tmp_path, *RUN)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = the_line(proc)
    assert proc.returncode in (cli.EXIT_BAD_INPUT, cli.EXIT_INTERNAL), proc.stderr
    assert "boom inside forward" in line and kind in line
    if proc.returncode == cli.EXIT_INTERNAL:
        assert_internal_error_line(line, kind, "boom inside forward")
    else:
        assert line.startswith("qstudio: error: ")


def test_exception_outside_any_guard_is_an_internal_error_exit_3(tmp_path):
    write_model(tmp_path, 'raise ModelAbort("the model gave up")')
    proc = qstudio(tmp_path, *RUN)
    assert proc.returncode == cli.EXIT_INTERNAL, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_internal_error_line(the_line(proc), "ModelAbort", "the model gave up")

    verbose = qstudio(tmp_path, *RUN, "--verbose")
    assert verbose.returncode == cli.EXIT_INTERNAL, verbose.stderr
    assert "Traceback (most recent call last)" in verbose.stderr and "ModelAbort" in verbose.stderr
    assert_internal_error_line(the_line(verbose), "ModelAbort", "the model gave up")


def test_type_error_from_a_model_method_outside_forward(tmp_path):
    write_model(tmp_path, 'raise TypeError("no state for you")', where="state_dict")
    proc = qstudio(tmp_path, *RUN)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = the_line(proc)
    assert proc.returncode in (cli.EXIT_BAD_INPUT, cli.EXIT_INTERNAL), proc.stderr
    assert "no state for you" in line
    if proc.returncode == cli.EXIT_INTERNAL:
        assert_internal_error_line(line, "TypeError", "no state for you")


@pytest.mark.parametrize("code", ["0", "None", "'bye'"])
def test_sys_exit_in_forward_is_never_success(tmp_path, code):
    write_model(tmp_path, f"raise SystemExit({code})")
    proc = qstudio(tmp_path, *RUN, "--json", "out.json")
    assert proc.returncode in (cli.EXIT_BAD_INPUT, cli.EXIT_INTERNAL), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = the_line(proc)
    assert "SystemExit" in line or "exit" in line, line
    if proc.returncode == cli.EXIT_INTERNAL:
        assert f"model.py:{RAISE_LINE}" in line and "--verbose" in line, line
    assert not (tmp_path / "out.json").exists()


def test_keyboard_interrupt_in_forward_is_cancelled_130(tmp_path):
    write_model(tmp_path, "raise KeyboardInterrupt")
    proc = qstudio(tmp_path, *RUN)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert the_line(proc) == "qstudio: cancelled"


def test_inspect_takes_the_same_way_out(tmp_path):
    write_model(tmp_path, 'raise ModelAbort("the model gave up")')
    proc = qstudio(tmp_path, "inspect", "model.py:build", "--input-shape", "1,3,8,8")
    if proc.returncode == 0:
        pytest.skip("inspect does not run forward on real data here")
    assert proc.returncode == cli.EXIT_INTERNAL and "Traceback" not in proc.stderr, proc.stderr
    assert_internal_error_line(the_line(proc), "ModelAbort", "the model gave up")


def test_a_run_that_works_still_exits_0(tmp_path):
    write_model(tmp_path, "pass")
    proc = qstudio(tmp_path, *RUN, "--json", "out.json")
    assert proc.returncode == 0, proc.stderr
    assert "qstudio:" not in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "out.json").read_text())["mode"] == "fx"


# -- the outer handler, in-process -----------------------------------------------------------------
def _raise_deep(exc: BaseException) -> None:
    raise exc


def test_internal_error_line_names_type_message_and_place(capsys, monkeypatch):
    def broken(args):
        _raise_deep(RuntimeError("first line of the message\n\n  and a second line torch would add"))

    monkeypatch.setattr(commands, "cmd_quantize", broken)
    assert cli.main(["quantize", "demo", "--mode", "fx"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("qstudio: internal error: RuntimeError: first line of the message (raised at ")
    assert f"test_cli_exits.py:{_raise_deep.__code__.co_firstlineno + 1}" in err
    assert "second line" not in err

    assert cli.main(["quantize", "demo", "--mode", "fx", "--verbose"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("qstudio: internal")


def test_a_library_frame_is_reported_with_the_caller_that_reached_it(capsys, monkeypatch):
    def broken(args):
        json.loads("{not json")  # raises inside the standard library

    monkeypatch.setattr(commands, "cmd_quantize", broken)
    assert cli.main(["quantize", "demo", "--mode", "fx"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err.strip()
    assert "json.decoder.JSONDecodeError: Expecting property name" in err
    assert "(raised at json/decoder.py:" in err or "decoder.py:" in err
    assert f"called from tests/core/test_cli_exits.py:{broken.__code__.co_firstlineno + 1}" in err.replace(os.sep, "/")


def test_help_is_still_exit_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["quantize", "--help"])
    assert exit_.value.code == 0
    assert "--mode" in capsys.readouterr().out


def test_the_exit_statuses_are_documented():
    doc = textwrap.dedent(cli.__doc__ or "")
    for status in ("0 ", "2 ", "3 ", "130 "):
        assert f"\n    {status}" in doc, doc


ONE_AT_A_TIME = '''\
import torch
from torch import nn


class OneAtATime(nn.Module):
    """A user's model that only takes batches of one sample (it squeezes the batch dimension away)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if isinstance(x, torch.Tensor) and x.shape[0] != 1:  # real data, not torch.fx tracing
            raise RuntimeError("expected one sample, got a batch")
        return self.conv(x)


def build():
    return OneAtATime()
'''


def test_a_model_that_takes_one_sample_at_a_time_is_told_the_flag_and_runs_with_it(tmp_path):
    (tmp_path / "model.py").write_text(ONE_AT_A_TIME)
    args = ["quantize", "model.py:build", "--mode", "fx", "--calib-data", "random", "--input-shape", "1,3,8,8",
            "--calib-batches", "2", "--iters", "2", "--runtimes", "none"]  # fmt: skip
    proc = qstudio(tmp_path, *args)
    assert proc.returncode == cli.EXIT_BAD_INPUT, proc.stderr
    line = the_line(proc)
    assert "(16 samples per batch)" in line and "set --batch-size (settings.batch_size) to 1" in line, line
    # with the flag it names, every stage (calibration, evaluation, per-layer comparison, benchmark) runs at 1
    proc = qstudio(tmp_path, *args, "--batch-size", "1", "--json", "r.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["int8"]["latency"][0]["batch_size"] == 1
