"""qstudio's zoo as tests: each entry of benchmarks/zoo.py runs through the real CLI in a subprocess.

The fast subset (a handful of small models, a few minutes on two cores) runs
in every test run.  The other entries are marked ``slow`` and skipped unless
``QSTUDIO_ZOO_SLOW=1`` (``QSTUDIO_ZOO_SLOW=1 pytest tests/zoo -m slow``): the
whole zoo takes most of an hour.  An entry passes when its run is ok (exit 0,
JSON and a reloadable export) or a clear failure its expectation accepts, and
INT8 did not collapse without a warning.  Slowdowns are reported by
benchmarks/zoo.py, not failed on here: timing on a shared CI machine is noise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _harness():
    spec = importlib.util.spec_from_file_location("qstudio_zoo_harness", ROOT / "benchmarks" / "zoo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


zoo = _harness()
SLOW = os.environ.get("QSTUDIO_ZOO_SLOW", "") not in ("", "0")


def _params():
    for entry in zoo.ENTRIES:
        marks = []
        if not entry.fast:
            marks += [
                pytest.mark.slow,
                pytest.mark.skipif(not SLOW, reason="slow zoo entry: set QSTUDIO_ZOO_SLOW=1 to run it"),
            ]
        if entry.needs and importlib.util.find_spec(entry.needs) is None:
            marks.append(pytest.mark.skip(reason=f"{entry.needs} is not installed: pip install -e '.[zoo]'"))
        if entry.pending:
            marks.append(pytest.mark.xfail(strict=False, reason=entry.pending))
        yield pytest.param(entry, id=entry.name, marks=marks)


@pytest.mark.parametrize("entry", list(_params()))
def test_zoo_entry(entry, tmp_path):
    outcome = zoo.run_entry(entry, tmp_path, iters=5, timeout=540)
    stderr = (tmp_path / "stderr.txt").read_text() if (tmp_path / "stderr.txt").exists() else ""
    said = f"{outcome.result}: {outcome.error}\n$ qstudio {outcome.command}\n{stderr[-4000:]}"
    assert outcome.bucket in entry.expect, said
    assert not outcome.unwarned_collapse, (
        f"cosine {outcome.cosine}, agreement {outcome.agreement} with no warning: {outcome.warnings}"
    )


# ------------------------------------------------------------------ the zoo's own bookkeeping (no subprocess)


def test_every_factory_has_an_entry_and_every_entry_a_factory():
    models = {e.model for e in zoo.ENTRIES if ":" not in e.model}
    spec = importlib.util.spec_from_file_location("qstudio_zoo_models", zoo.MODELS_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    factories = {n for n, f in vars(mod).items() if callable(f) and hasattr(f, "input_shape")}
    assert models - factories == set(), "entries whose factory is missing"
    assert factories - models == set(), "factories no entry runs"
    assert not any(hasattr(getattr(mod, n), "input_dtype") for n in factories), "qstudio must infer the dtype"
    names = [e.name for e in zoo.ENTRIES]
    assert len(names) == len(set(names))
    assert 5 <= sum(e.fast for e in zoo.ENTRIES) <= 8


@pytest.fixture
def files(tmp_path):
    """An exported model that reloads and a JSON document, as a successful run leaves them."""
    export = tmp_path / "out.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(export))
    doc = {
        "speedup": 3.0,
        "speedup_vs_fp32_torchscript": 2.0,
        "cosine": 0.99,
        "agreement": 0.9,
        "coverage": {"quantized_layers": ["fc"], "float_layers": ["head"]},
        "warnings": [],
        "verdicts": [],
    }

    def write(**changes):
        (tmp_path / "out.json").write_text(json.dumps({**doc, **changes}))
        return tmp_path / "out.json", export

    return write


ENTRY = zoo.Entry("test", "m", "fx")


def test_ok_run(files):
    o = zoo.classify(ENTRY, 0, "", "", *files())
    assert (o.result, o.bucket, o.speedup_vs_fastest, o.float_layers) == ("ok", "ok", 2.0, ["head"])


def test_clear_failure_is_one_error_line_and_exit_2(files):
    o = zoo.classify(ENTRY, 2, "", "qstudio: error: no good\n  fix: do this\n", *files())
    assert (o.bucket, o.error) == ("clear", "no good")
    o = zoo.classify(ENTRY, 2, "", "qstudio: error: one\nqstudio: error: two\n", *files())
    assert o.bucket == "traceback"


@pytest.mark.parametrize(
    ("code", "stderr", "result"),
    [
        (2, "Traceback (most recent call last):\n  ...\nValueError: bad\nqstudio: error: bad\n", "traceback"),
        (3, "qstudio: internal error: KeyError in x.py:3\n", "internal error (exit 3)"),
        (134, "Aborted\n", "crash (exit 134)"),
        (1, "", "crash (exit 1)"),
    ],
)
def test_anything_else_counts_as_a_traceback(files, code, stderr, result):
    o = zoo.classify(ENTRY, code, "", stderr, *files())
    assert (o.result, o.bucket) == (result, "traceback")


def test_exit_0_without_its_files_is_not_ok(files, tmp_path):
    json_path, export = files()
    export.unlink()
    assert zoo.classify(ENTRY, 0, "", "", json_path, export).result == "no output"
    export.write_bytes(b"not a model")
    assert "does not reload" in zoo.classify(ENTRY, 0, "", "", json_path, export).error
    assert zoo.classify(ENTRY, None, "", "", json_path, export, timed_out=True).result == "timeout"


def test_slowdown_counts_only_when_no_warning_says_slower(files):
    o = zoo.classify(ENTRY, 0, "", "", *files(speedup_vs_fp32_torchscript=0.8))
    assert (o.bucket, o.unwarned_slowdown) == ("ok", True)
    o = zoo.classify(ENTRY, 0, "", "", *files(speedup=0.5, warnings=["INT8 IS SLOWER than FP32 eager ..."]))
    assert (o.unwarned_slowdown, o.warned_slowdown) == (False, True)


def test_collapse_counts_only_when_no_warning_says_so(files):
    assert zoo.classify(ENTRY, 0, "", "", *files(cosine=0.5)).unwarned_collapse
    o = zoo.classify(ENTRY, 0, "", "", *files(cosine=0.5, warnings=["INT8 OUTPUTS COLLAPSED: cosine ..."]))
    assert not o.unwarned_collapse and o.warned_collapse
    assert zoo.classify(ENTRY, 0, "", "", *files(agreement=0.3)).unwarned_collapse
    generic = ["No evaluation data was given: agreement is measured on the calibration data."]
    assert zoo.classify(ENTRY, 0, "", "", *files(cosine=0.5, warnings=generic)).unwarned_collapse
    two_classes = zoo.Entry("test", "m", "fx", classes=2)  # 30% agreement is chance level there, not a collapse
    assert not zoo.classify(two_classes, 0, "", "", *files(agreement=0.3)).unwarned_collapse


def test_counts_and_markdown(files):
    ok = zoo.classify(ENTRY, 0, "", "", *files(speedup=0.5))
    clear = zoo.classify(ENTRY, 2, "", "qstudio: error: no | good\n", *files())
    c = zoo.counts([ok, clear])
    assert (c["quantized and exported"], c["failed with a clear line"], c["unwarned slowdown"]) == (1, 1, 1)
    meta = {
        "iters": 5, "date": "today", "torch": "t", "torchvision": "tv", "python": "3", "label": "after",
        "machine": {"cpu": "cpu", "cores": 2, "os": "Linux"}, "load_start": "0.1, 0.1, 0.1",
        "load_end": "0.1, 0.1, 0.1", "qstudio": "q", "seconds": 60, "command": "python benchmarks/zoo.py",
    }  # fmt: skip
    text = zoo.markdown([ok, clear], meta)
    assert "1 quantized and exported / 1 failed with a clear line" in text
    assert "no \\| good" in text  # a pipe in an error cannot break the table
