"""Fuzzing the recipe loader: random bytes and mutated valid recipes give a Recipe or a RecipeError, nothing else."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qstudio.core.errors import RecipeError
from qstudio.core.recipe import DataSource, QATSettings, QuantSettings, Recipe
from qstudio.core.trust import code_files

VALID = Recipe(
    mode="qat",
    fusion=[["conv1", "bn1", "relu"]],
    settings=QuantSettings(skip=["fc"], skip_worst=2),
    qat=QATSettings(epochs=3),
    train=DataSource(kind="tensor", path="x.npy", labels="y.npy"),
).to_toml()

# values of every TOML type, to put where a recipe expects something else
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _load(path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        Recipe.load(path)
    except RecipeError as exc:
        assert str(exc) and exc.fix, "every recipe error names a fix"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    _load(tmp_path / "r.toml", data)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
@given(cut=st.integers(0, len(VALID)), insert=st.text(max_size=12))
def test_truncated_and_spliced_text(tmp_path, cut, insert):
    _load(tmp_path / "r.toml", (VALID[:cut] + insert + VALID[cut:]).encode("utf-8"))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(section=st.sampled_from([None, "settings", "qat", "train", "calib", "benchmark", "model"]),
       key=st.text(min_size=1, max_size=12), value=ANY_VALUE)  # fmt: skip
def test_wrong_types_and_unknown_keys(section, key, value):
    doc = tomllib.loads(VALID)
    target = doc if section is None else doc.setdefault(section, {})
    keys = list(target) if isinstance(target, dict) else []
    # half the time overwrite an existing key with a value of a random type, else add a new key
    name = keys[hash(key) % len(keys)] if keys and len(key) % 2 else key
    if value is None:
        target.pop(name, None)
    else:
        target[name] = value
    with contextlib.suppress(RecipeError):  # a clean error is fine; anything else fails the test
        Recipe.from_dict(doc)


def test_accepted_recipes_round_trip():
    """Whatever the loader accepts must save and load back to the same recipe."""

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(section=st.sampled_from(["settings", "qat", "train", "benchmark"]), value=ANY_VALUE)
    def check(section, value):
        doc = tomllib.loads(VALID)
        key = sorted(doc[section])[len(repr(value)) % len(doc[section])]
        doc[section][key] = value
        try:
            recipe = Recipe.from_dict(doc)
        except RecipeError:
            return
        assert Recipe.from_toml(recipe.to_toml()) == recipe

    check()


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
