"""Issue #5, engine side: bad input, faults and untrusted files.

Each test feeds one bad input or fault to the real engine (real models, real
torch.ao quantization, real files) and checks that a :class:`QStudioError`
comes out naming the problem and the fix, that no code from an untrusted
file ran, and that nothing the user had (session state, an earlier file) was
lost.  A full disk is a real, nearly full tmpfs (tests/conftest.py).  A
monkeypatch appears only where a fault cannot be produced for real here (a GPU
on a machine without one); each says so.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qstudio.core import environment, memory
from qstudio.core.data import load_dataset
from qstudio.core.errors import (
    Cancelled,
    DataError,
    ExportError,
    FlowError,
    FusionError,
    LoadError,
    QStudioError,
    RecipeError,
)
from qstudio.core.flows import FlowInput, get_flow
from qstudio.core.flows.base import calibrate
from qstudio.core.loading import load_model
from qstudio.core.pipeline import load_run_data, run_recipe
from qstudio.core.progress import CancelToken, Progress, run
from qstudio.core.recipe import (
    BenchmarkSettings,
    DataSource,
    ModelSource,
    QATSettings,
    QuantSettings,
    Recipe,
)
from qstudio.core.session import Session
from qstudio.core.trust import code_files

ZOO = Path(__file__).parent / "models" / "zoo.py"


def assert_clean(err: QStudioError, *problem_words: str, fix_words: tuple[str, ...] = ()) -> None:
    """The message names the problem (with these words) and a fix."""
    assert isinstance(err, QStudioError)
    assert err.problem and err.fix, f"problem and fix must both be given: {err!r}"
    text = f"{err.problem} {err.fix}".lower()
    for word in (*problem_words, *fix_words):
        assert word.lower() in text, f"{word!r} not in {str(err)!r}"


# The code a recipe would run (code_files, what_runs) and the grants the loader checks: tests/core/test_trust.py.


# --------------------------------------------------------------------------- helpers

QUICK = BenchmarkSettings(batch_sizes=[1], warmup=1, iters=2)
ALLOC_ERROR = (  # the message torch really raised on this machine for a 3x224x224 batch of 1_000_000
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 602112000000 bytes. Error code 12 (Cannot allocate memory)"
)


def zoo(name: str) -> ModelSource:
    return ModelSource(f"{ZOO}:{name}")


def write_factory(folder: Path, body: str, name: str = "net.py") -> Path:
    path = folder / name
    path.write_text("import torch\nfrom torch import nn\n\n" + body)
    return path


def drive(work, cancel_at: tuple[str, int] | None = None) -> tuple[object, list[Progress]]:
    """Run ``work`` like the window's worker; cancel at the first step of ``stage`` with ``done`` >= n."""
    seen: list[Progress] = []
    exc_step: list[Progress] = []  # the step at which the user pressed Cancel
    token = CancelToken()

    def on_progress(step: Progress) -> None:
        seen.append(step)
        if cancel_at and step.stage == cancel_at[0] and step.done >= cancel_at[1] and not token.cancelled:
            token.cancel()
            exc_step.append(step)

    try:
        return run(work, on_progress, token), seen
    except BaseException as exc:
        exc.seen = seen  # type: ignore[attr-defined]
        exc.cancelled_at = exc_step[0] if exc_step else None  # type: ignore[attr-defined]
        raise


def preflight(recipe: Recipe, loaded) -> None:
    """The checks a run makes before its first batch (data, then the flow's preflight), without the run."""
    data = load_run_data(recipe, loaded)
    inp = FlowInput(loaded.module, recipe, [], data.calib, data.calib.sample(1), data.train, data.eval)
    get_flow(recipe).preflight(inp)


def stages(steps: list[Progress]) -> set[str]:
    return {s.stage for s in steps}


# --------------------------------------------------------------------------- 3: damaged files


def _state_zip() -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(3, 4).state_dict(), buf)
    return buf.getvalue()


def _entry_data_offset(data: bytes, suffix: str) -> tuple[int, int]:
    """Where the stored bytes of the zip entry ending in ``suffix`` start, and how many there are."""
    info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename.endswith(suffix))
    h = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[h + 26 : h + 30])
    return h + 30 + name_len + extra_len, info.compress_size


def _rezip(data: bytes, suffix: str, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info.filename, change(body) if info.filename.endswith(suffix) else body)
    return out.getvalue()


def _flip_tensor_byte(data: bytes) -> bytes:
    off, _ = _entry_data_offset(data, "/data/0")
    out = bytearray(data)
    out[off + 3] ^= 0x40  # one bit of one weight: the zip's CRC-32 no longer matches
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_flip_tensor_byte, "does not match its checksum"),
        (lambda d: _rezip(d, "/data.pkl", lambda b: b"\x00garbage" * 3), "damaged or not a PyTorch file"),
        (lambda d: _rezip(d, "/data/0", lambda b: b[: len(b) // 2]), "damaged or not a PyTorch file"),
        (lambda d: _rezip(d, "/version", lambda b: b"\x00garbage"), "damaged or not a PyTorch file"),
        (lambda d: d[: len(d) - 30], "damaged or truncated zip"),
    ],
    ids=["flipped-weight-byte", "garbage-pickle-entry", "short-tensor-entry", "garbage-version-entry", "truncated"],
)
def test_zip_with_a_mutated_entry_is_refused(tmp_path: Path, mutate, expected: str) -> None:
    factory = write_factory(tmp_path, "def build():\n    return nn.Linear(3, 4)\n")
    good = _state_zip()
    path = tmp_path / "weights.pt"
    path.write_bytes(good)
    assert load_model(ModelSource(str(path), factory=f"{factory}:build")).kind == "state_dict"  # the original loads
    path.write_bytes(mutate(good))
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(str(path), factory=f"{factory}:build"))
    assert_clean(info.value, expected, "weights.pt", fix_words=("again",))


def test_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permissions: real chmod for a normal user; as root (who ignores chmod) the kernel's refusal is simulated."""
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.ones(1)}, path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root: simulate exactly the error open() gives a normal user
            real_open = open

            def denied(file, *args, **kwargs):
                if str(file) == str(path):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr("builtins.open", denied)
        with pytest.raises(LoadError) as info:
            load_model(ModelSource(str(path)))
    finally:
        monkeypatch.undo()
        path.chmod(0o600)
    assert_clean(info.value, "secret.pt", "permission denied", fix_words=("permission",))


# --------------------------------------------------------------------------- 6: flows that cannot apply


RESIDUAL = """
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        y = self.relu(self.conv1(x))
        y = y + self.conv2(y)
        return self.head(y)


def build():
    return Residual()


build.input_shape = [1, 1, 16, 16]
"""


def test_eager_mode_with_a_tensor_add_is_refused_before_calibrating(tmp_path: Path) -> None:
    loaded = load_model(ModelSource(f"{write_factory(tmp_path, RESIDUAL)}:build"))
    recipe = Recipe(mode="eager", calib=DataSource(kind="random", limit=8), benchmark=QUICK)
    with pytest.raises(FlowError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "net.py:", "y = y + self.conv2(y)", fix_words=("--mode fx", "FloatFunctional"))
    assert "calibrate" not in stages(info.value.seen)  # refused before any calibration batch
    assert drive(run_recipe(Recipe(mode="fx", calib=recipe.calib, benchmark=QUICK), loaded))[0] is not None


def test_invalid_fusion_group_in_a_recipe_is_refused_before_calibrating(tmp_path: Path) -> None:
    loaded = load_model(zoo("plain_cnn"))
    for groups, named in (([["conv1", "fc1"]], "fc1"), ([["conv1", "nope"]], "nope"), ([["relu1", "conv2"]], "relu1")):
        recipe = Recipe(mode="fx", fusion=groups, calib=DataSource(kind="random", limit=8), benchmark=QUICK)
        with pytest.raises(FusionError) as info:
            drive(run_recipe(recipe, loaded))
        assert_clean(info.value, named)
        assert "calibrate" not in stages(info.value.seen)


def test_fx_trace_failure_names_the_line_and_suggests_a_way_out() -> None:
    loaded = load_model(zoo("gated_cnn"))
    recipe = Recipe(mode="fx", calib=DataSource(kind="random", limit=8), input_shape=[1, 1, 16, 16], benchmark=QUICK)
    with pytest.raises(FlowError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "zoo.py:", "if x.mean() > 0", fix_words=("--skip gate",))
    assert "calibrate" not in stages(info.value.seen)


# --------------------------------------------------------------------------- 7: calibration data


@pytest.mark.parametrize(
    ("x", "named"),
    [
        (np.zeros((0, 1, 32, 32), np.float32), "empty"),
        (np.zeros((4, 1, 28, 28), np.float32), "shape [1, 28, 28]"),
        (np.zeros((4, 1, 32, 32), np.uint8), "uint8 values"),
        (np.where(np.arange(4 * 1024).reshape(4, 1, 32, 32) == 5, np.inf, 0).astype(np.float32), "NaN or Inf"),
        (np.where(np.arange(4 * 1024).reshape(4, 1, 32, 32) == 9, -np.inf, 0).astype(np.float32), "in 1 samples"),
        (np.full((4, 1, 32, 32), np.nan, np.float32), "in 4 samples"),
    ],
    ids=["empty", "wrong-shape", "wrong-dtype", "inf", "minus-inf", "nan"],
)
def test_bad_calibration_data_stops_the_run_before_calibrating(tmp_path: Path, x: np.ndarray, named: str) -> None:
    np.save(tmp_path / "x.npy", x)
    loaded = load_model(zoo("plain_cnn"))
    recipe = Recipe(mode="fx", calib=DataSource(kind="tensor", path=str(tmp_path / "x.npy")), benchmark=QUICK)
    with pytest.raises(DataError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, named)
    assert info.value.seen == []  # nothing ran: data is checked before the first step


def test_labels_of_the_wrong_length_and_a_corrupt_image_stop_the_run(tmp_path: Path) -> None:
    loaded = load_model(zoo("plain_cnn"))
    np.save(tmp_path / "x.npy", np.zeros((6, 1, 32, 32), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(5, np.int64))
    labeled = DataSource(kind="tensor", path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    with pytest.raises(DataError) as info:
        drive(run_recipe(Recipe(mode="fx", calib=labeled, benchmark=QUICK), loaded))
    assert_clean(info.value, "labels have shape [5]", "6 samples", fix_words=("one integer label per sample",))

    from PIL import Image

    images = tmp_path / "imgs" / "cat"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (32, 32), color=i * 40).save(images / f"{i}.png")
    (images / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))  # a PNG signature, then garbage
    folder = DataSource(kind="folder", path=str(tmp_path / "imgs"), grayscale=True)
    with pytest.raises(DataError) as info:
        drive(run_recipe(Recipe(mode="fx", calib=folder, benchmark=QUICK), loaded))
    assert_clean(info.value, "3.png", "corrupt", fix_words=("remove or replace",))
    assert info.value.seen == []


# --------------------------------------------------------------------------- 8: devices, precision, backends


def test_model_whose_weights_are_on_another_device_is_moved_or_refused(tmp_path: Path) -> None:
    # No GPU here.  A CUDA model is moved to the CPU by the same .to("cpu") call; what cannot be faked
    # honestly is a CUDA tensor, so this uses torch's real "meta" device: weights that exist nowhere.
    meta = write_factory(tmp_path, "def build():\n    return nn.Linear(4, 2, device='meta')\n")
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(f"{meta}:build"))
    assert_clean(info.value, "on meta", "could not be moved to the CPU", fix_words=("real weights on the cpu",))


def test_half_precision_model_is_converted_with_a_warning(tmp_path: Path) -> None:
    half = write_factory(tmp_path, "def build():\n    return nn.Sequential(nn.Linear(4, 2)).half()\n")
    loaded = load_model(ModelSource(f"{half}:build"))
    assert "converted from float16 to float32" in loaded.warnings
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    recipe = Recipe(mode="dynamic", input_shape=[1, 4], calib=DataSource(kind="random", limit=4), benchmark=QUICK)
    result, _ = drive(run_recipe(recipe, loaded))
    assert "converted from float16 to float32" in result.warnings  # the run's report repeats it


def test_backend_not_supported_on_this_cpu_is_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # This CPU build supports every backend, so a build without qnnpack/onednn (common on x86 wheels) is simulated
    # by what PyTorch reports as supported; qstudio's own check is what runs.
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["x86", "fbgemm"]))
    assert environment.available_backends() == ["x86", "fbgemm"]
    loaded = load_model(zoo("plain_cnn"))
    recipe = Recipe(mode="fx", settings=QuantSettings(backend="qnnpack"), calib=DataSource(kind="random", limit=8))
    with pytest.raises(FlowError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "'qnnpack'", "not supported", fix_words=("x86", "fbgemm"))
    assert info.value.seen == []


# --------------------------------------------------------------------------- 9: out of memory

UPSAMPLER = """
def build():
    # 1 KB in, 16 MB of activations out per sample
    return nn.Sequential(nn.Upsample(scale_factor=32), nn.Conv2d(1, 16, 1), nn.ReLU())


build.input_shape = [1, 1, 16, 16]
"""


def test_batch_size_that_cannot_fit_is_refused_before_calibrating(tmp_path: Path) -> None:
    loaded = load_model(ModelSource(f"{write_factory(tmp_path, UPSAMPLER)}:build"))
    samples = 10_000  # 10 MB of inputs; one batch of all of them needs ~170 GB of activations
    room = memory.available_bytes()
    if room is None or room > 100e9:
        pytest.skip(f"this machine reports {room} bytes free; the case needs one that cannot hold 170 GB")
    recipe = Recipe(
        mode="fx",
        settings=QuantSettings(batch_size=samples, calib_batches=1),
        calib=DataSource(kind="random", limit=samples),
        benchmark=QUICK,
    )
    with pytest.raises(DataError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "settings.batch_size = 10000", "memory", fix_words=("lower settings.batch_size to",))
    assert "calibrate" not in stages(info.value.seen)
    fits = int(info.value.fix.rsplit(" to ", 1)[1].split()[0])
    assert 1 <= fits < samples
    recipe.settings.batch_size = fits  # the advice works: the same check accepts it
    preflight(recipe, loaded)


def test_huge_benchmark_batch_and_huge_random_data_are_refused(demo) -> None:
    recipe = Recipe(mode="fx", benchmark=BenchmarkSettings(batch_sizes=[1, 10_000_000], warmup=1, iters=2))
    with pytest.raises(DataError) as info:
        drive(run_recipe(recipe, demo))
    assert_clean(info.value, "benchmark.batch_sizes = 10000000", fix_words=("lower benchmark.batch_sizes",))
    assert "calibrate" not in stages(info.value.seen)

    # 1_000_000 random samples at 3x224x224 would be 602 GB: refused before torch tries to allocate it
    with pytest.raises(DataError) as info:
        load_dataset(DataSource(kind="random", limit=1_000_000), input_shape=[1, 3, 224, 224])
    assert_clean(info.value, "1000000 random samples", "more than", fix_words=("data.limit",))


def test_batch_size_larger_than_the_data_uses_the_data_once(demo) -> None:
    data = load_dataset(DataSource(kind="demo"))
    prepared = torch.nn.Identity()
    shapes: list[int] = []
    prepared.register_forward_hook(lambda _m, inp, _o: shapes.append(inp[0].shape[0]))
    _, steps = drive(calibrate(prepared, data, 10_000_000, 16))
    assert shapes == [len(data)] and steps[-1].total == 1
    recipe = Recipe(mode="fx", settings=QuantSettings(batch_size=10_000_000, calib_batches=2), benchmark=QUICK)
    preflight(recipe, demo)  # accepted: one batch is the whole calibration set, which fits


def _bomb_factory(folder: Path, message: str) -> Path:
    return write_factory(
        folder,
        f"""
class Bomb(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        if x.shape[0] > 1:  # calibration batches, not the single-sample checks before them
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError({message!r})
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bomb = Bomb()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        return self.head(self.bomb(self.conv(x)))


def build():
    return Net()


build.input_shape = [1, 1, 16, 16]
""",
    )


def test_out_of_memory_during_calibration_is_a_clear_error(tmp_path: Path) -> None:
    # The allocation failure is real torch text, raised from the model at batch 3: allocating 600 GB for real
    # would take the machine down with it.
    loaded = load_model(ModelSource(f"{_bomb_factory(tmp_path, ALLOC_ERROR)}:build"))
    recipe = Recipe(
        mode="eager",
        settings=QuantSettings(batch_size=4, calib_batches=8),
        calib=DataSource(kind="random", limit=32),
        benchmark=QUICK,
    )
    with pytest.raises(DataError) as info:
        drive(run_recipe(recipe, loaded))
    assert_clean(info.value, "ran out of memory", "calibrate batch 3 of 8", fix_words=("lower settings.batch_size",))
    assert isinstance(info.value.__cause__, RuntimeError)  # kept for the details view


# --------------------------------------------------------------------------- 10: faults and cancel mid-run


def test_model_raising_mid_calibration_names_module_and_line(tmp_path: Path) -> None:
    loaded = load_model(ModelSource(f"{_bomb_factory(tmp_path, 'index 7 is out of bounds')}:build"))
    for mode in ("fx", "eager"):
        recipe = Recipe(
            mode=mode,
            settings=QuantSettings(batch_size=4, calib_batches=8, skip=["bomb"] if mode == "fx" else []),
            calib=DataSource(kind="random", limit=32),
            benchmark=QUICK,
        )
        loaded.module.bomb.calls = 0
        with pytest.raises(FlowError) as info:
            drive(run_recipe(recipe, loaded))
        assert_clean(
            info.value, "'bomb' raised RuntimeError", "batch 3 of 8", "net.py:", "raise RuntimeError", "out of bounds"
        )
        assert [s.done for s in info.value.seen if s.stage == "calibrate"] == [0, 1, 2]


def _labeled_tensors(folder: Path, n: int = 64) -> DataSource:
    torch.manual_seed(0)
    torch.save(torch.randn(n, 1, 32, 32), folder / "x.pt")
    torch.save(torch.randint(0, 10, (n,)), folder / "y.pt")
    return DataSource(kind="tensor", path=str(folder / "x.pt"), labels=str(folder / "y.pt"))


@pytest.mark.parametrize(
    ("mode", "stage"),
    [("fx", "calibrate"), ("qat", "train"), ("fx", "benchmark")],
)
def test_cancel_stops_promptly_and_leaves_the_session_as_it_was(tmp_path: Path, mode: str, stage: str) -> None:
    data = _labeled_tensors(tmp_path)
    session = Session(
        Recipe(
            mode=mode,
            calib=data,
            train=data,
            eval=data,
            settings=QuantSettings(batch_size=4, calib_batches=8),
            qat=QATSettings(epochs=2, batch_size=8),
            benchmark=BenchmarkSettings(batch_sizes=[1], warmup=5, iters=50),
        )
    )
    session.load(zoo("plain_cnn"))
    before = (session.loaded, session.recipe.to_dict(), list(session.groups), list(session.results))
    events: list[str] = []
    session.subscribe(events.append)
    with pytest.raises(Cancelled) as info:
        drive(session.run(), cancel_at=(stage, 3))
    assert info.value.seen[-1] is info.value.cancelled_at  # nothing ran after the step the user cancelled in
    assert (session.loaded, session.recipe.to_dict(), session.groups, session.results) == before
    assert events == [] and not session.running
    assert session.run() is not None  # a new run may start


# --------------------------------------------------------------------------- 11: files written


def test_recipe_save_onto_a_full_disk_keeps_the_earlier_file(tmp_path: Path, small_disk) -> None:
    # a real, nearly full tmpfs (tests/conftest.py): the kernel refuses the write
    target = Recipe(mode="fx").save(small_disk / "r.toml")
    before = target.read_bytes()
    small_disk.fill(leave=0)
    with pytest.raises(ExportError) as info:
        Recipe(mode="qat").save(target)
    assert_clean(info.value, "r.toml", "is full", fix_words=("free space", "unchanged"))
    assert target.read_bytes() == before
    assert small_disk.files() == ["r.toml"]

    with pytest.raises(ExportError) as info:
        Recipe().save(tmp_path / "missing" / "r.toml")
    assert_clean(info.value, "does not exist")
    with pytest.raises(ExportError) as info:
        Recipe().save(tmp_path)
    assert_clean(info.value, "is a folder")
    assert not (tmp_path / "missing").exists() and not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- 13: one run at a time


def test_second_run_while_one_runs_is_refused(tmp_path: Path) -> None:
    session = Session(Recipe(mode="fx", calib=DataSource(kind="random", limit=16), benchmark=QUICK))
    session.load(zoo("plain_cnn"))
    first = session.run()
    next(first)  # started: the first worker is inside the run
    assert session.running
    with pytest.raises(FlowError) as info:
        session.run()
    assert_clean(info.value, "already in progress", fix_words=("wait", "cancel"))
    result = run(first)
    session.add_result(result)
    assert not session.running
    second = session.run()  # a run created but not yet started also counts
    with pytest.raises(FlowError):
        session.run()
    second.close()  # cancelled before it began
    assert not session.running
    failing = Session(Recipe(mode="fx", calib=DataSource(kind="tensor", path=str(tmp_path / "none.npy"))))
    failing.load(zoo("plain_cnn"))
    with pytest.raises(DataError):
        run(failing.run())
    assert not failing.running  # a failed run frees the session too
    assert session.results == [result]


# --------------------------------------------------------------------------- fuzz: mutated valid recipes


VALID_RECIPE = (
    Recipe(
        mode="qat",
        fusion=[["conv1", "bn1", "relu"]],
        settings=QuantSettings(skip=["fc"], batch_size=8),
        train=DataSource(kind="tensor", path="x.npy", labels="y.npy"),
    )
    .to_toml()
    .encode("utf-8")
)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_RECIPE) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_byte_mutated_valid_recipe_gives_a_recipe_or_a_recipe_error(tmp_path: Path, edits) -> None:
    data = bytearray(VALID_RECIPE)
    for pos, xor in edits:
        data[pos] ^= xor
    path = tmp_path / "r.toml"
    path.write_bytes(bytes(data))
    try:
        recipe = Recipe.load(path)
    except RecipeError as exc:
        assert exc.problem and exc.fix and "r.toml" in exc.problem
    else:
        assert Recipe.from_toml(recipe.to_toml()) == recipe
        code_files(recipe)  # never raises either
