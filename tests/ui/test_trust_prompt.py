"""The window asks before it opens anything that would run code, and nothing runs until the user says yes.

A pickled model, a TorchScript file, a recipe naming a factory or replaying someone
else's trust: the prompt (``trustBox`` / ``codeTrustBox``) comes before any load work
starts, Cancel is its default, declining keeps everything (a marker file the payload
would create stays absent), and a yes covers exactly the bytes the user was shown.
Dialogs are answered by a timer, as a user answers them (tests/ui/dialogs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dialogs import (
    FAST,
    DialogAnswerer,
    Snapshot,
    close_error,
    decline,
    error_shown,
    idle,
    open_with_dialog,
    press_button,
    still_usable,
)
from untrusted import Evil

from qstudio.core.recipe import ModelSource, Recipe
from qstudio.ui import create_main_window


def evil_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": Evil(marker)}, path)
    return path, marker


@pytest.mark.parametrize("force_unsafe_env", [False, True], ids=["plain", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
def test_malicious_pickle_asks_for_trust_and_declining_runs_nothing(
    qtbot, window, tmp_path, monkeypatch, force_unsafe_env
):
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, marker = evil_pickle(tmp_path)
    before = Snapshot.of(window)
    answer = DialogAnswerer("trustBox", decline)
    try:
        open_with_dialog(window, str(path))
        qtbot.waitUntil(lambda: bool(answer.seen), timeout=30_000)
    finally:
        answer.stop()
    idle(qtbot, window)
    (seen,) = answer.seen
    assert "evil.pt" in seen["text"] and "run code" in seen["text"]
    assert "io.open" in seen["info"] and "arbitrary code" in seen["info"]  # names what the file would call
    assert seen["default"] == "Cancel"  # trust is never the default
    assert not marker.exists()
    before.assert_kept(window)
    assert "needs trust and none was given" in window.log_view.toPlainText()
    assert window.errors.box is None  # the user said no: no second, redundant error
    still_usable(qtbot, window)
    assert not marker.exists()


def test_torchscript_asks_for_trust_declined_keeps_demo_accepted_loads(qtbot, window, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())), str(path))
    before = Snapshot.of(window)
    answer = DialogAnswerer("trustBox", decline)
    try:
        open_with_dialog(window, str(path))
        qtbot.waitUntil(lambda: bool(answer.seen), timeout=30_000)
    finally:
        answer.stop()
    idle(qtbot, window)
    assert "scripted.pt" in answer.seen[0]["text"] and "TorchScript" in answer.seen[0]["info"]
    before.assert_kept(window)

    answer = DialogAnswerer("trustBox", press_button("I trust this file"))  # the same prompt, answered yes
    try:
        open_with_dialog(window, str(path))
        qtbot.waitUntil(lambda: window.controller.session.loaded.name == "scripted.pt", timeout=30_000)
    finally:
        answer.stop()
    assert window.controller.session.loaded.scripted


def test_the_question_comes_before_any_load_work_starts(qtbot, window, tmp_path):
    """The window decides up front what would run and asks first: no worker and no load until the user answers,
    then exactly one load (no failed first attempt, no re-open), for a model file and for a recipe alike."""
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2)), path)
    factory, marker = marker_factory(tmp_path)
    recipe_path = tmp_path / "shared.toml"
    Recipe(mode="dynamic", model=ModelSource(f"{factory}:build")).save(recipe_path)
    busy: list[bool] = []
    window.controller.busyChanged.connect(busy.append)
    at_question: list[tuple] = []

    def look_then(press):
        def answer(box) -> None:
            c = window.controller
            at_question.append((list(busy), c.busy, c.task, c.session.loaded.name, marker.exists()))
            press(box)

        return answer

    answer = DialogAnswerer("trustBox", look_then(decline))
    try:
        open_with_dialog(window, str(path))
    finally:
        answer.stop()
    assert at_question == [([], False, "", "demo", False)] and busy == []  # declined: no load was ever started

    cases = (
        ("trustBox", "I trust this file", lambda: open_with_dialog(window, str(path)), "demo", "whole.pt"),
        ("codeTrustBox", "Run this code", lambda: window.open_recipe(str(recipe_path)), "whole.pt", "net.py:build"),
    )
    for name, button, open_it, before, after in cases:
        busy.clear()
        at_question.clear()
        answer = DialogAnswerer(name, look_then(press_button(button)))
        try:
            open_it()
            qtbot.waitUntil(lambda after=after: window.controller.session.loaded.name == after, timeout=30_000)
        finally:
            answer.stop()
        idle(qtbot, window)
        (seen,) = at_question
        assert seen[:2] == ([], False) and seen[3:] == (before, False), seen  # nothing started, nothing imported
        assert busy == [True, False], busy  # one load, after the answer
    assert marker.exists()


def marker_factory(tmp_path: Path) -> tuple[Path, Path]:
    """A factory whose module-level code creates a marker file: importing it is running it."""
    marker = tmp_path / "factory-ran"
    factory = tmp_path / "net.py"
    factory.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "import torch\n\n"
        "def build():\n    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())\n\n"
        "build.input_shape = [1, 1, 8, 8]\n"
    )
    return factory, marker


def test_recipe_naming_a_factory_asks_before_running_it(qtbot, window, tmp_path):
    factory, marker = marker_factory(tmp_path)
    recipe_path = tmp_path / "shared.toml"
    Recipe(mode="dynamic", model=ModelSource(f"{factory}:build")).save(recipe_path)
    before = Snapshot.of(window)

    answer = DialogAnswerer("codeTrustBox", decline)
    try:
        window.open_recipe(str(recipe_path))  # File > Open recipe… and drag-and-drop call this
    finally:
        answer.stop()
    (seen,) = answer.seen
    assert "net.py" in seen["text"] and "run code" in seen["text"]
    assert str(factory) in seen["info"] and "executes" in seen["info"]
    assert seen["default"] == "Cancel"
    assert not marker.exists()  # nothing imported
    assert not window.controller.busy
    before.assert_kept(window)
    assert "you declined" in window.statusBar().currentMessage()
    assert window.errors.box is None

    answer = DialogAnswerer("codeTrustBox", press_button("Run this code"))
    try:
        window.open_recipe(str(recipe_path))
    finally:
        answer.stop()
    assert len(answer.seen) == 1
    qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
    idle(qtbot, window)
    assert marker.exists()
    assert window.controller.session.recipe.mode == "dynamic"

    # the yes is remembered for this exact content: no second prompt; an edited file asks again
    marker.unlink()
    answer = DialogAnswerer("codeTrustBox", decline)
    try:
        window.open_recipe(str(recipe_path))
        idle(qtbot, window)
        assert answer.seen == [] and marker.exists()
        factory.write_text(factory.read_text() + "\n# edited\n")
        marker.unlink()
        window.open_recipe(str(recipe_path))
    finally:
        answer.stop()
    assert len(answer.seen) == 1 and not marker.exists()


def test_factory_swapped_while_the_prompt_is_open_is_not_run(qtbot, window, tmp_path):
    """The user agrees to the file they were shown; a different file in its place by the time of import never runs."""
    factory, marker = marker_factory(tmp_path)
    recipe_path = tmp_path / "shared.toml"
    Recipe(mode="dynamic", model=ModelSource(f"{factory}:build")).save(recipe_path)
    before = Snapshot.of(window)
    swapped = factory.read_text().replace("build.input_shape", "import os\nbuild.input_shape")

    def swap_then_agree(dialog) -> None:
        factory.write_text(swapped)  # another process rewrites the file while the user reads the prompt
        press_button("Run this code")(dialog)

    answer = DialogAnswerer("codeTrustBox", swap_then_agree)
    try:
        window.open_recipe(str(recipe_path))
    finally:
        answer.stop()
    assert len(answer.seen) == 1
    problem, fix = error_shown(qtbot, window)
    assert "changed after you agreed to run it" in problem and "net.py" in problem, problem
    assert "open the recipe again" in fix
    assert not marker.exists()  # the swapped file was never imported
    before.assert_kept(window)
    close_error(window)
    # the yes was for the content shown, not for what replaced it: opening again asks again
    answer = DialogAnswerer("codeTrustBox", decline)
    try:
        window.open_recipe(str(recipe_path))
    finally:
        answer.stop()
    assert len(answer.seen) == 1 and not marker.exists()
    still_usable(qtbot, window)


def test_recipe_replaying_trust_for_a_pickle_asks_first(qtbot, window, tmp_path):
    """A recipe can carry trusted_sha256 for a model file; from someone else that is their trust, not yours."""
    from qstudio.core.loading import file_sha256

    path, marker = evil_pickle(tmp_path)
    recipe_path = tmp_path / "replay.toml"
    Recipe(model=ModelSource(str(path), trusted_sha256=file_sha256(path))).save(recipe_path)
    before = Snapshot.of(window)
    answer = DialogAnswerer("codeTrustBox", decline)
    try:
        window.open_recipe(str(recipe_path))
    finally:
        answer.stop()
    assert len(answer.seen) == 1 and "evil.pt" in answer.seen[0]["text"]
    idle(qtbot, window)
    assert not marker.exists()
    before.assert_kept(window)


def test_factory_picked_in_the_open_dialog_needs_no_second_prompt(qtbot, window, tmp_path):
    factory, marker = marker_factory(tmp_path)
    answer = DialogAnswerer("codeTrustBox", decline)
    try:
        open_with_dialog(window, f"{factory}:build")
        qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
        idle(qtbot, window)
        # the user's own choice is remembered: their last recipe naming it reopens without a prompt
        window.close()
        w2 = create_main_window(FAST)
        qtbot.addWidget(w2)
        w2.reopen_last_recipe()
        qtbot.waitUntil(lambda: w2.controller.session.loaded.name != "demo", timeout=30_000)
        idle(qtbot, w2)
    finally:
        answer.stop()
    assert answer.seen == []
    assert marker.exists()
