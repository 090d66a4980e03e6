"""The ONNX Runtime target: real exports, real calibration, real sessions (nothing mocked).

resnet18 and mobilenet_v2 have random weights with settled BatchNorm
statistics (nothing is downloaded); the demo is the shipped trained model.
Each model is built once per module and shared by the tests that read it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
import torchvision
from torch import nn

from qstudio.core import compare
from qstudio.core.data import Dataset, load_dataset
from qstudio.core.errors import ExportError
from qstudio.core.progress import run
from qstudio.core.recipe import DataSource
from qstudio.core.runtimes import BuildInput, RuntimeUnavailable, get_runtime
from qstudio.core.runtimes.onnx_names import float_nodes, node_modules
from qstudio.core.runtimes.onnx_runtime import OnnxRuntime, export_onnx, session

onnx = pytest.importorskip("onnx", reason="the ONNX Runtime target needs the runtimes extra (onnx, onnxruntime)")
pytest.importorskip("onnxruntime", reason="the ONNX Runtime target needs the runtimes extra (onnx, onnxruntime)")


# -- helpers ------------------------------------------------------------------------------------------------------
def settle(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Random weights, BatchNorm statistics from a few random batches (cumulative average), eval mode.

    The statistics are per channel, so 128x128 images settle a 224x224 model about as well, at a third of the cost.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    gen = torch.Generator().manual_seed(0)
    size = [min(s, 128) for s in shape[2:]]
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, shape[1], *size, generator=gen))
    return model.eval()


def images(n: int, seed: int, shape: tuple[int, ...] = (3, 224, 224)) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    return Dataset(torch.randn(n, *shape, generator=gen), None, "random test images", is_random=True)


def build_input(model: nn.Module, calib: Dataset, **kw) -> BuildInput:
    kw.setdefault("batch_size", 4)
    kw.setdefault("calib_batches", 2)
    return BuildInput(model=model, example=calib.inputs[:1], calib=calib, **kw)


def cosine(model: nn.Module, art, data: Dataset) -> float:
    return run(compare.evaluate(model, art, data, batch_size=8)).cosine


def graph(art) -> onnx.GraphProto:
    return onnx.load_from_string(art.data).graph


def weight_is_float(g: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    """A Conv/Gemm/MatMul runs in float when its weight is a float initializer, not a DequantizeLinear output."""
    inits = {i.name: i for i in g.initializer}
    weight = inits.get(node.input[1])
    return weight is not None and weight.data_type == onnx.TensorProto.FLOAT


def module_nodes(g: onnx.GraphProto, model: nn.Module, name: str, op: str) -> list[onnx.NodeProto]:
    modules = {n for n, _ in model.named_modules() if n}
    return [n for n in g.node if n.op_type == op and name in node_modules(n, modules)]


class TokenClassifier(nn.Module):
    """int64 token ids -> embedding -> one transformer layer -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(100, 32)
        self.enc = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.enc(self.emb(x)).mean(1))


class ConvLogAddExp(nn.Module):
    """Conv + BN + ReLU, then logaddexp: the TorchScript-based exporter has no logaddexp, torch.export's has."""

    def __init__(self, logaddexp: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.logaddexp = logaddexp
        self.conv, self.bn, self.relu = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        self.head = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.relu(self.bn(self.conv(x))))
        return self.fc((torch.logaddexp(y, 0.5 * y) if self.logaddexp else y).mean((2, 3)))


class Eigen(nn.Module):
    """eigvalsh has no ONNX form in either exporter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return torch.linalg.eigvalsh(y[:, :, None] * y[:, None, :])


# -- the runtime ---------------------------------------------------------------------------------------------------
def test_registered_with_its_attributes_and_no_bf16():
    rt = get_runtime("onnx")
    assert isinstance(rt, OnnxRuntime)
    assert (rt.name, rt.title, rt.suffix, rt.compared_by_default) == ("onnx", "ONNX Runtime", ".onnx", True)
    assert rt.missing() is None
    assert rt.precisions() == ["fp32", "int8"]
    calib = images(2, 0, (3, 8, 8))
    with pytest.raises(RuntimeUnavailable, match="bf16"):
        rt.build(build_input(nn.Conv2d(3, 3, 1).eval(), calib), "bf16")


def test_listing_the_runtime_imports_no_onnx_package():
    code = (
        "import sys; from qstudio.core.runtimes import get_runtime; rt = get_runtime('onnx'); rt.precisions(); "
        "rt.missing(); print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the demo: a trained model on real data ------------------------------------------------------------------------
def test_demo_fp32_and_int8_match_the_float_model(demo):
    calib = load_dataset(DataSource(kind="demo", split="calib"))
    evals = load_dataset(DataSource(kind="demo", split="eval", limit=160))
    inp = build_input(demo.module, calib, batch_size=16, calib_batches=4)
    for precision, floor in (("fp32", 0.99999), ("int8", 0.99)):
        art = get_runtime("onnx").build(inp, precision)
        assert art.precision == precision and art.label == f"ONNX Runtime {precision.upper()}"
        ev = run(compare.evaluate(demo.module, art, evals))
        assert ev.cosine > floor, (precision, ev)
        assert ev.int8_accuracy is not None and ev.int8_accuracy >= ev.fp32_accuracy - 0.02, ev


# -- resnet18: quality, kept-float layers, save/load, batch sizes, threads ---------------------------------------------
@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = settle(torchvision.models.resnet18(weights=None), (1, 3, 224, 224))
    calib = images(8, 1)
    inp = build_input(model, calib, skip=["layer1.0.conv1", "no.such.layer"], threads=2)
    start = time.perf_counter()
    int8 = get_runtime("onnx").build(inp, "int8")
    return model, calib, int8, time.perf_counter() - start


def test_resnet18_int8_is_close_to_fp32(resnet):
    model, calib, int8, _seconds = resnet
    assert cosine(model, int8, calib) > 0.99
    assert cosine(model, int8, images(8, 2)) > 0.99  # and on images it was not calibrated on
    assert int8.size_mb < 0.35 * 46.7  # int8 weights: about a quarter of resnet18's 46.7 MB


def test_resnet18_skipped_layer_stays_float_and_unknown_name_is_reported(resnet):
    model, _calib, int8, _seconds = resnet
    g = graph(int8)
    kept = module_nodes(g, model, "layer1.0.conv1", "Conv")
    assert len(kept) == 1 and weight_is_float(g, kept[0])
    others = [n for n in g.node if n.op_type == "Conv" and n not in kept]
    assert len(others) == 19 and not any(weight_is_float(g, n) for n in others)
    assert any("kept 'layer1.0.conv1' float" in note for note in int8.notes)
    assert any("'no.such.layer'" in note and "not a module" in note for note in int8.notes)


def test_resnet18_any_batch_size_and_save_load_round_trip(resnet, tmp_path):
    _model, _calib, int8, _seconds = resnet
    for batch in (1, 8):
        assert int8(images(batch, 3).inputs).shape == (batch, 1000)
    written = int8.save(tmp_path / "resnet18.onnx")
    assert written == [tmp_path / "resnet18.onnx"]
    assert int8.size_mb == pytest.approx(written[0].stat().st_size / 1e6)
    loaded = get_runtime("onnx").load(written, "int8")
    x = images(8, 4).inputs
    assert loaded.precision == "int8" and loaded.label == "ONNX Runtime INT8"
    torch.testing.assert_close(loaded(x), int8(x))
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_into_a_missing_folder_is_an_export_error(resnet, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        resnet[2].save(tmp_path / "no" / "such" / "model.onnx")


def test_loading_a_broken_file_is_runtime_unavailable(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeUnavailable, match="could not load") as info:
        get_runtime("onnx").load([path], "fp32")
    assert info.value.__cause__ is not None


def test_sessions_use_the_threads_asked_for_and_do_not_spin(resnet):
    options = resnet[2].session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert options.get_session_config_entry(key) == "0"


def idle_cpu_seconds(run_once) -> float:
    """CPU the process burns while it sleeps between calls: what a spinning thread pool steals from torch."""
    run_once()
    time.sleep(0.4)  # let torch's own OpenMP threads (which spin after torch work) go quiet first
    total = 0.0
    for _ in range(8):
        run_once()
        start = time.process_time()
        time.sleep(0.05)
        total += time.process_time() - start
    return total


def test_idle_session_threads_burn_no_cpu():
    import onnxruntime as ort

    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3)).eval()
    x = torch.randn(1, 3, 64, 64)
    data = export_onnx(model, x, torch.randn(2, 3, 64, 64), 2, ("torchscript",))[0]
    feed = {"input": x.numpy()}
    ours = session(data, 2)
    options = ort.SessionOptions()  # ORT's defaults: the pool spins between calls
    options.intra_op_num_threads = 2
    spinning = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    quiet = idle_cpu_seconds(lambda: ours.run(None, feed))  # first: a spinning pool would spill into the next one
    spun = idle_cpu_seconds(lambda: spinning.run(None, feed))
    assert quiet < 0.02 and quiet < spun / 3, (quiet, spun)


# -- mobilenet_v2: depthwise convs, module names nested in Sequentials --------------------------------------------------
def test_mobilenet_v2_fp32_and_int8():
    torch.manual_seed(0)
    model = settle(torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224))
    calib = images(8, 5)
    inp = build_input(model, calib, skip=["classifier.1"])
    fp32 = get_runtime("onnx").build(inp, "fp32")
    int8 = get_runtime("onnx").build(inp, "int8")
    assert cosine(model, fp32, calib) > 0.99999
    assert cosine(model, int8, calib) > 0.95  # random-weight mobilenet_v2 is hard for per-tensor activations
    for batch in (1, 8):
        assert int8(images(batch, 6).inputs).shape == (batch, 1000)
    # every Conv of the float graph maps back to exactly one nn.Conv2d (features.0.0, features.1.conv.0.0, ...)
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    modules = {n for n, _ in model.named_modules() if n}
    found = [node_modules(n, modules) & convs for n in graph(fp32).node if n.op_type == "Conv"]
    assert len(found) == len(convs) == 52 and all(len(f) == 1 for f in found)
    assert {next(iter(f)) for f in found} == convs
    (head,) = module_nodes(graph(int8), model, "classifier.1", "Gemm")
    assert weight_is_float(graph(int8), head)


# -- token ids ---------------------------------------------------------------------------------------------------------
def test_token_model_takes_int64_ids_at_any_batch_size():
    model = TokenClassifier().eval()
    gen = torch.Generator().manual_seed(7)
    calib = Dataset(torch.randint(0, 100, (32, 16), generator=gen), None, "random token ids", is_random=True)
    inp = build_input(model, calib, batch_size=8, calib_batches=4, skip=["fc", "enc.dropout1"])
    evals = Dataset(torch.randint(0, 100, (64, 16), generator=gen), None, "random token ids", is_random=True)
    for precision in ("fp32", "int8"):
        art = get_runtime("onnx").build(inp, precision)
        assert cosine(model, art, evals) > 0.99, precision
        for batch in (1, 8):
            assert art(evals.inputs[:batch]).shape == (batch, 5)
    (head,) = module_nodes(graph(art), model, "fc", "Gemm")
    assert weight_is_float(graph(art), head)
    assert any(n.op_type == "DequantizeLinear" for n in graph(art).node)
    assert any("'enc.dropout1' matched no ONNX node" in note for note in art.notes), art.notes  # gone in eval mode


def test_a_model_changed_in_place_is_exported_again():
    """FP32 and INT8 builds of one model share one export, but not once the model's weights have changed."""
    model = TokenClassifier().eval()
    calib = Dataset(torch.randint(0, 100, (8, 16)), None, "random token ids", is_random=True)
    inp = build_input(model, calib)
    x = calib.inputs
    before = get_runtime("onnx").build(inp, "fp32")
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    after = get_runtime("onnx").build(inp, "fp32")
    with torch.no_grad():
        torch.testing.assert_close(after(x), model(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(before(x) + 1.0, model(x), atol=1e-4, rtol=1e-4)


# -- the torch.export-based exporter: the fallback, its node mapping -------------------------------------------------
def test_falls_back_to_the_torch_export_exporter_and_keeps_skips_float():
    model = settle(ConvLogAddExp(), (1, 3, 16, 16))
    calib = images(8, 8, (3, 16, 16))
    inp = build_input(model, calib, skip=["conv"])  # conv, bn and relu are one Conv node after folding
    art = get_runtime("onnx").build(inp, "int8")
    assert any("torch.export-based ONNX exporter" in n and "logaddexp" in n for n in art.notes), art.notes
    g = graph(art)
    (kept,) = module_nodes(g, model, "conv", "Conv")
    assert weight_is_float(g, kept)
    (head,) = module_nodes(g, model, "head", "Conv")
    assert not weight_is_float(g, head)
    assert cosine(model, art, calib) > 0.99
    assert art(images(1, 9, (3, 16, 16)).inputs).shape == (1, 4)


def test_fusion_groups_keep_a_whole_group_float_in_both_exporters():
    model = settle(ConvLogAddExp(logaddexp=False), (1, 3, 16, 16))
    x, pair = torch.randn(1, 3, 16, 16), torch.randn(2, 3, 16, 16)
    for exporter in ("torchscript", "dynamo"):
        data, used, _session, _failed = export_onnx(model, x, pair, 1, (exporter,))
        assert used == exporter
        nodes = onnx.load_from_string(data).graph.node
        exclude, notes = float_nodes(nodes, model, ["bn", "fc"], [["conv", "bn", "relu"]])
        kinds = sorted(n.op_type for n in nodes if n.name in exclude)
        assert kinds == ["Conv", "Gemm", "Relu"], (exporter, kinds, notes)


# -- what it cannot take ------------------------------------------------------------------------------------------------
def test_a_model_neither_exporter_takes_is_runtime_unavailable(capfd):
    inp = build_input(Eigen().eval(), Dataset(torch.randn(4, 8), None, "random", is_random=True))
    with pytest.raises(RuntimeUnavailable) as info:
        get_runtime("onnx").build(inp, "fp32")
    message = str(info.value)
    assert "could not be exported to ONNX" in message and "eigvalsh" in message and "\n" not in message
    assert info.value.__cause__ is not None
    with pytest.raises(RuntimeUnavailable) as again:  # the INT8 build of the same model does not export it again
        get_runtime("onnx").build(inp, "int8")
    assert str(again.value) == message and again.value.__cause__ is info.value.__cause__
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and "[torch.onnx]" not in out + err  # the exporters' chatter stays out


class BatchOfOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.view(1, 8))  # PyTorch itself refuses any batch but 1


def test_a_model_that_only_takes_batch_one_is_runtime_unavailable():
    inp = build_input(BatchOfOne().eval(), Dataset(torch.randn(4, 8), None, "random", is_random=True))
    with pytest.raises(RuntimeUnavailable, match="batch") as info:
        get_runtime("onnx").build(inp, "fp32")
    assert info.value.__cause__ is not None
