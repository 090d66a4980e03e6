"""The command line: the exact surface users script against, exit codes and one-line errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_checks import run_cli
from untrusted import Evil

from qstudio.core import torchscript

FAST = ["--calib-batches", "2", "--iters", "5"]


def test_quantize_demo_writes_everything_and_replays_from_recipe(capsys, tmp_path):
    out = tmp_path
    code, stdout, stderr = run_cli(
        capsys, "quantize", "demo", "--mode", "fx", *FAST,
        "--export", str(out / "m.pt"), "--report", str(out / "r.html"),
        "--json", str(out / "r.json"), "--save-recipe", str(out / "r.toml"),
    )  # fmt: skip
    assert code == 0, stderr
    doc = json.loads((out / "r.json").read_text())
    for side in ("fp32", "int8"):
        assert set(doc[side]) >= {"accuracy", "latency_ms", "size_mb"}
        assert doc[side]["accuracy"] > 0.9 and doc[side]["latency_ms"] > 0 and doc[side]["size_mb"] > 0
    assert doc["layers"] and set(doc["layers"][0]) >= {"name", "weight_sqnr_db", "activation_sqnr_db"}
    assert (
        doc["export"]["path"] == str(out / "m.pt")
        and doc["export"]["runtime"] == "torchscript"
        and (out / "m.pt").stat().st_size > 0
    )
    assert "<svg" in (out / "r.html").read_text()
    assert "speedup" in stdout

    code, _, stderr = run_cli(capsys, "run", str(out / "r.toml"), "--json", str(out / "replay.json"))
    assert code == 0, stderr
    replay = json.loads((out / "replay.json").read_text())
    assert replay["recipe"] == doc["recipe"]
    assert replay["int8"]["accuracy"] == doc["int8"]["accuracy"]  # same data, same recipe, same model


def test_json_accuracy_is_null_without_labels(capsys, tmp_path):
    x = torch.randn(16, 1, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    code, _, stderr = run_cli(capsys, "quantize", "demo", "--mode", "fx", *FAST, "--calib-data", str(tmp_path / "x.pt"),
                              "--eval-data", str(tmp_path / "x.pt"), "--json", str(tmp_path / "o.json"))  # fmt: skip
    assert code == 0, stderr
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["fp32"]["accuracy"] is None and doc["int8"]["accuracy"] is None
    assert 0 <= doc["agreement"] <= 1


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["quantize", "missing.pt", "--mode", "fx", "--calib-data", "random"], "does not exist"),
        (["quantize", "demo"], "--mode"),
        (["quantize", "demo", "--mode", "fast"], "invalid choice"),
        (["quantize", "demo", "--mode", "fx", "--input-shape", "1,a"], "not a shape"),
        (["quantize", "torchvision:resnet18", "--mode", "fx"], "no calibration data"),
        (["quantize", "torchvision:resnet1", "--mode", "fx", "--calib-data", "random"], "resnet18"),
        (["quantize", "demo", "--mode", "fx", "--calib-batches", "0"], "settings.calib_batches"),
        (["quantize", "demo", "--mode", "fx", "--calib-data", "nowhere.npy"], "does not exist"),
        (["quantize", "demo", "--mode", "fx", "--export", "/no/such/dir/m.pt"], "does not exist"),
        (["run", "nothing.toml"], "does not exist"),
        (["inspect", "demo", "--factory"], "expected one argument"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, expect):
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("qstudio: error:") and expect in lines[0]
    assert "Fix:" in lines[0]
    assert "Traceback" not in stderr


def test_verbose_shows_traceback(capsys):
    code, _, stderr = run_cli(capsys, "--verbose", "quantize", "missing.pt", "--mode", "fx", "--calib-data", "random")
    assert code == 2 and "Traceback" in stderr


def test_pickle_that_runs_code_is_refused(capsys, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(Evil(marker)))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for cmd in (["inspect", str(evil)], ["quantize", str(evil), "--mode", "fx", "--calib-data", "random"]):
        code, _, stderr = run_cli(capsys, *cmd)
        assert code == 2 and "--trust" in stderr and "code" in stderr
    assert not marker.exists()


def test_inspect_json_lists_tree_and_groups(capsys):
    code, stdout, _ = run_cli(capsys, "inspect", "torchvision:resnet18", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert doc["input_shape"] == [1, 3, 224, 224]
    assert ["conv1", "bn1", "relu"] in doc["fusion_groups"]
    names = {c["name"]: c for c in doc["tree"]["children"]}
    assert names["conv1"]["output_shape"] == [1, 64, 112, 112]
    assert names["conv1"]["quantizable"] is True


def test_entry_point_is_installed():
    exe = Path(sys.executable).with_name("qstudio")
    proc = subprocess.run([str(exe), "inspect", "demo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "DigitsResNet" in proc.stdout and "Fusion groups" in proc.stdout


def test_user_residual_cnn_from_state_dict_and_factory(capsys, tmp_path):
    """A residual CNN in a plain model.py plus its state_dict, loaded through --factory:
    FX PTQ keeps top-1 within 0.5 point; eager mode says why it cannot and points to FX."""
    from safetensors.torch import load_file

    from qstudio.core.paths import resources_dir

    demo = resources_dir() / "demo"
    torch.save(load_file(demo / "digits_resnet.safetensors"), tmp_path / "weights.pt")
    base = ["quantize", str(tmp_path / "weights.pt"), "--factory", f"{demo / 'model.py'}:build",
            "--calib-data", "demo", "--eval-data", "demo", "--iters", "3"]  # fmt: skip
    code, _, stderr = run_cli(capsys, *base, "--mode", "fx", "--json", str(tmp_path / "fx.json"))
    assert code == 0, stderr
    doc = json.loads((tmp_path / "fx.json").read_text())
    assert doc["fp32"]["accuracy"] - doc["int8"]["accuracy"] <= 0.005
    code, _, stderr = run_cli(capsys, *base, "--mode", "eager")
    assert code == 2 and "out = out + identity" in stderr and "--mode fx" in stderr


def test_cli_export_constants_match_the_engine():
    from qstudio import cli
    from qstudio.core.export import DEFAULT_ATOL

    assert cli.EXPORT_METHODS == torchscript.EXPORT_METHODS and cli.DEFAULT_EXPORT_TOLERANCE == DEFAULT_ATOL
