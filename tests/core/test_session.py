"""The session the window observes: edits validate first, failures leave state intact."""

from __future__ import annotations

import pytest

from qstudio.core.errors import LoadError
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, ModelSource, QuantSettings, Recipe
from qstudio.core.session import Session


@pytest.fixture
def session():
    s = Session(Recipe(settings=QuantSettings(calib_batches=2), benchmark=BenchmarkSettings(warmup=1, iters=3)))
    s.load(ModelSource("demo"))
    return s


def test_load_builds_tree_and_groups(session):
    assert session.tree is not None and session.tree.type == "DigitsResNet"
    assert session.tree.find("stem.0").output_shape == [1, 32, 32, 32]
    assert ["stem.0", "stem.1", "stem.2"] in session.groups and session.group_method == "data flow"
    assert session.tree.find("stem.0").fusion_group is not None


def test_failed_load_keeps_everything(session, tmp_path):
    events = []
    session.subscribe(events.append)
    before = (session.loaded, session.groups, session.tree, session.recipe.to_dict())
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(LoadError):
        session.load(ModelSource(str(tmp_path / "bad.pt")))
    assert (session.loaded, session.groups, session.tree, session.recipe.to_dict()) == before
    assert events == []


def test_fuse_unfuse_and_invalid_group(session):
    events = []
    session.subscribe(events.append)
    session.unfuse(["stem.0"])
    assert not any("stem.0" in g for g in session.groups)
    assert session.fuse(["stem.1", "stem.0", "stem.2"]) == []  # order follows the model
    assert ["stem.0", "stem.1", "stem.2"] in session.groups
    before = list(session.groups)
    problems = session.set_groups([*session.groups, ["fc", "pool"]])
    assert problems and problems[0].module == "fc"
    assert session.groups == before
    assert events == ["groups", "groups"]


def test_skip_and_run_annotate_tree(session):
    session.set_skip("fc", True)
    assert session.recipe.settings.skip == ["fc"] and session.tree.find("fc").kept_float
    result = run(session.run())
    session.add_result(result)
    assert session.last is result
    assert session.tree.find("fc").quantized is False
    assert session.tree.find("stem.0").quantized is True
    assert session.tree.find("stem.0").activation_sqnr_db is not None
    assert result.recipe.fusion == session.groups
