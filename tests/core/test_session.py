"""The session the window observes: edits validate first, failures leave state intact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_checks import QUICK, assert_clean, drive, zoo

from qstudio.core.errors import Cancelled, DataError, FlowError, LoadError
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QATSettings, QuantSettings, Recipe
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


# --------------------------------------------------------------------------- runs: cancel, one at a time


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
