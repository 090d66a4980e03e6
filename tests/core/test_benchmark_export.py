"""Benchmark figures, the FP32/INT8 TorchScript paths, verified atomic export, environment facts.

Real models throughout (resnet18 without weights, a small FX-quantized conv
net); a full disk is a real, nearly full tmpfs, and only a refused permission is
simulated (the tests run as root).  Timings run with one
thread: on this 2-core machine other jobs often hold a core, and a 2-thread
measurement then waits on whichever thread was descheduled, which is noise,
not model speed.
"""

from __future__ import annotations

import copy
import errno
import logging
import os
import statistics
import time
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from qstudio.core import environment, fileio
from qstudio.core.benchmark import (
    LatencyStat,
    benchmark,
    benchmark_interleaved,
    compare_with_torch_utils_benchmark,
    model_size_mb,
)
from qstudio.core.errors import Cancelled, ExportError, FlowError
from qstudio.core.export import ExportInfo, export_torchscript
from qstudio.core.progress import CancelToken, Progress, run
from qstudio.core.recipe import BenchmarkSettings
from qstudio.core.torchscript import freeze_fp32, to_torchscript

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.*` is deprecated:FutureWarning",
    "ignore::torch.jit.TracerWarning",
)

log = logging.getLogger(__name__)

THREADS = 1
AGREEMENT = 0.10  # the requirement; never loosen it


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 3, 224, 224)


@pytest.fixture(scope="module")
def resnet18_frozen(resnet18: nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    return freeze_fp32(resnet18, image)


class SmallConvNet(nn.Module):
    """A few conv/bn/relu blocks and a classifier: quantizes in a second, runs in about a millisecond."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def quantize_fx_x86(model: nn.Module, example: torch.Tensor, calib_batches: int = 4) -> nn.Module:
    """Test setup only: post-training static FX quantization for the x86 backend."""
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (example,))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(calib_batches):
            prepared(torch.randn(4, *example.shape[1:], generator=gen))
    return convert_fx(prepared)


@pytest.fixture(scope="module")
def resnet18_int8(resnet18: nn.Module, image: torch.Tensor) -> nn.Module:
    return quantize_fx_x86(resnet18, image, calib_batches=2)


@pytest.fixture(scope="module")
def resnet18_int8_ts(resnet18_int8: nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    module, method = to_torchscript(resnet18_int8, image)
    assert method == "traced"  # scale/zero-point float() TracerWarnings must not push FX models to scripting
    return module


@pytest.fixture(scope="module")
def small_input() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(1, 3, 96, 96)


@pytest.fixture(scope="module")
def small_fp32() -> nn.Module:
    torch.manual_seed(4)
    return SmallConvNet().eval()


@pytest.fixture(scope="module")
def small_int8(small_fp32: nn.Module, small_input: torch.Tensor) -> nn.Module:
    return quantize_fx_x86(small_fp32, small_input)


# --------------------------------------------------------------------------- helpers


def ours_median(model, x: torch.Tensor, *, iters: int, warmup: int = 3, label: str = "ours") -> float:
    settings = BenchmarkSettings(batch_sizes=[x.shape[0]], threads=THREADS, warmup=warmup, iters=iters)
    stats = run(benchmark(model, lambda _b: x, settings, label))
    return stats[0].median_ms


def interleaved_rounds(
    model, x: torch.Tensor, *, rounds: int, iters: int, min_run_time: float
) -> list[tuple[float, float]]:
    """Per round, (our median, torch.utils.benchmark's median), measured back-to-back.

    Many short rounds, alternating which timer goes first: other jobs on this
    machine change the speed from second to second, and only measurements
    taken next to each other see the same load.
    """
    pairs: list[tuple[float, float]] = []
    for r in range(rounds):
        ours = theirs = 0.0
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            if which == 0:
                ours = ours_median(model, x, iters=iters)
            else:
                theirs = compare_with_torch_utils_benchmark(model, x, THREADS, min_run_time=min_run_time)
        pairs.append((ours, theirs))
    return pairs


def assert_agrees(model, x: torch.Tensor, *, rounds: int, iters: int, min_run_time: float, what: str) -> None:
    """Our median within 10% of torch.utils.benchmark's; one repeat allowed when the machine was noisy.

    The figure checked is the median over rounds of ours/theirs, each ratio
    from two back-to-back medians; a load burst that hits one side of one
    round moves that round's ratio, not the median.  The 10% bound is fixed.
    """
    for attempt in (1, 2):
        pairs = interleaved_rounds(model, x, rounds=rounds, iters=iters, min_run_time=min_run_time)
        ratio = statistics.median(o / t for o, t in pairs)
        ours = statistics.median(o for o, _ in pairs)
        theirs = statistics.median(t for _, t in pairs)
        print(
            f"\n{what}: ours {ours:.3f} ms, torch.utils.benchmark {theirs:.3f} ms, "
            f"median back-to-back ratio {ratio:.3f} (try {attempt})"
        )
        log.info("%s rounds (ours, theirs): %s", what, pairs)
        if abs(ratio - 1) <= AGREEMENT:
            return
    pytest.fail(f"{what}: our median is {ratio:.3f}x torch.utils.benchmark's, more than 10% apart; rounds {pairs}")


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- benchmark


def test_benchmark_agrees_with_torch_utils_on_resnet18_fp32(resnet18: nn.Module, image: torch.Tensor) -> None:
    assert_agrees(resnet18, image, rounds=10, iters=5, min_run_time=0.25, what="resnet18 FP32 eager, batch 1")


def test_benchmark_agrees_with_torch_utils_on_int8_resnet18(
    resnet18_int8_ts: torch.jit.ScriptModule, image: torch.Tensor
) -> None:
    # A model of 10+ ms per call on purpose: torch.utils.benchmark times blocks
    # of `number` calls and reports the median of block *means*; for ~1 ms
    # models it picks 100-call blocks, so under background load its figure is a
    # mean (spikes included) while ours is a per-call median, and they part by
    # 10-40% for reasons of statistics, not of timing.
    assert_agrees(
        resnet18_int8_ts, image, rounds=10, iters=8, min_run_time=0.2, what="resnet18 INT8 TorchScript, batch 1"
    )


def test_benchmark_reports_each_batch_size_and_progress(small_fp32: nn.Module) -> None:
    settings = BenchmarkSettings(batch_sizes=[1, 3], threads=THREADS, warmup=2, iters=7)
    steps: list[Progress] = []
    shapes: list[int] = []

    def make_input(b: int) -> torch.Tensor:
        shapes.append(b)
        return torch.randn(b, 3, 32, 32)

    stats = run(benchmark(small_fp32, make_input, settings, "FP32 eager"), on_progress=steps.append)
    assert shapes == [1, 3]
    assert [s.batch_size for s in stats] == [1, 3]
    for s in stats:
        assert isinstance(s, LatencyStat)
        assert s.label == "FP32 eager" and s.iters == 7 and s.threads == THREADS
        assert 0 < s.median_ms <= s.p90_ms and s.mean_ms > 0
    assert steps and steps[-1].done == steps[-1].total == 2 * (2 + 7)
    assert all(p.stage == "benchmark FP32 eager" for p in steps)


def test_interleaved_benchmark_takes_turns_and_counts_exactly(small_fp32: nn.Module) -> None:
    """Each model gets its warm-up, then the timed calls alternate in slices, so load drift hits all alike."""
    calls: list[str] = []

    def recording(label: str, model: nn.Module):
        def call(x: torch.Tensor) -> torch.Tensor:
            calls.append(label)
            return model(x)

        return call

    other = copy.deepcopy(small_fp32)
    settings = BenchmarkSettings(batch_sizes=[1, 2], threads=THREADS, warmup=2, iters=9)
    steps: list[Progress] = []
    stats = run(
        benchmark_interleaved(
            {"a": recording("a", small_fp32), "b": recording("b", other)},
            {"a": lambda b: torch.randn(b, 3, 32, 32), "b": lambda b: torch.randn(b, 3, 32, 32)},
            settings,
            rounds=3,
        ),
        on_progress=steps.append,
    )
    assert set(stats) == {"a", "b"}
    for label in "ab":
        assert [s.batch_size for s in stats[label]] == [1, 2]
        assert all(s.iters == 9 and s.label == label and s.median_ms > 0 for s in stats[label])
    per_batch = "aa" + "bb" + ("a" * 3 + "b" * 3) * 3  # warm-ups, then three rounds of three timed calls each
    assert "".join(calls) == per_batch * 2
    assert steps[-1].done == steps[-1].total == 2 * 2 * (2 + 9)


def test_cancel_from_progress_callback_restores_threads(small_fp32: nn.Module) -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    settings = BenchmarkSettings(batch_sizes=[1, 8], threads=other, warmup=5, iters=100_000)
    token = CancelToken()
    seen: list[Progress] = []
    grad_modes: list[bool] = []

    def on_progress(step: Progress) -> None:
        seen.append(step)
        grad_modes.append(torch.is_inference_mode_enabled())
        assert torch.get_num_threads() == other  # the setting is in force while the work runs
        token.cancel()

    started = time.perf_counter()
    with pytest.raises(Cancelled):
        run(benchmark(small_fp32, lambda b: torch.randn(b, 3, 32, 32), settings, "cancel me"), on_progress, token)
    assert len(seen) == 1 and seen[0].done < seen[0].total
    assert grad_modes == [False]  # inference mode is not leaked to the caller between steps
    assert torch.get_num_threads() == before
    assert time.perf_counter() - started < 5


def test_freeze_fp32_matches_eager_resnet18(
    resnet18: nn.Module, image: torch.Tensor, resnet18_frozen: torch.jit.ScriptModule
) -> None:
    frozen = resnet18_frozen
    assert isinstance(frozen, torch.jit.ScriptModule)
    batch = torch.cat([image, torch.randn(2, 3, 224, 224)])
    with torch.no_grad():
        for x in (image, batch):
            assert (frozen(x) - resnet18(x)).abs().max().item() <= 1e-4
    assert not resnet18.training


def test_freeze_fp32_keeps_optimize_for_inference_for_large_outputs(resnet18: nn.Module, image: torch.Tensor) -> None:
    """Logits in the thousands differ from eager by more than 1e-4 after oneDNN's folded kernels, yet by
    ~1e-7 relative: the faster baseline must be kept (an absolute tolerance dropped it for resnet50)."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet18

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * 1000.0

    model = Scaled().eval()
    frozen = freeze_fp32(model, image)
    with torch.no_grad():
        ref = model(image)
        diff = (frozen(image) - ref).abs().max().item()
    assert "mkldnn" in frozen.graph.str()  # optimize_for_inference's layout, not the plain frozen fallback
    assert diff <= 1e-4 * ref.abs().max().item()


# --------------------------------------------------------------------------- quantized model: export + benchmark


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


def test_to_torchscript_scripts_when_tracing_is_impossible() -> None:
    class DictIn(nn.Module):
        def forward(self, x: torch.Tensor, scale: float = 2.0) -> dict[str, torch.Tensor]:
            if x.sum() > 0:  # data-dependent branch: a trace would bake in one side
                return {"out": x * scale}
            return {"out": -x}

    module, method = to_torchscript(DictIn().eval(), torch.ones(2))
    assert method == "scripted"
    assert torch.equal(module(-torch.ones(2))["out"], torch.ones(2))


# --------------------------------------------------------------------------- atomic export failures


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


def test_export_onto_a_full_disk_keeps_earlier_file(small_fp32: nn.Module, small_disk) -> None:
    # a real, nearly full tmpfs (tests/conftest.py): the kernel refuses the write; see also tests/core/test_disk_full.py
    target, content = _earlier_file(small_disk.path)
    small_disk.fill()
    with pytest.raises(ExportError, match="is full") as err:
        export_torchscript(small_fp32, target, torch.randn(1, 3, 32, 32))
    assert "free space or choose another folder" in err.value.fix
    assert target.read_bytes() == content
    assert tmp_files(small_disk.path) == []
    assert small_disk.files() == ["model.pt"]


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


# --------------------------------------------------------------------------- environment


def test_environment_info_and_backends() -> None:
    info = environment.environment_info()
    for key in (
        "qstudio",
        "python",
        "torch",
        "torchvision",
        "os",
        "cpu",
        "cpu_capability",
        "vnni",
        "amx",
        "threads",
        "quantized_engines",
    ):
        assert isinstance(info[key], str) and info[key], key
    assert info["threads"] == str(torch.get_num_threads())
    backends = environment.available_backends()
    assert set(backends) <= {"x86", "fbgemm", "qnnpack", "onednn"}
    assert all(b in torch.backends.quantized.supported_engines for b in backends)
    for b in backends:
        environment.check_backend(b)
    with pytest.raises(FlowError) as err:
        environment.check_backend("nope")
    assert "nope" in err.value.problem and "use one of" in err.value.fix


# --------------------------------------------------------------------------- which path is fastest (printed with -s)


def _table(rows: dict[str, float], title: str) -> None:
    best = min(rows.values())
    print(f"\n{title}")
    for name, ms in rows.items():
        print(f"  {name:<44} {ms:8.2f} ms  x{ms / best:4.2f}{'  <- fastest' if ms == best else ''}")


def _race(variants: dict[str, tuple[object, torch.Tensor]], *, rounds: int, iters: int) -> dict[str, float]:
    """Median of per-round medians, variants interleaved each round so background load hits all alike."""
    per: dict[str, list[float]] = {name: [] for name in variants}
    for model, x in variants.values():
        ours_median(model, x, iters=1, warmup=3)  # profiling executor / oneDNN caches settle
    for _ in range(rounds):
        for name, (model, x) in variants.items():
            per[name].append(ours_median(model, x, iters=iters, warmup=1))
    return {name: statistics.median(v) for name, v in per.items()}


def test_print_fp32_and_int8_path_table(
    resnet18: nn.Module,
    image: torch.Tensor,
    resnet18_frozen: torch.jit.ScriptModule,
    resnet18_int8: nn.Module,
    resnet18_int8_ts: torch.jit.ScriptModule,
) -> None:
    cl_model = copy.deepcopy(resnet18).to(memory_format=torch.channels_last)
    cl_image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        traced = torch.jit.trace(resnet18, image, check_trace=False)
        traced_cl = torch.jit.trace(cl_model, cl_image, check_trace=False)
    fp32 = {  # torch.jit.freeze returns a new module, so one trace serves several rows
        "eager": (resnet18, image),
        "traced": (traced, image),
        "traced+frozen": (torch.jit.freeze(traced), image),
        "freeze_fp32 (frozen+optimize_for_inference)": (resnet18_frozen, image),
        "eager channels_last": (cl_model, cl_image),
        "frozen channels_last": (torch.jit.freeze(traced_cl), cl_image),
        "frozen+ofi channels_last": (torch.jit.optimize_for_inference(torch.jit.freeze(traced_cl)), cl_image),
    }
    fp32_ms = _race(fp32, rounds=3, iters=5)
    _table(fp32_ms, f"resnet18 FP32, batch 1, {THREADS} thread(s), median ms")

    int8, int8_ts = resnet18_int8, resnet18_int8_ts
    with torch.no_grad():
        assert torch.equal(int8_ts(image), int8(image))
    int8_ms = _race(
        {"INT8 eager GraphModule": (int8, image), "INT8 traced+frozen": (int8_ts, image)}, rounds=3, iters=10
    )
    _table(int8_ms, f"resnet18 INT8 (FX, x86), batch 1, {THREADS} thread(s), median ms")
    print(f"  size: FP32 {model_size_mb(resnet18):.1f} MB, INT8 TorchScript {model_size_mb(int8_ts):.1f} MB")
    assert all(v > 0 for v in [*fp32_ms.values(), *int8_ms.values()])
