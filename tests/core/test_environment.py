"""The machine qstudio runs on: what it reports about itself and the quantized backends its CPU and build support."""

from __future__ import annotations

import pytest
import torch
from engine_checks import assert_clean, drive, zoo

from qstudio.core import environment
from qstudio.core.errors import FlowError
from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.recipe import DataSource, QuantSettings, Recipe


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
