"""The search: real runs of the demo (and a torchvision model) chosen by Optuna, within a budget, replayable.

Trials here are short (few benchmark iterations, torch's runtime only unless a
test names others) but every one is a real quantization, evaluation and
benchmark of the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qstudio.cli.main import main as cli_main
from qstudio.core.errors import RecipeError
from qstudio.core.formatting import headline
from qstudio.core.progress import CancelToken, run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe
from qstudio.core.search import SearchSettings, SearchTrial, choose_best, pareto_front, search


def demo_recipe(**settings) -> Recipe:
    return Recipe(
        model=ModelSource("demo"),
        mode="fx",
        settings=QuantSettings(calib_batches=4, **settings),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=8),
    )


def test_demo_search_finds_a_model_within_budget_no_slower_than_the_plain_run(demo):
    steps = []
    result = run(search(demo_recipe(), demo, SearchSettings(max_drop=1.0, trials=5, runtimes=[])), steps.append)
    assert result.metric == "accuracy"  # the demo's eval split is labelled
    assert len(result.trials) == 5 and result.stopped == "trials"
    plain = result.plain
    assert plain.origin == "plain run" and plain.state == "complete"
    assert result.trials[1].origin == "worst 1 in float" and result.trials[1].recipe.settings.skip
    best = result.best
    assert best is not None and best.within_budget
    assert best.quality >= result.fp32_quality - 0.01 - 1e-9
    if plain.within_budget:
        assert best.speedup >= plain.speedup
    # the winner, measured again beside the runtimes, with the user's batch sizes
    assert result.final is not None and result.final.recipe.settings.skip == best.recipe.settings.skip
    # progress: one stage, never backwards, with the best so far once there is one
    fractions = [s.fraction for s in steps if s.stage == "search"]
    assert fractions == sorted(fractions) and fractions[-1] > 0.7
    assert any(s.metrics and "best_speedup" in s.metrics for s in steps)
    doc = json.loads(json.dumps(result.to_json()))
    assert {"trials", "pareto", "best"} <= doc.keys()
    first = doc["trials"][0]
    assert {"recipe", "accuracy", "latency_ms", "speedup", "within_budget"} <= first.keys()
    assert doc["pareto"] and all(doc["trials"][i]["state"] == "complete" for i in doc["pareto"])
    # every trial is a recipe that loads back
    for t in doc["trials"]:
        Recipe.from_dict(t["recipe"])


def test_cancel_returns_the_best_so_far(demo):
    token = CancelToken()

    def after(trial, _result):
        if trial.number >= 1:
            token.cancel()

    result = run(
        search(demo_recipe(), demo, SearchSettings(max_drop=5.0, trials=10, runtimes=[]), cancel=token, on_trial=after)
    )
    assert result.stopped == "cancelled"
    assert len(result.trials) == 2
    assert result.best is not None  # 5 points: the plain demo run is within
    assert "cancelled" in result.summary()


def test_time_budget_stops_with_the_best_so_far(demo):
    result = run(search(demo_recipe(), demo, SearchSettings(max_drop=5.0, time_budget=4.0, runtimes=[])))
    assert result.stopped == "time"
    assert result.trials and result.trials[0].state == "complete"  # a trial cut short is not kept
    # the time budget also covers the winner's final run: its figures stay its trial's, and the search says so
    assert not result.remeasured and result.to_json()["remeasured"] is False
    assert any("not measured again beside every runtime (time budget reached)" in n for n in result.notes)
    assert all(t.state != "running" for t in result.trials)


def test_accuracy_metric_needs_labels(demo):
    recipe = demo_recipe()
    recipe.eval = DataSource(kind="random")
    with pytest.raises(RecipeError, match="labelled"):
        run(search(recipe, demo, SearchSettings(max_drop=1.0, metric="accuracy", trials=2)))


def test_near_ties_are_said_first_and_a_budget_no_trial_met_names_what_does():
    """A random 1000-way classifier on random data, within 0 points of agreement.

    19% of its answers are near-ties, so INT8 flips some and no INT8 trial
    meets the budget (keeping both layers in float does, but that is no INT8
    model): the search says why first, then measures the closest trial beside
    every runtime and names the fastest row within budget (an FP32 one).
    """
    from engine_checks import loaded
    from torch import manual_seed, nn

    manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1000))
    recipe = Recipe(
        mode="fx",
        settings=QuantSettings(calib_batches=2),
        calib=DataSource(kind="random"),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=8),
    )
    recipe.deploy.runtimes = []  # torch's rows only: FP32 eager, frozen TorchScript FP32 and INT8
    result = run(search(recipe, loaded(model, [1, 64]), SearchSettings(max_drop=0.0, trials=4, runtimes=[])))
    said = [n for n in result.warnings if n.startswith("AGREEMENT IS DOMINATED BY NEAR-TIES")]
    assert len(said) == 1 and said[0] in result.to_json()["warnings"]
    assert said[0] in result.trials[0].result.warnings  # the plain run's own verdict, not a second wording
    # "worst 2 in float" keeps both Linear layers in float: exact, but no INT8 model, so it is not within budget
    every_float = [t for t in result.trials if t.int8_layers == 0]
    assert every_float and all(not t.within_budget and "nothing INT8" in t.describe() for t in every_float)
    assert not {t.number for t in every_float} & set(result.pareto)
    assert result.best is None and result.closest is not None and result.closest.int8_layers != 0
    assert all((t.quality or 0) < 1.0 for t in result.trials if t.int8_layers)
    row = result.fallback
    assert row is not None and row.precision == "fp32" and row.agreement == 1.0
    note = next(w for w in result.warnings if w.startswith("NO TRIAL MET THE BUDGET:"))
    assert f"the fastest within budget is {row.label}" in note and "no quantization, a faster runtime" in note
    assert row.label in headline(note)  # the window's one line of it names the fallback
    assert result.to_json()["fallback"]["label"] == row.label


@pytest.mark.parametrize("storage", [False, True], ids=["in-memory", "sqlite"])
def test_a_configuration_is_run_once_and_a_small_space_ends_the_search_early(tmp_path, storage):
    """Dynamic INT8 of a two-layer MLP: 8 configurations in all (2 weight types x either layer in float or not).

    Asked for 40 trials, the search runs each configuration at most once (the
    sampler proposes some again: it is told their earlier figures) and ends
    when it proposes nothing new, saying so, rather than re-running them; in
    a shared study (SQLite) too, where the repeats must not count as trials.
    """
    from engine_checks import loaded
    from torch import manual_seed, nn

    from qstudio.core.search import _config_key

    manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    recipe = Recipe(
        mode="dynamic",
        calib=DataSource(kind="random"),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=8),
    )
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage else None
    settings = SearchSettings(max_drop=5.0, trials=40, runtimes=[], storage=url, study_name="small")
    result = run(search(recipe, loaded(model, [1, 64]), settings))
    keys = [_config_key(t.recipe) for t in result.trials]
    assert len(keys) == len(set(keys)) <= 8, [t.describe() for t in result.trials]
    assert result.stopped == "trials"
    assert any("proposed only configurations already tried" in n for n in result.notes), result.notes
    assert any("not run twice" in n for n in result.notes), result.notes
    assert result.best is not None and result.best.int8_layers


def test_pareto_front_and_choice():
    r = demo_recipe()

    def t(n, q, s, within=True, state="complete"):
        return SearchTrial(
            n, r, "x", state=state, quality=q, speedup=s, latency_ms=1 / s if s else None, within_budget=within
        )

    trials = [t(0, 0.97, 3.0), t(1, 0.98, 2.0), t(2, 0.96, 2.5), t(3, 0.95, 5.0, within=False), t(4, 0.99, 1.0)]
    assert pareto_front(trials) == [4, 1, 0, 3]  # 2 is beaten by 0 on both
    assert choose_best(trials) == (0, None)  # the fastest within budget; 3 is faster but over
    over = [t(0, 0.9, 3.0, within=False), t(1, 0.93, 2.0, within=False), t(2, None, 0, state="failed")]
    assert choose_best(over) == (None, 1)  # none within: the closest


def test_cli_search_writes_json_recipe_report_and_export_and_the_recipe_replays(tmp_path, capsys):
    out = tmp_path / "s.json"
    code = cli_main(
        [
            "search",
            "demo",
            "--max-drop",
            "1",
            "--trials",
            "3",
            "--calib-batches",
            "4",
            "--iters",
            "8",
            "--runtimes",
            "none",
            "--json",
            str(out),
            "--save-recipe",
            str(tmp_path / "w.toml"),
            "--report",
            str(tmp_path / "s.html"),
            "--export",
            str(tmp_path / "m"),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    doc = json.loads(out.read_text())
    assert len(doc["trials"]) == 3 and doc["best"]["within_budget"]
    assert "best is trial" in text
    # piped (a CI log, not a terminal): each table row and trial line is whole, not wrapped at 80 columns
    described = SearchTrial(0, Recipe.from_dict(doc["best"]["recipe"]), "").describe()
    assert any(described in line for line in text.splitlines()), text
    html = (tmp_path / "s.html").read_text()
    assert "<svg" in html and "Pareto" in html and "qstudio run" in html
    assert Path(tmp_path / "m.pt").stat().st_size > 0
    assert cli_main(["run", str(tmp_path / "w.toml")]) == 0


def test_cli_search_bad_budget_is_a_usage_error(capsys):
    assert cli_main(["search", "demo", "--max-drop", "-1"]) == 2
    assert "max-drop" in capsys.readouterr().err


@pytest.mark.parametrize("storage", [pytest.param(None, marks=pytest.mark.slow), "sqlite"])
def test_worker_processes_share_the_study(demo, tmp_path, storage):
    """--workers 2: a real second process runs trials on the same Optuna study (a journal file, or an SQLite RDB)."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage else None
    settings = SearchSettings(max_drop=2.0, trials=5, runtimes=[], workers=2, storage=url, study_name="t")
    result = run(search(demo_recipe(), demo, settings))
    assert result.stopped == "trials", result.notes
    assert not [n for n in result.notes if "worker process failed" in n]
    elsewhere = [t for t in result.trials if t.origin.endswith("(another worker)")]
    assert elsewhere, [t.origin for t in result.trials]  # the worker process ran some of them
    assert all(t.state in ("complete", "pruned", "failed") for t in result.trials)
    assert len(result.trials) >= 5 and result.best is not None
    if storage:  # the study is in the database for anyone to read (or join)
        import optuna

        study = optuna.load_study(study_name="t", storage=url)
        run_trials = [t for t in study.trials if "repeat_of" not in t.user_attrs]  # repeats were told, not run
        assert len(run_trials) == len(result.trials)


def test_sigterm_stops_a_cli_search_with_the_best_so_far_written(tmp_path):
    """A CI job's timeout sends SIGTERM: the search stops as on Ctrl-C and every output is still written."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "s.json"
    argv = [sys.executable, "-m", "qstudio.cli", "search", "demo", "--max-drop", "1", "--trials", "30"]
    argv += ["--calib-batches", "4", "--iters", "8", "--runtimes", "none", "--json", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 300
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("trial  1 "):  # two trials done: stop it mid-search
            proc.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "".join(seen)
    rest, _ = proc.communicate(timeout=300)
    text = "".join(seen) + rest
    assert proc.returncode == 0, text
    doc = json.loads(out.read_text())
    assert doc["stopped"] == "cancelled" and 2 <= len(doc["trials"]) < 30 and doc["best"]["within_budget"]
    assert doc["remeasured"] is False and "measured again beside every runtime, on" not in text
