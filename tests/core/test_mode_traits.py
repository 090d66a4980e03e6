"""Each flow declares what its mode needs and does (``mode_traits``); callers ask it instead of comparing mode
names.  These tests hold the declarations to what the flows really do on real models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qstudio.core import fusion, phrases
from qstudio.core.data import Dataset, load_dataset
from qstudio.core.flows import FlowInput, QuantizedModel, get_flow, known_modes, mode_traits
from qstudio.core.flows.traits import SETTINGS
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.pipeline import resolve_groups
from qstudio.core.recipe import MODES, DataSource, ModelSource, QATSettings, QuantSettings, Recipe

ROOT = Path(__file__).resolve().parents[2]
ZOO = Path(__file__).parent / "models" / "zoo.py"


def demo_split(split: str, limit: int) -> Dataset:
    return load_dataset(DataSource(kind="demo", split=split, limit=limit))


def recipe(mode: str, graph: str = "fx", **settings) -> Recipe:
    s = {"calib_batches": 2, "batch_size": 16, **settings}
    return Recipe(mode=mode, settings=QuantSettings(**s), qat=QATSettings(epochs=1, batch_size=32, graph=graph))


def quantize(loaded: LoadedModel, r: Recipe) -> tuple[QuantizedModel, list[str]]:
    """The recipe's flow on ``loaded`` with the demo's data; returns the result and the stages it went through."""
    model = loaded.module.eval()
    groups, _ = resolve_groups(r, model)
    calib = demo_split("calib", 64)
    train = demo_split("train", 64) if mode_traits(r.mode).trains else None
    inp = FlowInput(model, r, groups, calib, calib.sample(1), train, None)
    flow = get_flow(r)
    flow.preflight(inp)
    stages: list[str] = []
    steps = flow.run(inp)
    try:
        while True:
            stage = next(steps).stage
            if not stages or stages[-1] != stage:
                stages.append(stage)
    except StopIteration as done:
        return done.value, stages


def test_every_mode_a_recipe_takes_has_traits_and_an_unknown_one_is_named():
    assert set(known_modes()) == set(MODES)
    for mode in MODES:
        t = mode_traits(mode)
        assert t.mode == mode and t.settings <= set(SETTINGS) and t.stages
        assert not (t.calibrates and t.trains)
    with pytest.raises(KeyError, match="fx"):
        mode_traits("int4")
    with pytest.raises(KeyError, match="observer"):
        mode_traits("fx").uses("obsrver")


@pytest.mark.parametrize(
    ("mode", "graph"), [("fx", "fx"), ("eager", "fx"), ("qat", "fx"), ("qat", "eager"), ("dynamic", "fx")]
)
def test_each_flow_carries_its_mode_traits(mode, graph):
    flow = get_flow(recipe(mode, graph))
    assert flow.traits is mode_traits(mode) and flow.mode == mode


@pytest.mark.parametrize("mode", ["fx", "eager", "qat", "dynamic"])
def test_a_flow_goes_through_the_stages_its_traits_declare(demo, mode):
    loaded = load_model(ModelSource(f"{ZOO}:plain_cnn")) if mode == "eager" else demo  # eager refuses the demo
    t = mode_traits(mode)
    q, stages = quantize(loaded, recipe(mode))
    assert tuple(stages) == t.stages
    assert ("calibrate" in stages) == t.calibrates and ("train" in stages) == t.trains
    assert bool(q.history) == t.trains
    dynamic_kernels = any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in q.module.modules())
    assert dynamic_kernels != t.static_activations  # dynamic kernels quantize their float input on every call


def test_fusion_follows_the_traits(demo):
    """Dynamic mode fuses nothing; FX drops a suggested group holding a skipped layer, eager and QAT keep it."""
    model = demo.module.eval()
    everything = fusion.suggest_groups(model, set()).groups
    member = everything[0][0]
    for mode in MODES:
        t = mode_traits(mode)
        groups, _ = resolve_groups(recipe(mode, skip=[member]), model)
        if not t.fuses:
            assert groups == []
        elif t.prunes_skipped_groups:
            assert groups and not any(member in g for g in groups)
        else:
            assert any(member in g for g in groups)


def _outputs(loaded: LoadedModel, r: Recipe, x: torch.Tensor) -> torch.Tensor:
    q, _ = quantize(loaded, r)
    with q.engine(), torch.no_grad():
        return q.module(x)


@pytest.mark.parametrize("mode", ["dynamic", "qat"])
def test_settings_a_mode_does_not_use_change_nothing(demo, mode):
    t = mode_traits(mode)
    x = demo_split("eval", 32).inputs
    changes = {"observer": "minmax", "symmetric": True, "calib_batches": 1}
    unused = {k: v for k, v in changes.items() if not t.uses(k)}
    assert unused  # both modes leave some of them aside
    torch.manual_seed(0)
    plain = _outputs(demo, recipe(mode), x)
    torch.manual_seed(0)
    changed = _outputs(demo, recipe(mode, **unused), x)
    assert torch.equal(plain, changed), unused


def test_a_setting_a_mode_uses_changes_its_model(demo):
    """The check above can see a difference: FX's observer changes the INT8 model."""
    assert mode_traits("fx").uses("observer")
    x = demo_split("eval", 32).inputs
    assert not torch.equal(_outputs(demo, recipe("fx"), x), _outputs(demo, recipe("fx", observer="minmax"), x))


def test_labels_and_time_names_come_from_the_traits():
    def label(r: Recipe) -> str:
        return phrases.mode_label(SimpleNamespace(recipe=r))  # type: ignore[arg-type]

    assert phrases.MODE_LABELS == {"eager": "PTQ eager", "fx": "PTQ FX", "qat": "QAT", "dynamic": "dynamic"}
    assert label(recipe("fx")) == "PTQ FX" and label(recipe("eager")) == "PTQ eager"
    assert label(recipe("qat")) == "QAT (FX graph)" and label(recipe("qat", "eager")) == "QAT (eager graph)"
    assert label(recipe("dynamic", dynamic_dtype="float16")) == "dynamic (float16)"
    assert {m: mode_traits(m).time_label for m in MODES} == {
        "eager": "Calibration time",
        "fx": "Calibration time",
        "qat": "Training time",
        "dynamic": "Calibration time",
    }


def _imported_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


def test_asking_a_mode_imports_neither_torch_nor_the_flows():
    loaded = _imported_after("from qstudio.core.flows import mode_traits\nassert mode_traits('qat').trains")
    assert "torch" not in loaded and "qstudio.core.flows.base" not in loaded


def test_the_settings_panel_asks_the_traits_without_the_flows_machinery():
    pytest.importorskip("PySide6")
    loaded = _imported_after("import qstudio.ui.settings_panel")
    assert "qstudio.core.flows.traits" in loaded
    assert not {"qstudio.core.flows.base", "qstudio.core.flows.fx", "torch.ao.quantization.quantize_fx"} & loaded


def test_a_registered_flow_brings_its_mode_traits():
    code = """
import dataclasses
from qstudio.core.flows import get_flow, mode_traits, register_flow
from qstudio.core.flows.fx import FxPTQ
class Int4(FxPTQ):
    traits = dataclasses.replace(mode_traits("fx"), mode="int4", label="INT4")
register_flow("int4", "", Int4)
assert mode_traits("int4").label == "INT4"
"""
    _imported_after(code)
