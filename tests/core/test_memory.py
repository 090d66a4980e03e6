"""Memory preflight: a batch or a data set that cannot fit is refused before it is allocated, with the size that fits.

Real models and real checks against what this machine reports as free.  Where a real
allocation failure would take the machine down (hundreds of GB), the failure is the real
text torch raises, thrown from the model; the test says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_checks import QUICK, assert_clean, bomb_factory, drive, preflight, stages, write_factory

from qstudio.core import memory
from qstudio.core.data import load_dataset
from qstudio.core.errors import DataError
from qstudio.core.flows.base import calibrate
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe

ALLOC_ERROR = (  # the message torch really raised on this machine for a 3x224x224 batch of 1_000_000
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 602112000000 bytes. Error code 12 (Cannot allocate memory)"
)


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


def test_out_of_memory_during_calibration_is_a_clear_error(tmp_path: Path) -> None:
    # The allocation failure is real torch text, raised from the model at batch 3: allocating 600 GB for real
    # would take the machine down with it.
    loaded = load_model(ModelSource(f"{bomb_factory(tmp_path, ALLOC_ERROR)}:build"))
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


def test_format_bytes_counts_in_1024_steps() -> None:
    """One byte formatter for memory and disk messages (qstudio.core.fileio's disk-full message uses it too)."""
    assert [memory.format_bytes(n) for n in (0, 1023, 1024, 8 * 1024, 1536 * 1024, 602112000000)] == [
        "0 bytes", "1023 bytes", "1.0 KB", "8.0 KB", "1.5 MB", "560.8 GB",
    ]  # fmt: skip
