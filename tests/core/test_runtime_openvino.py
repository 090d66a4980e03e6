"""The OpenVINO target on real models: FP32 that really is FP32, NNCF INT8 on the torch.ao calibration batches.

Every artifact here is built by OpenVINO and NNCF themselves and checked in
the graph the CPU plugin executes (``executed()``): kept-float layers run in
f32 there, the rest in u8/i8, and an FP32 artifact has no bf16 anywhere.
torchvision models have random weights with BatchNorm settled on random
batches (nothing is downloaded).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from qstudio.core import compare
from qstudio.core.data import Dataset, load_dataset
from qstudio.core.errors import ExportError
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource
from qstudio.core.runtimes import get_runtime
from qstudio.core.runtimes.base import BuildInput, RuntimeUnavailable, cpu_has_bf16

pytest.importorskip("openvino")
pytest.importorskip("nncf")

BATCH = 8
CALIB_BATCHES = 2


def settled(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Random weights, BatchNorm statistics from a few random batches, eval mode."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape[1:], generator=gen))
    return model.eval()


def images(shape: tuple[int, ...], n: int = BATCH * CALIB_BATCHES) -> Dataset:
    gen = torch.Generator().manual_seed(2)
    return Dataset(torch.randn(n, *shape[1:], generator=gen), None, "random test images", is_random=True)


def build_input(model: nn.Module, calib: Dataset, skip: list[str] | None = None, tmp: Path | None = None) -> BuildInput:
    return BuildInput(
        model=model,
        example=calib.inputs[:1],
        calib=calib,
        calib_batches=CALIB_BATCHES,
        batch_size=BATCH,
        skip=skip or [],
        threads=1,
        workdir=tmp,
    )


def cosine(model: nn.Module, art, data: Dataset | torch.Tensor) -> float:
    if isinstance(data, torch.Tensor):
        data = Dataset(data, None, "test inputs")
    return run(compare.evaluate(model, art, data, batch_size=BATCH)).cosine


def precisions_of(art, kind: str) -> set[str]:
    return {precision for k, precision, _ in art.executed() if k == kind}


@pytest.fixture(scope="module")
def ov():
    return get_runtime("openvino")


@pytest.fixture(scope="module")
def demo_data() -> Dataset:
    return load_dataset(DataSource(kind="demo", split="calib"))


@pytest.fixture(scope="module")
def demo_int8(ov, demo, demo_data, tmp_path_factory):
    skip = ["layers.1.conv1", "no.such.layer"]
    return ov.build(build_input(demo.module, demo_data, skip, tmp_path_factory.mktemp("ov")), "int8")


def test_listing_openvino_imports_nothing_heavy():
    code = (
        "import sys; from qstudio.core.runtimes import get_runtime; r = get_runtime('openvino'); "
        "r.missing(); r.precisions(); print(sorted(m for m in ('openvino', 'nncf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_precisions_name_bf16_only_where_the_cpu_has_it(ov):
    assert ov.missing() is None
    assert ov.precisions() == (["fp32", "bf16", "int8"] if cpu_has_bf16() else ["fp32", "int8"])
    assert (ov.name, ov.title, ov.suffix, ov.compared_by_default) == ("openvino", "OpenVINO", ".xml", True)


def test_conversion_builds_what_openvino_convert_model_builds(demo, demo_data):
    """convert() runs convert_model's steps itself (to read the fused-names record); the graphs must match."""
    import openvino

    from qstudio.core.runtimes.openvino_runtime import convert

    ours, origin = convert(demo.module, demo_data.inputs[:1])
    theirs = openvino.convert_model(
        demo.module, example_input=demo_data.inputs[:1], input=[[-1, *demo.input_shape[1:]]]
    )
    assert [op.get_type_name() for op in ours.get_ordered_ops()] == [
        op.get_type_name() for op in theirs.get_ordered_ops()
    ]
    assert [str(o.get_partial_shape()) for o in ours.inputs] == [str(o.get_partial_shape()) for o in theirs.inputs]
    assert any(s.startswith("__module.layers.1.conv1/") for sources in origin.values() for s in sources)


def test_fp32_really_runs_in_fp32_at_any_batch(ov, demo, demo_data):
    art = ov.build(build_input(demo.module, demo_data), "fp32")
    assert art.label == "OpenVINO FP32" and art.notes == []
    assert precisions_of(art, "Convolution") == {"f32"}
    assert not any(p == "bf16" for _, p, _ in art.executed())
    with torch.no_grad():
        for n in (1, BATCH):
            x = demo_data.inputs[:n]
            out = art(x)
            assert isinstance(out, torch.Tensor) and out.shape == (n, 10)
            torch.testing.assert_close(out, demo.module(x), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native BF16")
def test_bf16_runs_in_bf16(ov, demo, demo_data):
    art = ov.build(build_input(demo.module, demo_data), "bf16")
    assert art.label == "OpenVINO BF16"
    assert precisions_of(art, "Convolution") == {"bf16"}
    assert cosine(demo.module, art, demo_data.inputs[:64]) > 0.99


def test_int8_keeps_the_named_layer_float_and_reports_a_name_that_matches_nothing(demo_int8, demo, demo_data):
    art = demo_int8
    assert art.label == "OpenVINO INT8"
    assert art.kept_float, "the kept-float conv must map to at least one OpenVINO op"
    convs = [(p, names) for kind, p, names in art.executed() if kind == "Convolution"]
    kept = [p for p, names in convs if set(names) & set(art.kept_float)]
    assert kept == ["f32"], "the kept-float conv runs in f32"
    assert {p for p, names in convs if not set(names) & set(art.kept_float)} <= {"u8", "i8"}
    assert len(convs) - len(kept) >= 8, "the other convolutions run in INT8"
    assert any(n.startswith("layers.1.conv1 kept in float") for n in art.notes)
    assert any(n.startswith("no.such.layer ") and "no OpenVINO op" in n for n in art.notes)
    held_out = load_dataset(DataSource(kind="demo", split="eval", limit=96))
    ev = run(compare.evaluate(demo.module, art, held_out, batch_size=32))
    assert ev.cosine > 0.99 and ev.agreement > 0.9


def test_int8_save_load_round_trip_gives_the_same_outputs(ov, demo_int8, demo_data, tmp_path):
    files = demo_int8.save(tmp_path / "model.xml")
    assert files == [tmp_path / "model.xml", tmp_path / "model.bin"]
    assert demo_int8.size_mb == pytest.approx(sum(f.stat().st_size for f in files) / 1e6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"], "no temporary file left"
    loaded = ov.load(files, "int8")
    assert loaded.size_mb == pytest.approx(demo_int8.size_mb)
    for n in (1, BATCH):
        x = demo_data.inputs[-n:]
        torch.testing.assert_close(loaded(x), demo_int8(x))
    again = loaded.save(tmp_path / "copy.xml")  # a loaded artifact saves the same bytes
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in files]


def test_save_into_a_missing_folder_and_loading_half_an_export_fail_clearly(ov, demo_int8, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        demo_int8.save(tmp_path / "nowhere" / "model.xml")
    files = demo_int8.save(tmp_path / "model.xml")
    files[1].unlink()
    with pytest.raises(ExportError, match=r"\.bin"):
        ov.load(files, "int8")


class TokenClassifier(nn.Module):
    """A tiny text classifier: int64 token ids -> embedding -> mean -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.embed(ids).mean(1))))


def test_token_ids_stay_int64_in_fp32_and_int8(ov):
    torch.manual_seed(0)
    model = TokenClassifier().eval()
    gen = torch.Generator().manual_seed(3)
    data = Dataset(torch.randint(0, 100, (BATCH * CALIB_BATCHES, 12), generator=gen), None, "random tokens")
    for precision in ("fp32", "int8"):
        art = ov.build(build_input(model, data, ["head"]), precision)
        assert art.compiled.input(0).get_element_type().to_dtype() == np.int64
        for n in (1, BATCH):
            assert art(data.inputs[:n]).shape == (n, 4)
        assert cosine(model, art, data) > (0.9999 if precision == "fp32" else 0.99)
    assert art.notes == ["head kept in float in OpenVINO INT8 (2 ops: Add, MatMul)"]


class Unconvertible(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]


def test_a_model_openvino_cannot_convert_is_unavailable_with_one_line(ov):
    data = Dataset(torch.randn(BATCH * CALIB_BATCHES, 4, 4), None, "random matrices")
    with pytest.raises(RuntimeUnavailable) as err:
        ov.build(build_input(Unconvertible().eval(), data), "int8")
    message = str(err.value)
    assert "\n" not in message and "aten::linalg_svd" in message
    assert err.value.__cause__ is not None


@pytest.mark.parametrize("name", ["resnet18", pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_torchvision_int8_is_close_to_fp32(ov, name, tmp_path):
    shape = (1, 3, 224, 224)
    model = settled(getattr(torchvision.models, name)(weights=None), shape)
    calib = images(shape)
    skip = ["layer1.0.conv1"] if name == "resnet18" else ["features.1.conv.0.0"]
    art = ov.build(build_input(model, calib, skip, tmp_path), "int8")
    assert art.kept_float and not any("no OpenVINO op" in n for n in art.notes)
    assert cosine(model, art, calib) > 0.99
    assert art(calib.inputs[:1]).shape == (1, 1000)
