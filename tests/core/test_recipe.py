"""Recipes round-trip through TOML for every flow and reject bad files with the key named."""

from __future__ import annotations

import pytest
from engine_checks import assert_clean

from qstudio.core.errors import ExportError, RecipeError
from qstudio.core.recipe import (
    RECIPE_VERSION,
    BenchmarkSettings,
    DataSource,
    ModelSource,
    QATSettings,
    QuantSettings,
    Recipe,
)

VARIANTS = {
    "eager": Recipe(
        mode="eager", fusion=[["conv1", "bn1", "relu"]], settings=QuantSettings(observer="minmax", skip=["fc"])
    ),
    "fx": Recipe(
        mode="fx",
        model=ModelSource("weights.pt", factory="model.py:build", trusted_sha256=None),
        settings=QuantSettings(backend="fbgemm", per_channel=False, symmetric=True, skip_worst=3),
        calib=DataSource(kind="folder", path="imgs", resize=256, crop=224, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]),
        eval=DataSource(kind="tensor", path="x.npy", labels="y.npy"),
        benchmark=BenchmarkSettings(batch_sizes=[1, 8], threads=2),
    ),
    "qat": Recipe(
        mode="qat",
        qat=QATSettings(epochs=3, lr=0.01, graph="eager", freeze_bn_epoch=2, freeze_observer_epoch=2),
        train=DataSource(kind="tensor", path="x.pt", labels="y.pt"),
    ),
    "dynamic": Recipe(
        mode="dynamic",
        model=ModelSource("enc.py:build"),
        input_shape=[1, 32],
        input_dtype="int64",
        settings=QuantSettings(dynamic_dtype="float16"),
        calib=DataSource(kind="random"),
    ),
}


@pytest.mark.parametrize("mode", sorted(VARIANTS))
def test_round_trip(mode, tmp_path):
    recipe = VARIANTS[mode]
    path = recipe.save(tmp_path / f"{mode}.toml")
    loaded = Recipe.load(path)
    assert loaded == recipe
    assert loaded.to_toml() == recipe.to_toml()
    assert f"version = {RECIPE_VERSION}" in path.read_text()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('mode = "fast"', "mode"),
        ('mode = "fx"\n[settings]\nbackend = "cuda"', "settings.backend"),
        ('mode = "fx"\n[settings]\nbatch_size = -1', "settings.batch_size"),
        ('mode = "fx"\n[settings]\nbatch_size = "8"', "settings.batch_size"),
        ('mode = "fx"\n[settings]\ncalibration = 3', "settings.calibration"),
        ('mode = "fx"\ncolour = "red"', "colour"),
        ('mode = "fx"\n[calib]\nkind = "folder"', "folder data needs a path"),
        ('mode = "fx"\n[eval]\nkind = "tensor"\npath = "x"\nmean = [1.0]', "eval.mean"),
        ('mode = "fx"\nfusion = [["conv1"]]', "fusion group"),
        ('mode = "fx"\ninput_shape = [1, 0, 3]', "input_shape"),
        ('mode = "qat"\n[qat]\nlr = 0', "qat.lr"),
        ('mode = "fx"\n[benchmark]\nbatch_sizes = []', "benchmark.batch_sizes"),
        ('mode = "fx"\nsettings = 3', "[settings] must be a table"),
        ('mode = "fx"\nversion = 99', "newer than this qstudio"),
        ('mode = "fx"\nversion = "1"', "version"),
        ("mode = fx", "not valid TOML"),
    ],
)
def test_bad_recipes_name_the_key(text, named, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        Recipe.load(path)
    assert named in str(err.value)
    assert "Fix:" in str(err.value)
    assert str(path) in str(err.value)


def test_missing_and_binary_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.load(tmp_path / "none.toml")
    with pytest.raises(RecipeError, match="folder"):
        Recipe.load(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecipeError, match="UTF-8"):
        Recipe.load(tmp_path / "bin.toml")


def test_save_to_a_missing_folder_or_onto_a_folder_names_it(tmp_path):
    with pytest.raises(ExportError) as info:
        Recipe().save(tmp_path / "missing" / "r.toml")
    assert_clean(info.value, "does not exist")
    with pytest.raises(ExportError) as info:
        Recipe().save(tmp_path)
    assert_clean(info.value, "is a folder")
    assert not (tmp_path / "missing").exists() and not list(tmp_path.glob("*.tmp"))
