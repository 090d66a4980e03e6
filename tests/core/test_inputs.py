"""Settings that follow the model: input shape and dtype from the model and its data, checked before a run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from qstudio.core import progress
from qstudio.core.errors import DataError
from qstudio.core.inputs import check_fits, guess_input
from qstudio.core.loading import load_model
from qstudio.core.recipe import DataSource, ModelSource, Recipe
from qstudio.core.session import Session, follow_model


class SmallNet(nn.Module):
    """Works only at 28x28: the flatten feeds a Linear sized for it (like LeNet-style user models)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.mark.parametrize(
    ("model", "shape", "dtype"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)), [1, 3, 224, 224], "float32"),
        (SmallNet(), [1, 1, 28, 28], "float32"),
        (nn.Sequential(nn.Conv1d(2, 4, 3), nn.AdaptiveAvgPool1d(1)), [1, 2, 128], "float32"),
        (nn.Sequential(nn.Linear(20, 5), nn.ReLU()), [1, 20], "float32"),
        (nn.Sequential(nn.Embedding(100, 8), nn.Flatten(), nn.LazyLinear(4)), [1, 16], "int64"),
        (nn.LSTM(6, 8, batch_first=True), [1, 16, 6], "float32"),
    ],
    ids=["conv2d-rgb", "lenet-28", "conv1d", "linear", "embedding", "lstm"],
)
def test_the_first_layer_and_a_test_forward_give_the_input(model, shape, dtype):
    guess = guess_input(model, None, None)
    assert (guess.shape, guess.dtype, guess.checked) == (shape, dtype, True), guess.origin


def test_a_declared_shape_is_kept_and_an_impossible_model_says_so():
    guess = guess_input(SmallNet(), [1, 1, 64, 64], None, "the factory's input_shape attribute")
    assert guess.shape == [1, 1, 64, 64] and guess.origin == "the factory's input_shape attribute"

    class NeedsTwo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x, mask):
            return self.conv(x) * mask

    guess = guess_input(NeedsTwo(), None, None)
    assert not guess.checked and guess.shape == [1, 3, 224, 224]
    assert "set the input shape" in guess.origin


def test_loaded_models_carry_their_input_and_its_origin(tmp_path):
    tv = load_model(ModelSource("torchvision:resnet18"))
    assert tv.input_shape == [1, 3, 224, 224] and tv.input_dtype == "float32"
    assert "torchvision" in tv.input_origin and not tv.shape_declared
    factory = tmp_path / "enc.py"
    factory.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Enc(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.emb = nn.Embedding(50, 8)
                    self.fc = nn.Linear(8, 3)

                def forward(self, input_ids):
                    return self.fc(self.emb(input_ids).mean(1))

            def build():
                return Enc()
            """
        )
    )
    enc = load_model(ModelSource(f"{factory}:build"))
    assert enc.input_dtype == "int64" and enc.input_shape == [1, 16]
    assert "Embedding" in enc.input_origin


def test_opening_another_model_resets_what_belonged_to_the_old_one():
    session = Session()
    session.load(ModelSource("demo"))
    session.recipe.settings.skip = ["layer1.0.conv1"]
    session.recipe.input_shape = [1, 1, 32, 32]
    session.load(ModelSource("torchvision:resnet18"))
    r = session.recipe
    assert r.input_shape is None and r.input_dtype is None and r.settings.skip == []
    assert r.calib.kind == "random" and r.eval is None and r.model.spec == "torchvision:resnet18"
    session.load(ModelSource("demo"))
    assert session.recipe.calib.kind == "demo"


def test_opening_the_model_a_recipe_names_keeps_the_recipe():
    recipe = Recipe(model=ModelSource("torchvision:resnet18"), input_shape=[1, 3, 64, 64])
    recipe.calib = DataSource(kind="random")
    recipe.settings.skip = ["fc"]
    loaded = load_model(ModelSource("torchvision:resnet18"))
    kept, notes = follow_model(recipe, loaded)
    assert kept.input_shape == [1, 3, 64, 64] and kept.settings.skip == ["fc"] and notes == []


def test_real_data_decides_a_guessed_shape_and_a_misfit_is_refused_before_calibration(tmp_path):
    session = Session()
    session.load(ModelSource("torchvision:resnet18"))
    np.save(tmp_path / "small.npy", np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32))
    session.recipe.calib = DataSource(kind="tensor", path=str(tmp_path / "small.npy"))
    session.recipe.settings.calib_batches = 1
    session.recipe.benchmark.iters = 2
    session.recipe.benchmark.warmup = 0
    result = progress.run(session.run())
    assert tuple(result.example.shape) == (1, 3, 64, 64)

    np.save(tmp_path / "gray.npy", np.zeros((8, 1, 64, 64), np.float32))
    session.recipe.calib = DataSource(kind="tensor", path=str(tmp_path / "gray.npy"))
    stages = []
    with pytest.raises(DataError) as err:
        progress.run(session.run(), stages.append)
    assert err.value.key == "calib" and "3 channels" in str(err.value) and "--calib-data" in err.value.fix
    assert not any(s.stage == "calibrate" for s in stages)


def test_check_fits_names_the_evaluation_data_and_random_data_points_at_the_shape():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    good, bad = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 8, 8)
    check_fits(model, {"calib": (good, "calib.npy", False)})
    with pytest.raises(DataError) as err:
        check_fits(model, {"calib": (good, "calib.npy", False), "eval": (bad, "eval.npy", False)})
    assert err.value.key == "eval" and "evaluation data" in err.value.problem and "eval.npy" in err.value.problem
    with pytest.raises(DataError) as err:
        check_fits(model, {"calib": (bad, "RANDOM data", True)})
    assert err.value.key == "input_shape" and "--input-shape" in err.value.fix


def test_int64_data_for_a_float_model_names_the_flag(tmp_path):
    np.save(tmp_path / "ids.npy", np.zeros((4, 3, 8, 8), np.int64))
    session = Session()
    session.load(ModelSource("torchvision:resnet18"))
    session.recipe.calib = DataSource(kind="tensor", path=str(tmp_path / "ids.npy"))
    with pytest.raises(DataError) as err:
        progress.run(session.run())
    assert "--input-dtype int64" in err.value.fix and err.value.key == "calib"


def test_cli_refuses_demo_data_for_resnet18_with_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qstudio.cli",
            "quantize",
            "torchvision:resnet18",
            "--mode",
            "fx",
            "--calib-data",
            "demo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("qstudio: error:")]
    assert len(errors) == 1 and "does not fit the model" in errors[0] and "3 channels" in errors[0]
    assert "Traceback" not in out.stderr


def test_cli_token_id_factory_quantizes_dynamically_with_int64_data(tmp_path):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).integers(0, 100, size=(16, 10), dtype=np.int64))
    plain = tmp_path / "plain.py"
    plain.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Encoder(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.embeddings = nn.Embedding(100, 16)
                    self.layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)

                def forward(self, input_ids):
                    return self.layer(self.embeddings(input_ids)).mean(1)

            def build():
                return Encoder()
            """
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qstudio.cli",
            "quantize",
            f"{plain}:build",
            "--mode",
            "dynamic",
            "--calib-data",
            str(ids),
            "--iters",
            "3",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["coverage"]["quantized_layers"]
