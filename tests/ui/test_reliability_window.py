"""Issue #5 at the window: bad input, faults and untrusted files end in a clear message, nothing run, nothing lost.

Every test drives the real window on the real demo model (and tiny real
models), then checks four things: the user sees a message naming the problem
(the error box, the trust prompt or the status bar), no code from an
untrusted file ran (a marker file stays absent), the earlier model, settings,
results and export are intact, and the window still works.

Dialogs are answered the way a user answers them: a timer finds the modal
box among the application's windows and presses one of its buttons.  File
pickers are static ``QFileDialog`` calls and are replaced with ``monkeypatch``
(docs/ui-testing.md).  The few faults that cannot be produced for real on this
machine are simulated at the OS or torch boundary, each saying so.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from dialogs import (
    DialogAnswerer,
    close_error,
    decline,
    error_shown,
    idle,
    open_with_dialog,
    press_button,
    run_to_end,
    run_to_failure,
)
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLineEdit,
    QPushButton,
)

from qstudio.core.recipe import ModelSource, Recipe
from qstudio.ui import create_main_window

FAST = ["--calib-batches", "2", "--iters", "3", "--batch-size", "8"]
ZOO = Path(__file__).resolve().parents[1] / "core" / "models" / "zoo.py"


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def window(qtbot):
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.controller.wait(30000)


@dataclass
class Snapshot:
    loaded: object
    recipe: str
    results: list
    groups: list
    mode_shown: str

    @classmethod
    def of(cls, window) -> Snapshot:
        s = window.controller.session
        return cls(
            s.loaded,
            s.recipe.to_toml(),
            list(s.results),
            copy.deepcopy(s.groups),
            window.findChild(QComboBox, "modeCombo").currentData(),
        )

    def assert_kept(self, window) -> None:
        """The model, the settings (recipe and what the widgets show), fusion groups and results are as before."""
        assert Snapshot.of(window) == self


def still_usable(qtbot, window) -> None:
    """After the fault: the window runs the demo to the end (the earlier model was kept)."""
    close_error(window)
    idle(qtbot, window)
    assert window.controller.session.loaded.name == "demo"
    result = run_to_end(qtbot, window)
    assert window.controller.session.last is result


# ----------------------------------------------------------------------------- files that are code


class _Evil:
    """Unpickling this opens (creates) the marker file: stands in for any malicious payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": _Evil(marker)}, path)
    return path, marker


def test_evil_payload_is_real(tmp_path):
    """Guard: unpickling the file used below really does create the marker."""
    path, marker = evil_pickle(tmp_path)
    torch.load(path, weights_only=False)["x"].close()
    assert marker.exists()


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


# ----------------------------------------------------------------------------- broken model files


def _state_dict_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    return path


def _truncated(tmp_path: Path) -> Path:
    data = _state_dict_file(tmp_path).read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(5).randbytes(4096))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "afolder.pt"
    path.mkdir()
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.pt"


def _mutated_zip(tmp_path: Path) -> Path:
    """A torch zip file whose data.pkl entry has flipped bytes (bit rot inside a valid zip directory)."""
    raw = bytearray(_state_dict_file(tmp_path).read_bytes())
    at = raw.find(b"data.pkl") + len("data.pkl") + 64  # past the local header, in the pickle stream
    raw[at : at + 16] = bytes(b ^ 0x5A for b in raw[at : at + 16])
    path = tmp_path / "mutated.pt"
    path.write_bytes(bytes(raw))
    return path


BROKEN = {
    "truncated": (_truncated, ["truncated.pt"]),
    "random-bytes": (_random_bytes, ["random.pt"]),
    "empty": (_empty, ["empty.pt", "empty"]),
    "folder": (_folder, ["afolder.pt", "folder"]),
    "missing": (_missing, ["missing.pt", "does not exist"]),
    "mutated-zip": (_mutated_zip, ["mutated.pt"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_file_shows_the_problem_and_keeps_the_demo(qtbot, window, tmp_path, case):
    make, words = BROKEN[case]
    path = make(tmp_path)
    before = Snapshot.of(window)
    open_with_dialog(window, str(path), f"{ZOO}:plain_cnn")
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert fix.startswith("Fix: ")
    assert "Unexpected error" not in problem and "bug in qstudio" not in problem
    idle(qtbot, window)
    before.assert_kept(window)
    assert window.findChild(QPushButton, "runButton").isEnabled()


# ----------------------------------------------------------------------------- state_dict and factory problems


def test_state_dict_that_does_not_match_the_factory_lists_the_mismatches(qtbot, window, tmp_path):
    weights = tmp_path / "other.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 2)).state_dict(), weights)
    before = Snapshot.of(window)
    open_with_dialog(window, str(weights), f"{ZOO}:plain_cnn")
    problem, fix = error_shown(qtbot, window)
    assert "missing keys: conv1.weight" in problem and "unexpected keys: 0.weight" in problem, problem
    assert fix.startswith("Fix: ")
    idle(qtbot, window)
    before.assert_kept(window)
    still_usable(qtbot, window)


FACTORIES = {
    "raises": ("def build():\n    raise ValueError('no weights configured')\n", ["build", "no weights configured"]),
    "import-fails": ("raise RuntimeError('broken at import')\n", ["broken at import"]),
    "not-python": ("\x00\x01 this is not ) python (\n", ["not valid Python"]),
    "not-a-module": ("def build():\n    return 42\n", ["build", "int"]),
}


@pytest.mark.parametrize("case", list(FACTORIES))
def test_bad_factory_shows_the_problem_and_keeps_the_demo(qtbot, window, tmp_path, case):
    text, words = FACTORIES[case]
    factory = tmp_path / "factory.py"
    factory.write_text(text)
    before = Snapshot.of(window)
    open_with_dialog(window, f"{factory}:build")
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert "factory.py" in problem and fix.startswith("Fix: ")
    assert "Unexpected error" not in problem
    idle(qtbot, window)
    before.assert_kept(window)


def test_bad_factory_for_a_state_dict_keeps_the_demo_and_the_window_runs(qtbot, window, tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text("def build():\n    return 'a string'\n")
    before = Snapshot.of(window)
    open_with_dialog(window, str(_state_dict_file(tmp_path)), f"{factory}:build")
    problem, _fix = error_shown(qtbot, window)
    assert "factory.py:build" in problem and "str" in problem, problem
    idle(qtbot, window)
    before.assert_kept(window)
    still_usable(qtbot, window)


# ----------------------------------------------------------------------------- a recipe that names code


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


# ----------------------------------------------------------------------------- flows: eager, fusion, FX trace
# Eager mode on the demo (a tensor + without stubs) is covered by
# tests/ui/test_window.py::test_eager_on_demo_fails_with_a_readable_message_and_keeps_state.


def test_invalid_fusion_group_is_refused_inline_and_groups_stay(qtbot, window):
    panel = window.tree_panel
    before = Snapshot.of(window)
    selection = panel.view.selectionModel()
    selection.clearSelection()
    for name in ("fc", "pool"):  # a Linear and a pooling layer: no fused kernel exists for them
        index = panel.proxy.mapFromSource(panel.model.index_for(name, 0))
        selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
    assert panel.fuse_button.isEnabled()
    panel.fuse_button.click()
    label = window.findChild(type(panel.problems_label), "fusionProblems")
    assert label.isVisible()
    assert "cannot fuse" in label.text() and "supported:" in label.text()  # problem and what would work
    before.assert_kept(window)
    assert window.errors.box is None
    still_usable(qtbot, window)


def test_fx_trace_failure_on_data_dependent_control_flow_is_explained(qtbot, window):
    open_with_dialog(window, f"{ZOO}:gated_cnn")  # `if x.mean() > 0:` inside forward
    qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
    idle(qtbot, window)
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    assert "trace" in problem.lower() and "gate" in problem, problem
    assert "'gate' in float" in fix and "tree" in fix, fix
    assert message.startswith(problem)
    before.assert_kept(window)
    close_error(window)
    window.tree_panel.set_keep_float(["gate"], True)  # the fix the message names: tick 'gate' in the tree
    result = run_to_end(qtbot, window)
    assert "gate" in result.coverage.float_layers or any(n.startswith("gate") for n in result.coverage.float_layers)


# ----------------------------------------------------------------------------- calibration data


def _calib(tmp_path: Path, case: str) -> tuple[Path, Path | None, list[str]]:
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    labels = None
    if case == "nan":
        x[3, 0, 5, 5] = np.nan
        words = ["NaN"]
    elif case == "inf":
        x[1, 0, 0, 0] = np.inf
        words = ["inf"]
    elif case == "wrong-shape":
        x = x[:, :, :5, :5]
        words = ["shape"]
    elif case == "empty":
        x = x[:0]
        words = ["empty"]
    elif case == "wrong-dtype":
        x = np.array(["a"] * 16)
        words = ["dtype"]
    else:  # labels of the wrong length
        labels = tmp_path / "labels.npy"
        np.save(labels, np.zeros(5, np.int64))
        words = ["labels", "5"]
    path = tmp_path / f"calib-{case}.npy"
    np.save(path, x)
    return path, labels, words


@pytest.mark.parametrize("case", ["nan", "inf", "wrong-shape", "empty", "wrong-dtype", "labels-length"])
def test_bad_calibration_file_chosen_in_the_picker_fails_the_run_with_the_reason(
    qtbot, window, tmp_path, monkeypatch, case
):
    path, labels, words = _calib(tmp_path, case)
    full = case == "nan"  # one case also proves an earlier result survives and a later run works (time)
    first = run_to_end(qtbot, window) if full else None  # an earlier result that must survive
    picker = window.settings_panel.calibPicker
    kind = picker.findChild(QComboBox, "kindCombo")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    index = kind.findData("tensor")
    kind.setCurrentIndex(index)
    kind.activated.emit(index)  # the user's pick opens the file dialog
    if labels is not None:
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(labels), ""))
        picker.findChild(QPushButton, "labelsButton").click()
    assert window.controller.session.recipe.calib.path == str(path)
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word.lower() in problem.lower(), problem
    assert path.name in problem and fix.startswith("Fix: ")
    assert "Unexpected error" not in problem
    assert message.startswith(problem)
    before.assert_kept(window)
    assert window.controller.session.results == ([first] if full else [])
    if not full:
        return
    close_error(window)
    index = kind.findData("demo")  # back to good data: the window runs again
    kind.setCurrentIndex(index)
    kind.activated.emit(index)
    run_to_end(qtbot, window)


# ----------------------------------------------------------------------------- backend, memory


def test_backend_this_cpu_lacks_is_refused_with_the_ones_that_work(qtbot, window, tmp_path, monkeypatch):
    # Every quantized backend is supported on this machine, so one is taken away at torch's boundary:
    # torch.backends.quantized.supported_engines is what PyTorch reports for the CPU and build.
    real = list(torch.backends.quantized.supported_engines)
    monkeypatch.setattr(
        type(torch.backends.quantized), "supported_engines", property(lambda self: [e for e in real if e != "qnnpack"])
    )
    recipe_path = tmp_path / "arm.toml"
    recipe = Recipe.from_toml(window.controller.session.recipe.to_toml())
    recipe.settings.backend = "qnnpack"  # a recipe made on an ARM machine
    recipe.save(recipe_path)
    window.open_recipe(str(recipe_path))
    idle(qtbot, window)
    combo = window.findChild(QComboBox, "backendCombo")
    assert combo.currentData() == "qnnpack" and "not available here" in combo.currentText()
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, fix = error_shown(qtbot, window)
    assert "qnnpack" in problem and "not supported" in problem, problem
    assert "x86" in fix
    assert message.startswith(problem)
    before.assert_kept(window)
    close_error(window)
    combo.setCurrentIndex(combo.findData("x86"))
    run_to_end(qtbot, window)


def test_huge_batch_size_gives_a_memory_message_and_never_freezes_the_window(qtbot, window):
    """Out of memory, simulated by a batch size no machine can hold (10M demo images, ~37 TB per batch)."""
    edit = window.findChild(QLineEdit, "benchBatchSizesEdit")
    edit.setText("1,10000000")  # typed by the user
    edit.editingFinished.emit()
    assert window.controller.session.recipe.benchmark.batch_sizes == [1, 10_000_000]
    first_results = list(window.controller.session.results)
    before = Snapshot.of(window)

    gaps: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def beat() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(beat)
    heartbeat.start()
    try:
        message = run_to_failure(qtbot, window, timeout=30_000)
    finally:
        heartbeat.stop()
    problem, fix = error_shown(qtbot, window)
    assert "memory" in problem.lower() and "10000000" in problem, problem
    assert "batch_sizes" in fix, fix
    assert "Unexpected error" not in message
    assert max(gaps, default=0) < 500, sorted(gaps, reverse=True)[:5]  # the window never froze
    before.assert_kept(window)
    assert window.controller.session.results == first_results
    close_error(window)
    edit.setText("1")  # the fix the message names
    edit.editingFinished.emit()
    run_to_end(qtbot, window)


# ----------------------------------------------------------------------------- workers: faults, cancel, close
# Closing the window while a worker runs: tests/ui/test_window.py::test_close_while_running_ends_the_thread.
# Cancel during calibration: tests/ui/test_window.py::test_cancel_midway_stops_within_a_batch.


def test_model_that_raises_mid_run_reaches_the_user_and_the_window_recovers(qtbot, window, tmp_path):
    factory = tmp_path / "flaky.py"
    factory.write_text(
        "import torch\n\n"
        "class Flaky(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(784, 10)\n"
        "        self.calls = 0\n\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 3:\n"
        "            raise RuntimeError('sensor buffer overflow in Flaky.forward')\n"
        "        return self.fc(x.flatten(1))\n\n"
        "def build():\n    return Flaky()\n\n"
        "build.input_shape = [1, 1, 28, 28]\n"
    )
    open_with_dialog(window, f"{factory}:build")
    qtbot.waitUntil(lambda: window.controller.session.loaded.name != "demo", timeout=30_000)
    idle(qtbot, window)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(
        window.findChild(QComboBox, "modeCombo").findData("dynamic")  # runs the Python forward, no trace
    )
    before = Snapshot.of(window)
    message = run_to_failure(qtbot, window)
    problem, _fix = error_shown(qtbot, window)
    assert "sensor buffer overflow" in problem, problem
    assert "flaky.py" in problem, problem  # blames the model's own line, not qstudio
    assert message.startswith(problem)
    assert window.errors.box.detailedText()  # the traceback one click away
    before.assert_kept(window)
    assert window.findChild(QPushButton, "runButton").isEnabled()
    close_error(window)
    window.act_open_demo.trigger()
    qtbot.waitUntil(lambda: window.controller.session.loaded.name == "demo", timeout=30_000)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(window.findChild(QComboBox, "modeCombo").findData("fx"))
    still_usable(qtbot, window)


def _cancel_when(window, stage_test: Callable[[object], bool]) -> list:
    seen: list = []

    def on_progress(step) -> None:
        seen.append(step)
        if stage_test(step) and window.controller.busy and not getattr(on_progress, "done", False):
            on_progress.done = True
            window.findChild(QPushButton, "cancelButton").click()

    window.controller.progress.connect(on_progress)
    return seen


def test_cancel_during_qat_training(qtbot, window):
    combo = window.findChild(QComboBox, "modeCombo")
    combo.setCurrentIndex(combo.findData("qat"))
    window.controller.session.recipe.qat.epochs = 5
    before = Snapshot.of(window)
    seen = _cancel_when(window, lambda s: s.stage == "train" and s.done >= 2)
    message = run_to_failure(qtbot, window)
    assert "cancelled" in message and "nothing was changed" in message
    assert not window.controller.session.running  # the cancelled run is closed now, not whenever the GC runs
    train = [s.done for s in seen if s.stage == "train"]
    total = max(s.total for s in seen if s.stage == "train")
    assert max(train) < total // 2  # stopped long before the five epochs were done
    assert window.errors.box is None  # a cancel is not an error
    before.assert_kept(window)
    assert window.controller.session.results == []
    combo.setCurrentIndex(combo.findData("fx"))
    run_to_end(qtbot, window)


def test_cancel_during_benchmarking(qtbot, window):
    window.controller.session.recipe.benchmark.iters = 100_000  # minutes of timing if not stopped
    before = Snapshot.of(window)
    seen = _cancel_when(window, lambda s: s.stage.startswith("benchmark") and s.done >= 1)
    message = run_to_failure(qtbot, window, timeout=60_000)
    assert "cancelled" in message
    assert not window.controller.session.running
    assert any(s.stage.startswith("benchmark") for s in seen)
    assert window.errors.box is None
    before.assert_kept(window)
    assert window.controller.session.results == []
    window.controller.session.recipe.benchmark.iters = 3
    still_usable(qtbot, window)


# ----------------------------------------------------------------------------- export


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != name and name in p.name)


def _fail_mkstemp(monkeypatch) -> None:
    # Tests run as root, where chmod cannot make a folder read-only; the OS refusal is simulated where
    # the atomic writer asks the OS for its temporary file.
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("case", ["read-only-folder", "missing-folder", "full-disk"])
def test_export_failure_keeps_the_earlier_file_and_leaves_no_partial_file(
    qtbot, window, tmp_path, monkeypatch, request, case
):
    run_to_end(qtbot, window)
    if case == "full-disk":  # a real, nearly full tmpfs (tests/conftest.py), filled after the earlier export
        disk = request.getfixturevalue("small_disk")
        folder = disk.path
    else:
        folder = tmp_path / "exports"
        folder.mkdir()
    out = folder / "model_int8.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "TorchScript (*.pt)"))
    window.findChild(QPushButton, "exportButton").click()  # the earlier export
    qtbot.waitUntil(lambda: out.exists() and not window.controller.busy, timeout=60_000)
    earlier = out.read_bytes()

    target = out
    if case == "missing-folder":
        target = tmp_path / "no_such_folder" / "model_int8.pt"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "TorchScript (*.pt)"))
    elif case == "read-only-folder":
        _fail_mkstemp(monkeypatch)
    else:
        disk.fill()
    before = Snapshot.of(window)
    window.findChild(QPushButton, "exportButton").click()
    problem, fix = error_shown(qtbot, window)
    idle(qtbot, window)
    expected = {"read-only-folder": "permission denied", "missing-folder": "does not exist", "full-disk": "is full"}
    assert expected[case] in problem.lower(), problem
    assert fix.startswith("Fix: ") and "Unexpected error" not in problem
    assert out.read_bytes() == earlier  # byte-identical
    assert _leftovers(folder, "model_int8.pt") == []  # no partial or temporary file
    assert not target.parent.exists() or case != "missing-folder"
    before.assert_kept(window)
    assert window.findChild(QPushButton, "exportButton").isEnabled()


# ----------------------------------------------------------------------------- settings and recipes
# A corrupt settings file at start: tests/ui/test_window.py::test_corrupt_settings_file_is_ignored_with_warning
# (the test below also checks the user is told).


def test_corrupt_settings_file_is_reported_in_the_window(qtbot, isolated_settings):
    ini = isolated_settings / "qstudio" / "qstudio.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_bytes(b"[window]\ngeometry=@ByteArray(\x00\xff\x00\n\x00garbage[[[")
    w = create_main_window(FAST)
    qtbot.addWidget(w)
    w.show()
    assert "could not be read and was reset" in w.statusBar().currentMessage()
    assert "could not be read" in w.log_view.toPlainText()
    assert w.controller.session.loaded.name == "demo"
    still_usable(qtbot, w)
    w.close()  # the reset file takes the new settings again (a corrupt one is never written by Qt)
    assert b"garbage" not in ini.read_bytes() and b"recipe" in ini.read_bytes()


RECIPES = {
    "bad-key": ('version = 1\n[settings]\nbackend = "x86"\nbatchsize = 8\n', ["batchsize"]),
    "bad-value": ("version = 1\n[settings]\nbatch_size = -4\n", ["batch_size", "-4"]),
    "wrong-type": ("version = 1\nmode = 3\n", ["mode"]),
    "newer-version": ('version = 99\nmode = "fx"\n', ["version 99", "newer"]),
    "not-toml": ("mode = = fx\n", ["TOML"]),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_bad_recipe_file_is_explained_and_settings_stay(qtbot, window, tmp_path, case):
    text, words = RECIPES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    window.findChild(QComboBox, "modeCombo").setCurrentIndex(
        window.findChild(QComboBox, "modeCombo").findData("dynamic")  # a setting of the user's own
    )
    before = Snapshot.of(window)
    window.open_recipe(str(path))
    problem, fix = error_shown(qtbot, window)
    for word in words:
        assert word in problem, problem
    assert fix.startswith("Fix: ")
    assert not window.controller.busy
    before.assert_kept(window)


# ----------------------------------------------------------------------------- a second run


def test_second_run_while_one_runs_is_refused_with_a_message(qtbot, window):
    """The Run button is disabled while busy; F5 or a script calling run() again is refused, never raced."""
    finished: list = []
    window.runFinished.connect(finished.append)
    window.findChild(QPushButton, "runButton").click()
    assert window.controller.busy and not window.findChild(QPushButton, "runButton").isEnabled()
    first_worker = window.controller.worker
    window.run()  # what F5 / Ctrl+R call
    problem, fix = error_shown(qtbot, window)
    assert "still running" in problem and "Cancel" in fix
    assert window.controller.worker is first_worker
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=120_000)
    assert len(finished) == 1 and window.controller.session.results == finished
