"""torch's quantized engine (``torch.backends.quantized.engine``) is process-wide: a flow sets it to the recipe's
backend while it quantizes and puts it back, also when it fails; the backend travels with the quantized model
(``QuantizedModel.engine()``) for whoever copies, converts or exports it, because those repack its weights with
the engine current at the time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qstudio.core import fusion, torchscript
from qstudio.core.data import Dataset, load_dataset
from qstudio.core.errors import FlowError
from qstudio.core.flows import FlowInput, QuantizedModel, get_flow, mode_traits, quantized_engine
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.progress import Progress
from qstudio.core.recipe import DataSource, ModelSource, QATSettings, QuantSettings, Recipe

ZOO = Path(__file__).parent / "models" / "zoo.py"
ENGINES = torch.backends.quantized.supported_engines
DEFAULT = torch.backends.quantized.engine


def _two_engines() -> tuple[str, str]:
    """A backend to quantize for and another engine to have set before the run."""
    for backend, before in (("fbgemm", "qnnpack"), ("qnnpack", "x86"), ("x86", "onednn")):
        if backend in ENGINES and before in ENGINES:
            return backend, before
    pytest.skip(f"needs two quantized engines; this build has {ENGINES}")


@pytest.fixture(autouse=True)
def _engine_back_to_default():
    yield
    torch.backends.quantized.engine = DEFAULT  # whatever a failing assertion left


def demo_split(split: str, limit: int) -> Dataset:
    return load_dataset(DataSource(kind="demo", split=split, limit=limit))


def flow_input(loaded: LoadedModel, mode: str, backend: str, calib: Dataset) -> FlowInput:
    recipe = Recipe(
        mode=mode,
        settings=QuantSettings(backend=backend, calib_batches=2, batch_size=16),
        qat=QATSettings(epochs=1, batch_size=32),
    )
    model = loaded.module.eval()
    groups = fusion.suggest_groups(model, set()).groups if mode_traits(mode).fuses else []
    train = demo_split("train", 64) if mode_traits(mode).trains else None
    return FlowInput(model, recipe, groups, calib, calib.sample(1), train, None)


def quantize(inp: FlowInput) -> tuple[QuantizedModel, set[str]]:
    """Preflight and run the recipe's flow; returns the result and the engines seen at each progress step."""
    flow = get_flow(inp.recipe)
    flow.preflight(inp)
    seen: set[str] = set()
    steps = flow.run(inp)
    try:
        while True:
            step = next(steps)
            assert isinstance(step, Progress)
            seen.add(torch.backends.quantized.engine)
    except StopIteration as done:
        return done.value, seen


@pytest.mark.parametrize("mode", ["fx", "eager", "dynamic", "qat"])
def test_a_flow_sets_the_engine_while_it_works_and_puts_it_back(demo, mode):
    backend, before = _two_engines()
    loaded = load_model(ModelSource(f"{ZOO}:plain_cnn")) if mode == "eager" else demo  # eager refuses the demo
    inp = flow_input(loaded, mode, backend, demo_split("calib", 64))
    torch.backends.quantized.engine = before
    q, seen = quantize(inp)
    assert seen == {backend}  # calibration, training and convert ran with the recipe's backend
    assert torch.backends.quantized.engine == before
    assert q.backend == backend and q.mode == mode


def test_a_flow_that_refuses_the_model_puts_the_engine_back(demo):
    """Eager mode refuses the demo (a residual ``+``) in its preflight, after quantizing a copy to try it."""
    backend, before = _two_engines()
    torch.backends.quantized.engine = before
    with pytest.raises(FlowError, match="--mode fx"):
        quantize(flow_input(demo, "eager", backend, demo_split("calib", 16)))
    assert torch.backends.quantized.engine == before


def test_the_recipe_backend_packs_the_weights_whatever_engine_was_set_before(demo):
    """The model is the same whichever engine was current: the flow packs for the recipe's backend."""
    backend, before = _two_engines()
    calib = demo_split("calib", 64)
    x = demo_split("eval", 32).inputs
    models = []
    for current in (backend, before):
        torch.backends.quantized.engine = current
        q, _ = quantize(flow_input(demo, "fx", backend, calib))
        with q.engine(), torch.no_grad():
            models.append(q.module(x))
    assert torch.equal(models[0], models[1])


def test_converting_a_quantized_model_under_its_engine_keeps_its_outputs(demo):
    """TorchScript conversion repacks the weights with the current engine; under ``q.engine()`` it is the model."""
    backend, before = _two_engines()
    torch.backends.quantized.engine = before
    q, _ = quantize(flow_input(demo, "fx", backend, demo_split("calib", 64)))
    x = demo_split("eval", 32).inputs
    with q.engine():
        assert torch.backends.quantized.engine == backend
        script, _method = torchscript.to_torchscript(q.module, x[:1])
        with torch.no_grad():
            assert torch.equal(script(x), q.module(x))
    assert torch.backends.quantized.engine == before


def test_quantized_engine_puts_the_engine_back_after_an_error():
    backend, before = _two_engines()
    torch.backends.quantized.engine = before
    with pytest.raises(RuntimeError, match="inside"), quantized_engine(backend):
        assert torch.backends.quantized.engine == backend
        raise RuntimeError("inside")
    assert torch.backends.quantized.engine == before


def test_a_whole_run_leaves_the_engine_as_it_was(demo, quick_bench):
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.progress import run

    backend, before = _two_engines()
    torch.backends.quantized.engine = before
    recipe = Recipe(mode="fx", settings=QuantSettings(backend=backend, calib_batches=1), benchmark=quick_bench)
    result = run(run_recipe(recipe, demo))
    assert result.quantized is not None and result.quantized.backend == backend
    assert torch.backends.quantized.engine == before
