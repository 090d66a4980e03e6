"""One progress figure for a whole run: the plan a run announces, and RunProgress over real demo runs."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from qstudio.core.pipeline import RunData, load_run_data, run_plan, run_recipe
from qstudio.core.progress import PLAN, Progress, RunProgress, format_duration, run, stage_label
from qstudio.core.recipe import BenchmarkSettings, ModelSource, QuantSettings, Recipe


def recipe(**changes) -> Recipe:
    base = Recipe(
        model=ModelSource("demo"),
        mode="fx",
        settings=QuantSettings(calib_batches=4),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=10),
    )
    return dataclasses.replace(base, **changes)


def drive(work, tracker: RunProgress) -> tuple[object, list[tuple[Progress, float, float | None]]]:
    """Run ``work`` with ``tracker`` fed every step; each record is (step, overall fraction, eta) after it."""
    seen: list[tuple[Progress, float, float | None]] = []

    def on_progress(step: Progress) -> None:
        seen.append((step, tracker.update(step), tracker.eta))

    return run(work, on_progress), seen


# -- the engine's plan -------------------------------------------------------------------------
def test_a_run_announces_its_plan_first_and_follows_it(demo):
    result, seen = drive(run_recipe(recipe(), demo), RunProgress())
    first = seen[0][0]
    assert first.stage == PLAN and first.plan is not None and first.done == first.total == 0
    planned = [stage for stage, _work in first.plan]
    assert planned == [
        "prepare",
        "calibrate",
        "convert",
        "evaluate",
        "compare layers",
        "script",
        "runtimes",
        "benchmark",
    ]
    assert all(work > 0 for _stage, work in first.plan)
    ran: list[str] = []
    for step, _f, _eta in seen[1:]:
        if not ran or ran[-1] != step.stage:
            ran.append(step.stage)
    assert ran == planned  # every stage the run went through was announced, in that order
    assert result.evaluation.agreement > 0.9


def test_the_whole_run_is_one_fraction_that_never_goes_back(demo):
    # a clock that moves a quarter second each time it is read: the demo runs in well under the second an
    # estimate waits for on a quiet machine, and the test is about the estimate, not this machine's speed
    ticks = itertools.count(0.0, 0.25)
    tracker = RunProgress(clock=lambda: next(ticks))
    _result, seen = drive(run_recipe(recipe(), demo), tracker)
    fractions = [f for _s, f, _e in seen]
    assert fractions == sorted(fractions), "the overall fraction went backwards"
    assert fractions[0] == 0.0 and fractions[1] < 0.1  # starts near 0 ...
    assert fractions[-1] == pytest.approx(1.0)  # ... and the last step of the last stage is the whole run
    # no stage restarts the bar: calibration alone covers only part of it
    calib = [f for s, f, _e in seen if s.stage == "calibrate"]
    assert 0.0 < calib[-1] - calib[0] < 0.8
    # the time left for the whole run exists once the first stage that does work is done
    after_first = next(i for i, (s, _f, _e) in enumerate(seen) if s.stage not in (PLAN, "prepare", "calibrate"))
    assert all(eta is not None and eta >= 0 for _s, _f, eta in seen[after_first:])
    assert tracker.planned and "(whole run)" in tracker.describe_eta()
    tracker.finish()
    assert tracker.fraction == 1.0 and tracker.eta == 0.0


@pytest.mark.parametrize("mode", ["dynamic", "qat"])
def test_other_modes_plan_their_own_stages(demo, mode):
    from qstudio.core.recipe import DataSource, QATSettings

    changes: dict[str, object] = {"mode": mode}
    if mode == "qat":
        changes.update(
            qat=QATSettings(epochs=1),
            train=DataSource(kind="demo", split="train", limit=64),
            eval=DataSource(kind="demo", split="eval", limit=64),
        )
    tracker = RunProgress()
    _result, seen = drive(run_recipe(recipe(**changes), demo), tracker)
    planned = [stage for stage, _w in seen[0][0].plan]
    assert ("quantize" in planned) == (mode == "dynamic") and ("train" in planned) == (mode == "qat")
    assert "calibrate" not in planned
    fractions = [f for _s, f, _e in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_keeping_the_worst_layers_in_float_plans_the_second_pass(demo):
    """skip_worst quantizes twice and evaluates three times: repeated stages take their next planned entry."""
    tracker = RunProgress()
    _result, seen = drive(run_recipe(recipe(settings=QuantSettings(calib_batches=2, skip_worst=1)), demo), tracker)
    planned = [stage for stage, _w in seen[0][0].plan]
    assert planned.count("calibrate") == 2 and planned.count("evaluate") == 3
    fractions = [f for _s, f, _e in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_fewer_calibration_batches_than_set_is_said_not_silent(demo):
    """The demo's calibration split has 200 samples: 16 batches of 16 would need 256, so 13 run."""
    r = recipe(settings=QuantSettings(calib_batches=16, batch_size=16))
    step = next(run_recipe(r, demo))
    assert step.stage == PLAN
    assert step.metrics == {"calibration_batches": 13.0, "calibration_samples": 200.0}
    assert "13 batches, not the 16 set" in step.message and "200 samples" in step.message
    quiet = next(run_recipe(recipe(settings=QuantSettings(calib_batches=4)), demo))
    assert quiet.message == "" and quiet.metrics["calibration_batches"] == 4.0


def test_plan_weights_follow_the_work(demo):
    """More calibration batches or benchmark iterations make those stages a larger share of the run."""
    data: RunData = load_run_data(recipe(), demo)

    def share(r: Recipe, stage: str) -> float:
        plan = dict(run_plan(r, data))
        return plan[stage] / sum(w for _s, w in run_plan(r, data))

    assert share(recipe(settings=QuantSettings(calib_batches=12)), "calibrate") > share(recipe(), "calibrate")
    more_iters = recipe(benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=200))
    assert share(more_iters, "benchmark") > share(recipe(), "benchmark")
    assert run_plan(recipe(), data, export=True)[-1][0] == "export"


# -- RunProgress on its own --------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stages_map_onto_their_planned_shares_and_the_eta_counts_down():
    clock = Clock()
    tracker = RunProgress(clock=clock)
    tracker.update(Progress(PLAN, 0, 0, plan=(("calibrate", 50.0), ("evaluate", 50.0))))
    for done in range(41):  # a steady 0.25 s per batch: half the run in 10 s
        tracker.update(Progress("calibrate", done, 40))
        clock.now += 0.25
    clock.now -= 0.25
    assert tracker.fraction == pytest.approx(0.5)
    assert tracker.describe() == "Calibrating · 50%"
    assert tracker.eta == pytest.approx(10.0, rel=0.2)  # the smoothed estimate has settled on the rate
    before = tracker.eta
    clock.now += 2.0
    assert tracker.eta == pytest.approx(before - 2.0)  # counts down between steps
    tracker.update(Progress("evaluate", 2, 4))
    assert tracker.fraction == pytest.approx(0.75)
    assert tracker.describe_eta().endswith("left (whole run)")


def test_unplanned_and_restarted_stages_never_move_the_bar_back():
    tracker = RunProgress(clock=Clock())
    tracker.update(Progress(PLAN, 0, 0, plan=(("evaluate", 1.0), ("evaluate", 1.0), ("benchmark", 2.0))))
    tracker.update(Progress("evaluate", 4, 4))
    assert tracker.fraction == pytest.approx(0.25)
    tracker.update(Progress("evaluate", 0, 4))  # the same stage again: the second planned entry
    tracker.update(Progress("evaluate", 2, 4))
    assert tracker.fraction == pytest.approx(0.375)
    tracker.update(Progress("mystery", 0, 10))  # not planned: no progress, none taken away
    assert tracker.fraction == pytest.approx(0.375) and tracker.label == "Mystery"
    tracker.update(Progress("benchmark", 1, 2))
    assert tracker.fraction == pytest.approx(0.75)
    tracker.update(Progress("benchmark", 2, 2))
    assert tracker.fraction == pytest.approx(1.0)
    tracker.update(Progress("benchmark", 0, 2))  # measured again: as much work again, the bar waits ...
    assert tracker.fraction == pytest.approx(1.0) and tracker._total == pytest.approx(6.0)
    tracker.update(Progress("benchmark", 2, 2))  # ... and ends full
    assert tracker.fraction == pytest.approx(1.0)
    tracker.update(Progress("evaluate", 0, 4))  # an earlier stage again, past the plan: stays put
    assert tracker.fraction == pytest.approx(1.0)


def test_without_a_plan_the_fraction_is_the_stage_own():
    tracker = RunProgress(clock=Clock())
    tracker.update(Progress("load", 0, 1))
    assert tracker.fraction == 0.0 and not tracker.planned
    tracker.update(Progress("load", 1, 1))
    assert tracker.fraction == 1.0 and tracker.describe() == "Loading · 100%"
    assert "(whole run)" not in tracker.describe_eta()


def test_progress_stays_backwards_compatible():
    step = Progress("calibrate", 1, 4, "msg", {"loss": 1.0})
    assert step.plan is None and step.fraction == 0.25
    assert stage_label("benchmark FP32 eager") == "Benchmarking"
    assert [format_duration(s) for s in (2, 35, 240, 3900)] == [
        "a few seconds",
        "about 35 s",
        "about 4 min",
        "about 1 h 5 min",
    ]


def test_the_cli_shows_one_bar_for_the_whole_run(demo):
    from qstudio.console import ProgressPrinter

    with ProgressPrinter() as printer:
        run(run_recipe(recipe(), demo), printer.update)
        (task,) = printer._bar.tasks  # one bar, not one per stage
        assert task.completed == pytest.approx(printer.STEPS, abs=1)
        assert task.description == "Benchmarking"
    assert printer.tracker.fraction == 1.0
