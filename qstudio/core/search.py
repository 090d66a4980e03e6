"""Search: the fastest configuration whose accuracy (or agreement with FP32) stays within a budget.

A search is a sequence of ordinary runs (:func:`qstudio.core.pipeline.run_recipe`),
one per *trial*; every trial is a :class:`~qstudio.core.recipe.Recipe`, so any
of them replays with ``qstudio run``.  Optuna chooses the trials (its
multi-objective TPE sampler: quality and speed are the two objectives, the
budget a constraint) through its ask/tell interface, so this generator keeps
control between batches: progress, cancelling and a time limit stop it at
once and it returns the best configuration found so far.

The space: mode (FX, eager where the model takes it; QAT only as a last
resort), backend, activation observer, per-channel and symmetric weights,
calibration size, which of the most sensitive layers stay float (any subset,
not only the worst-k prefix; the sensitivity is the per-layer SQNR of the
first, plain run) and the deployment runtime.  The first trials are chosen,
not sampled: the plain run as given, then keeping the worst one and two
layers in float, then each runtime, so the search never does worse than
what a user would try by hand.

Each trial's speed is its INT8 model against FP32 eager, timed interleaved in
the trial's own run (a ratio survives a change of machine load between
trials); its ``latency_ms`` is the plain run's FP32 eager latency divided by
that speedup, so latencies of trials measured minutes apart compare
(``measured_ms`` is the raw figure of its own run).  A trial whose quality is hopeless (far outside the budget) is
stopped before its benchmark, Optuna's "pruned".  The winner is measured
again at the end beside every runtime (its headline speedup is against the
fastest FP32 runtime, named) and, when hold-out data is given, on that data:
the eval data chose the winner, so its figure there is optimistic.

Trials run through an executor: here, sequentially in this process; with
``workers > 1`` also in worker processes that share an Optuna journal file;
with ``storage`` (an Optuna RDB URL or a journal file on a shared disk) on
every machine that runs the same search against that storage.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstudio.core.errors import Cancelled, QStudioError, RecipeError
from qstudio.core.flows.traits import mode_traits
from qstudio.core.progress import CancelToken, Progress
from qstudio.core.recipe import DataSource, Recipe

log = logging.getLogger(__name__)

METRICS = ("accuracy", "agreement")
#: trials when neither --trials nor --time-budget is given
DEFAULT_TRIALS = 16
#: how many of the most sensitive layers (lowest SQNR) the search may keep in float, each on its own
SENSITIVE_LAYERS = 8
#: a trial more than this many times the budget (and at least HOPELESS_POINTS) below FP32 is not timed
HOPELESS_FACTOR, HOPELESS_POINTS = 3.0, 2.0
CALIB_CHOICES = (4, 8, 16, 32)
#: after the trials, the fastest few within budget are measured a second time before the winner is chosen
CONFIRM_TOP = 3
#: the sampler proposing only configurations already tried this many times in a row: the space is exhausted
REPEATS_EXHAUSTED = 12


@dataclass
class SearchSettings:
    """What the user asks of a search."""

    max_drop: float = 1.0  # points of accuracy (or agreement) below FP32 the winner may lose
    metric: str | None = None  # None: accuracy with labelled eval data, else agreement
    time_budget: float | None = None  # seconds; None: until ``trials`` are done
    trials: int | None = None  # None: DEFAULT_TRIALS, or unlimited with a time budget
    seed: int = 0
    runtimes: list[str] | None = None  # runtimes a trial may deploy to; None: torchscript and every one installed
    allow_qat: bool = True  # QAT as a last resort (needs labelled training data)
    workers: int = 1  # >1: worker processes share the study through a journal file
    storage: str | None = None  # an Optuna storage URL (or journal file path) other machines join
    study_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_drop, (int, float)) or not math.isfinite(self.max_drop) or self.max_drop < 0:
            raise RecipeError(f"max_drop = {self.max_drop!r} is invalid", "give a number of points, 0 or more")
        if self.metric is not None and self.metric not in METRICS:
            raise RecipeError(f"metric = {self.metric!r} is not known", f"use one of: {', '.join(METRICS)}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise RecipeError(f"time budget = {self.time_budget!r} is invalid", "give seconds, more than 0")
        if self.trials is not None and self.trials < 1:
            raise RecipeError(f"trials = {self.trials!r} is invalid", "give at least 1 trial")
        if self.workers < 1:
            raise RecipeError(f"workers = {self.workers!r} is invalid", "give 1 or more worker processes")

    @property
    def trial_limit(self) -> int | None:
        if self.trials is not None:
            return self.trials
        return None if self.time_budget is not None else DEFAULT_TRIALS


@dataclass
class SearchTrial:
    """One configuration tried: its recipe, and what it measured (or why it was stopped)."""

    number: int
    recipe: Recipe
    origin: str  # "plain run", "worst 2 in float", "sampled", "QAT (last resort)"
    state: str = "running"  # "complete", "pruned" (quality hopeless, not timed), "failed"
    quality: float | None = None  # accuracy or agreement, 0..1
    latency_ms: float | None = None
    speedup: float | None = None  # FP32 eager / this INT8 model, interleaved in the trial's run
    within_budget: bool = False
    seconds: float = 0.0
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = field(default=None, repr=False, compare=False)  # the RunResult, kept for the best and the frontier
    stable: bool = True  # its timing was stable (qstudio's check); an unstable speedup may be inflated
    measured_ms: float | None = None  # the latency as measured in its own run (``latency_ms`` is scaled, see run_trial)
    measured: list[float] = field(default_factory=list)  # every speedup measured for it (a second run confirms)
    #: weighted layers running INT8 after convert; 0: every one was kept in float, so it is no INT8 model (never best)
    int8_layers: int | None = None

    @property
    def runtime(self) -> str:
        return self.recipe.deploy.target

    def describe(self) -> str:
        """``"FX x86 histogram, per-channel, 16 calib batches, 2 layers float, OpenVINO"``."""
        s = self.recipe.settings
        parts = [self.recipe.mode.upper() if self.recipe.mode != "qat" else "QAT"]
        if self.recipe.mode == "dynamic":
            parts.append(s.dynamic_dtype)
        else:
            parts += [s.backend, s.observer, "per-channel" if s.per_channel else "per-tensor"]
            if s.symmetric:
                parts.append("symmetric")
            parts.append(f"{s.calib_batches} calib batches")
        if self.int8_layers == 0:
            parts.append("every layer float (nothing INT8)")
        elif s.skip:
            parts.append(f"{len(s.skip)} layer{'s' if len(s.skip) != 1 else ''} float")
        parts.append(_RUNTIME_TITLES.get(self.runtime, self.runtime))
        return ", ".join(parts)

    def to_json(self, metric: str) -> dict[str, Any]:
        return {
            "number": self.number,
            "recipe": self.recipe.to_dict(),
            metric: self.quality,
            "latency_ms": self.latency_ms,
            "speedup": self.speedup,
            "within_budget": self.within_budget,
            "state": self.state,
            "origin": self.origin,
            "runtime": self.runtime,
            "description": self.describe(),
            "seconds": self.seconds,
            "note": self.note,
            "timing_stable": self.stable,
            "latency_measured_ms": self.measured_ms,
            "speedups_measured": self.measured,
            "int8_layers": self.int8_layers,
        }


_RUNTIME_TITLES = {"torchscript": "TorchScript", "onnx": "ONNX Runtime", "openvino": "OpenVINO", "pt2": "PT2E"}


@dataclass
class SearchResult:
    """Every trial, the frontier, the winner (the best so far when stopped early) and how the search ended."""

    model_name: str
    metric: str
    max_drop: float
    fp32_quality: float | None
    trials: list[SearchTrial]
    stopped: str  # "trials", "time", "cancelled", "failed"
    seconds: float
    best_index: int | None = None  # into ``trials``: fastest within budget
    closest_index: int | None = None  # when none is within budget: the smallest loss
    final: Any = None  # the winner's RunResult measured again beside every runtime (on hold-out data when given)
    holdout: DataSource | None = None
    notes: list[str] = field(default_factory=list)
    #: what must be seen, not hovered (under the summary, in bold): a budget no trial met, speeds measured on a busy
    #: machine, data that cannot resolve the metric, and the verdicts of the plain run and of the winner's final run
    warnings: list[str] = field(default_factory=list)
    executor: str = "sequential"
    #: the winner's ``final`` is a run of its own beside every runtime (False: the trial's own figures, kept on a stop)
    remeasured: bool = False
    #: when no trial met the budget: the fastest row (any runtime, any precision) of the closest trial measured
    #: beside every runtime that did (a RuntimeFigure), else None
    fallback: Any = None

    @property
    def best(self) -> SearchTrial | None:
        return self.trials[self.best_index] if self.best_index is not None else None

    @property
    def closest(self) -> SearchTrial | None:
        return self.trials[self.closest_index] if self.closest_index is not None else None

    @property
    def plain(self) -> SearchTrial | None:
        """The plain run as the user configured it (trial 0)."""
        return self.trials[0] if self.trials else None

    @property
    def pareto(self) -> list[int]:
        return pareto_front(self.trials)

    @property
    def budget_floor(self) -> float | None:
        """The lowest quality within budget (FP32's minus ``max_drop`` points)."""
        return None if self.fp32_quality is None else self.fp32_quality - self.max_drop / 100.0

    def summary(self) -> str:
        """One sentence: the winner and its figures, or why there is none."""
        done = sum(t.state != "running" for t in self.trials)
        how = {
            "time": "the time budget ran out",
            "cancelled": "cancelled",
            "trials": "all trials done",
            "running": "so far",
        }.get(self.stopped, self.stopped)
        best = self.best
        if best is not None:
            return (
                f"{done} trials ({how}): best is trial {best.number}, {best.describe()}: "
                f"{_fmt_q(best.quality)} {self.metric} ({self.points_vs_fp32(best)} points vs FP32, budget {self.max_drop:g}), "
                f"{best.speedup:.2f}x vs FP32 eager"
            )
        close = self.closest
        if close is not None:
            return (
                f"{done} trials ({how}): none within {self.max_drop:g} points of FP32; the closest is trial "
                f"{close.number}, {close.describe()}: {_fmt_q(close.quality)} {self.metric} "
                f"({self.points_vs_fp32(close)} points vs FP32)"
            )
        return f"{done} trials ({how}): no trial finished"

    def points_vs_fp32(self, trial: SearchTrial) -> str:
        """The trial's change against FP32 in points, signed (``"-0.40"``: 0.4 points below FP32), or ``"—"``."""
        drop = self.drop_points(trial)
        return "—" if math.isnan(drop) else f"{0.0 - drop:+.2f}"

    def drop_points(self, trial: SearchTrial) -> float:
        """Points below FP32 (negative: above)."""
        if trial.quality is None or self.fp32_quality is None:
            return math.nan
        return (self.fp32_quality - trial.quality) * 100.0

    def to_json(self) -> dict[str, Any]:
        best = self.best
        final = self.final
        doc: dict[str, Any] = {
            "model": self.model_name,
            "metric": self.metric,
            "max_drop": self.max_drop,
            "fp32": {self.metric: self.fp32_quality},
            "trials": [t.to_json(self.metric) for t in self.trials],
            "pareto": self.pareto,
            "best": best.to_json(self.metric) if best else None,
            "closest": self.closest.to_json(self.metric) if best is None and self.closest else None,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "executor": self.executor,
            "summary": self.summary(),
            "notes": self.notes,
            "warnings": self.warnings,
            "remeasured": self.remeasured,
            "holdout": None,
            "fallback": self.fallback.to_json() if self.fallback is not None else None,
        }
        if best is not None:
            doc["best"]["drop_points"] = self.drop_points(best)
        if final is not None:
            row = final.deployed
            doc["final"] = final.to_json()
            if self.holdout is not None and row is not None:
                doc["holdout"] = {
                    "data": self.holdout.describe(),
                    self.metric: _quality_of(final, self.metric),
                    "fp32": final.evaluation.fp32_accuracy if self.metric == "accuracy" else 1.0,
                    "latency_ms": row.latency_ms,
                    "speedup_vs_fp32_best": final.speedup_vs_fp32_best,
                }
        return doc


def _fmt_q(q: float | None) -> str:
    return "—" if q is None else f"{q * 100:.2f}%"


def pareto_front(trials: list[SearchTrial]) -> list[int]:
    """Indices of the complete INT8 trials no other beats on both quality and speed (ties kept).

    A trial that kept every layer in float is FP32 by another name: it is charted, but is no point of the frontier.
    """
    done = [
        (i, t)
        for i, t in enumerate(trials)
        if t.state == "complete" and t.quality is not None and t.speedup and t.int8_layers != 0
    ]
    front = []
    for i, t in done:
        dominated = any(
            (u.quality >= t.quality and u.speedup >= t.speedup) and (u.quality > t.quality or u.speedup > t.speedup)
            for _, u in done
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: trials[i].speedup or 0.0)


def _quality_of(result: Any, metric: str) -> float | None:
    row = result.deployed
    if row is not None:
        return _row_quality(row, metric)
    return result.evaluation.int8_accuracy if metric == "accuracy" else result.evaluation.agreement


def choose_best(trials: list[SearchTrial]) -> tuple[int | None, int | None]:
    """(fastest within budget, closest to the budget when none is): indices into ``trials``."""
    scored = [(i, t) for i, t in enumerate(trials) if t.quality is not None and t.state in ("complete", "pruned")]
    inside = [(i, t) for i, t in scored if t.within_budget and t.state == "complete" and t.speedup]
    if inside:
        return max(inside, key=lambda it: (it[1].speedup, it[1].quality))[0], None
    int8 = [(i, t) for i, t in scored if t.int8_layers != 0]  # a trial with nothing INT8 is no answer, however close
    if int8 or scored:
        return None, max(int8 or scored, key=lambda it: it[1].quality)[0]
    return None, None


# -- the space -------------------------------------------------------------------------------------------------
@dataclass
class Space:
    """The choices of one search, fixed when it starts (every worker builds the same one)."""

    modes: list[str]
    backends: list[str]
    runtimes: list[str]
    sensitive: list[str]  # layer names, most sensitive first: each may be kept in float on its own
    calib: list[int]
    ranked: list[str] = field(default_factory=list)  # every quantized layer, most sensitive first
    #: how many of ``ranked`` (a prefix) are kept in float besides the chosen ones: reaches past ``sensitive``
    deeper: list[int] = field(default_factory=lambda: [0])

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        d: dict[str, Any] = {
            "mode": CategoricalDistribution(self.modes),
            "runtime": CategoricalDistribution(self.runtimes),
        }
        if self.modes != ["dynamic"]:
            d.update(
                backend=CategoricalDistribution(self.backends),
                observer=CategoricalDistribution(["histogram", "minmax", "moving_average"]),
                per_channel=CategoricalDistribution([True, False]),
                symmetric=CategoricalDistribution([False, True]),
                calib_batches=CategoricalDistribution(self.calib),
            )
        else:
            d["dynamic_dtype"] = CategoricalDistribution(["qint8", "float16"])
        for k in range(len(self.sensitive)):
            d[f"float_{k}"] = CategoricalDistribution([False, True])
        if len(self.deeper) > 1:
            d["float_worst"] = CategoricalDistribution(self.deeper)
        return d

    def params_of(self, recipe: Recipe) -> dict[str, Any]:
        """The point of the space a recipe is (for trials the search did not sample)."""
        s = recipe.settings
        p: dict[str, Any] = {"mode": recipe.mode, "runtime": recipe.deploy.target}
        if self.modes != ["dynamic"]:
            p.update(
                backend=s.backend,
                observer=s.observer,
                per_channel=s.per_channel,
                symmetric=s.symmetric,
                calib_batches=min(self.calib, key=lambda c: abs(c - s.calib_batches)),
            )
        else:
            p["dynamic_dtype"] = s.dynamic_dtype
        for k, name in enumerate(self.sensitive):
            p[f"float_{k}"] = name in s.skip
        if len(self.deeper) > 1:
            p["float_worst"] = 0
        return p

    def recipe_for(self, base: Recipe, params: dict[str, Any]) -> Recipe:
        r = copy.deepcopy(base)
        r.mode = params["mode"]
        s = r.settings
        if "backend" in params:
            s.backend = params["backend"]
            s.observer = params["observer"]
            s.per_channel = params["per_channel"]
            s.symmetric = params["symmetric"]
            s.calib_batches = params["calib_batches"]
        if "dynamic_dtype" in params:
            s.dynamic_dtype = params["dynamic_dtype"]
        chosen = [name for k, name in enumerate(self.sensitive) if params.get(f"float_{k}")]
        chosen += self.ranked[: params.get("float_worst", 0)]
        s.skip = [*base.settings.skip, *(n for n in chosen if n not in base.settings.skip)]
        s.skip_worst = 0
        r.deploy.target = params["runtime"]
        r.deploy.runtimes = [] if params["runtime"] == "torchscript" else [params["runtime"]]
        return r


def _trial_recipe(base: Recipe) -> Recipe:
    """The user's recipe as a trial runs it: one batch size, no skip-worst pass (the search chooses float layers)."""
    r = copy.deepcopy(base)
    r.benchmark.batch_sizes = [min(r.benchmark.batch_sizes)]
    r.settings.skip_worst = 0
    r.deploy.target = "torchscript" if r.deploy.target == "auto" else r.deploy.target
    r.deploy.runtimes = [] if r.deploy.target == "torchscript" else [r.deploy.target]
    r.deploy.max_drop = None
    return r


def available_runtimes(settings: SearchSettings) -> list[str]:
    """torchscript, then every runtime installed here that a trial may deploy to (PT2E only when asked)."""
    from qstudio.core.runtimes import get_runtime

    names = settings.runtimes
    if names is None:
        names = ["torchscript", *(n for n in ("onnx", "openvino") if get_runtime(n).missing() is None)]
    names = [n for n in dict.fromkeys(["torchscript", *names])]
    return names


class _Hopeless(Exception):
    """Raised by a trial's gate: its quality is far outside the budget, so it is not timed."""

    def __init__(self, quality: float) -> None:
        super().__init__(quality)
        self.quality = quality


# -- one trial ---------------------------------------------------------------------------------------------------
@dataclass
class _Judge:
    """What a trial is measured against: the metric, FP32's quality and the budget."""

    metric: str
    max_drop: float
    fp32_quality: float | None = None
    eager_ms: float | None = None  # the plain run's FP32 eager latency: trials' latencies are scaled to it

    @property
    def floor(self) -> float | None:
        return None if self.fp32_quality is None else self.fp32_quality - self.max_drop / 100.0

    def hopeless(self, quality: float | None) -> bool:
        """Far outside the budget: not worth timing (Optuna's pruning)."""
        if self.fp32_quality is None or quality is None:
            return False
        limit = max(HOPELESS_FACTOR * self.max_drop, self.max_drop + HOPELESS_POINTS)
        return (self.fp32_quality - quality) * 100 > limit

    def within(self, trial: SearchTrial) -> bool:
        """Complete, at or above the floor, and an INT8 model (a trial that kept every layer in float is not)."""
        floor = self.floor
        return (
            trial.state == "complete"
            and trial.int8_layers != 0
            and floor is not None
            and trial.quality is not None
            and (trial.quality >= floor - 1e-12)
        )


def run_trial(
    trial: SearchTrial,
    loaded: Any,
    judge: _Judge,
    stop: Callable[[], str | None],
    *,
    strict: bool = False,
) -> Generator[Progress, None, None]:
    """Run one trial's recipe and record its figures on ``trial``, or why it stopped.

    Yields the run's own steps.  ``stop()`` is asked after each step; a reason
    ends the run there and raises :class:`Cancelled` with it.  A failure of the
    configuration is recorded (``state = "failed"``) unless ``strict``, when
    it is raised (the plain run: if it fails, nothing can be searched).
    """
    from qstudio.core.pipeline import run_recipe

    def gate(ev: Any) -> None:
        q = ev.int8_accuracy if judge.metric == "accuracy" else ev.agreement
        if judge.hopeless(q):
            raise _Hopeless(q)

    t0 = time.monotonic()
    work = run_recipe(trial.recipe, loaded, gate=None if strict else gate)
    try:
        while True:
            step = next(work)
            why = stop()
            if why:
                work.close()
                raise Cancelled(why)
            yield step
    except StopIteration as done:
        run = done.value
        trial.result = run
        trial.quality = _quality_of(run, judge.metric)
        row = run.deployed
        trial.measured_ms = row.latency_ms if row is not None else run.int8.latency_ms
        eager = run.fp32.latency_ms
        trial.speedup = eager / trial.measured_ms if eager and trial.measured_ms else None
        # trials run at different moments, so at different machine loads: their latencies are compared as
        # speedups (interleaved within each run) times one reference, the plain run's FP32 eager latency
        reference = judge.eager_ms or eager
        trial.latency_ms = reference / trial.speedup if reference and trial.speedup else trial.measured_ms
        trial.state = "complete"
        trial.int8_layers = len(run.coverage.quantized_layers)
        trial.stable = run.timing is None or run.timing.stable
        if trial.speedup:
            trial.measured.append(trial.speedup)
        if not trial.stable:
            trial.note = "timing unstable: the machine was busy during this trial"
        if trial.int8_layers == 0:
            trial.note = "nothing INT8: every weighted layer was kept in float, so this is no INT8 model"
        if trial.runtime != "torchscript" and (row is None or row.name != trial.runtime):
            trial.state = "failed"
            trial.note = (
                f"the {trial.runtime} model could not be built: {run.target_note or '; '.join(run.runtime_notes)}"
            )
    except _Hopeless as exc:
        trial.quality = exc.quality
        trial.state = "pruned"
        trial.note = "quality far outside the budget: not timed"
    except (Cancelled, KeyboardInterrupt):
        trial.state = "cancelled"
        raise
    except Exception as exc:  # a configuration the model cannot take: recorded, the search goes on
        if strict:
            raise
        trial.state = "failed"
        trial.note = str(exc) if isinstance(exc, QStudioError) else f"{type(exc).__name__}: {_first_line(exc)}"
        log.info("trial %d failed", trial.number, exc_info=True)
    finally:
        trial.seconds = time.monotonic() - t0
    trial.within_budget = judge.within(trial)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


# -- the study: Optuna's, in memory or in a shared storage ---------------------------------------------------
_ATTR = "qstudio"  # the trial user attribute holding what qstudio measured (shared with other processes)
_REPEAT = "repeat_of"  # the user attribute of a proposal that repeated a configuration tried: not run, not counted


def _open_storage(url: str) -> Any:
    """An Optuna storage from ``url``: an RDB URL (``sqlite:///x.db``, ``postgresql://``) or a journal file path."""
    import optuna

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(url)))


def _sampler(settings: SearchSettings) -> Any:
    import optuna

    # the budget is a constraint each trial sets (Trial.set_constraint): feasible when not over it
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=6)


def _trial_record(trial: SearchTrial) -> dict[str, Any]:
    return {
        "recipe": trial.recipe.to_dict(),
        "origin": trial.origin,
        "state": trial.state,
        "quality": trial.quality,
        "latency_ms": trial.latency_ms,
        "measured_ms": trial.measured_ms,
        "speedup": trial.speedup,
        "seconds": trial.seconds,
        "note": trial.note,
        "stable": trial.stable,
        "int8_layers": trial.int8_layers,
    }


def _objectives(trial: SearchTrial, judge: _Judge) -> tuple[list[float], float]:
    """What Optuna is told of a trial: (quality, speedup), and how many points it is over the budget (<= 0: within)."""
    q = trial.quality if trial.quality is not None else 0.0
    over = 0.0 if judge.fp32_quality is None else (judge.fp32_quality - q) * 100 - judge.max_drop
    if trial.int8_layers == 0:  # nothing INT8: whatever its quality, not a point of this search's feasible set
        over = max(over, 1.0)
    return [q, trial.speedup or 0.0], over


def _tell(study: Any, ot: Any, trial: SearchTrial, judge: _Judge, *, repeat: bool = False) -> None:
    """Tell Optuna what ``trial`` measured; ``repeat``: ``ot`` proposed ``trial``'s configuration again (not run)."""
    import optuna

    values, over = _objectives(trial, judge)
    ot.set_constraint("over_budget", over)
    if repeat:  # no record for the other processes to add as a trial, and no trial of the limit (_started_count)
        ot.set_user_attr(_REPEAT, trial.number)
    else:
        ot.set_user_attr(_ATTR, _trial_record(trial))
    if trial.state == "complete":
        study.tell(ot, values)
    elif trial.state == "pruned":
        # told with its quality and no speed (it was not timed), not as Optuna's PRUNED, which the sampler
        # ignores: where quality is lost is what it must learn when most trials are far outside the budget
        study.tell(ot, [values[0], 0.0])
    else:
        study.tell(ot, state=optuna.trial.TrialState.FAIL)


def _add_done(study: Any, space: Space, dists: dict[str, Any], trial: SearchTrial, judge: _Judge) -> None:
    """Add a trial run outside ask/tell (the plain run) to the study, so the sampler learns from it."""
    import optuna

    values, over = _objectives(trial, judge)
    params = space.params_of(trial.recipe)
    if any(k not in dists or params[k] not in dists[k].choices for k in params):
        return  # a plain run outside the space (a QAT recipe): the sampler starts from the seeds
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=dists,
            values=values,
            user_attrs={_ATTR: _trial_record(trial)},
            constraints={"over_budget": over},
        )
    )


def _finished_count(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def _config_key(recipe: Recipe) -> str:
    """What makes two trials the same configuration: their recipes, the float set as a set (its order is the sampler's)."""
    d = recipe.to_dict()
    d.get("settings", {})["skip"] = sorted(recipe.settings.skip)
    return json.dumps(d, sort_keys=True, default=str)


def _started_count(study: Any) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return sum(_REPEAT not in t.user_attrs for t in study.get_trials(deepcopy=False, states=states))


# -- the search ------------------------------------------------------------------------------------------------
def search(
    recipe: Recipe,
    loaded: Any,
    settings: SearchSettings,
    *,
    cancel: CancelToken | None = None,
    holdout: DataSource | None = None,
    on_trial: Callable[[SearchTrial, SearchResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    worker: bool = False,
) -> Generator[Progress, None, SearchResult]:
    """Search configurations of ``recipe`` for the fastest one within ``settings.max_drop`` points of FP32.

    Never raises on cancel or when time runs out: it returns the result so
    far (``stopped`` says why).  A trial that fails is recorded with its
    reason and the search goes on; only a failure of the plain first run
    (the model or data cannot be quantized at all) is raised.
    ``on_trial`` is called after each trial (this process's or another
    worker's), with the result so far.  ``worker``: this process joins a
    study another one started (:mod:`qstudio.core.search_worker`): it runs
    sampled trials until the study's limits are reached, and measures no winner.
    """
    import optuna

    from qstudio.core.run_data import load_run_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = clock()
    cancel = cancel or CancelToken()
    base = _trial_recipe(recipe)
    data = load_run_data(base, loaded)
    metric = settings.metric or ("accuracy" if data.eval.labels is not None else "agreement")
    if metric == "accuracy" and data.eval.labels is None:
        raise RecipeError(
            "--metric accuracy needs labelled evaluation data",
            "give --eval-data with --eval-labels, or search on --metric agreement (with FP32, no labels needed)",
        )
    limit = settings.trial_limit
    judge = _Judge(metric, float(settings.max_drop))
    result = SearchResult(loaded.name, metric, float(settings.max_drop), None, [], "running", 0.0, holdout=holdout)
    if data.eval_is_calib:
        result.notes.append(
            "The evaluation data is the calibration data: the figures are optimistic. Give separate --eval-data."
        )
    if holdout is None and not worker:
        result.notes.append(
            "No hold-out data: the evaluation data chose the winner, so its figure there is optimistic. "
            "Give --holdout-data (and --holdout-labels) to measure the winner on data the search did not see."
        )

    def why_stop() -> str | None:
        if cancel.cancelled:
            return "cancelled by the user"
        if settings.time_budget is not None and clock() - started >= settings.time_budget:
            return "time budget reached"
        return None

    shown = [0]  # the bar's position, in thousandths: never moves back

    def progress(done: float, message: str, final: float | None = None) -> Progress:
        """The bar: trials (or time) to 95%, the winner's measurement after them (``final``, 0..1) to 100%."""
        if final is None:
            frac_trials = done / limit if limit else 0.0
            frac_time = (clock() - started) / settings.time_budget if settings.time_budget else 0.0
            units = int(min(max(frac_trials, frac_time), 1.0) * 950)
        else:
            units = 950 + int(min(max(final, 0.0), 1.0) * 50)
        shown[0] = max(shown[0], units)
        best = result.best
        metrics = {"trials": float(sum(t.state != "running" for t in result.trials))}
        if best is not None and best.speedup:
            metrics.update(best_speedup=best.speedup, best_quality=best.quality or 0.0)
        return Progress("search", shown[0], 1000, message, metrics=metrics)

    def trial_steps(trial: SearchTrial, strict: bool = False) -> Generator[Progress, None, None]:
        from qstudio.core.progress import RunProgress

        bar = RunProgress()
        done_before = sum(t.state not in ("running", "cancelled") for t in result.trials if t is not trial)
        label = f"trial {trial.number}{' of ' + str(limit) if limit else ''}: {trial.describe()}"
        # the plain run is the reference every trial is judged against: only the user stops it, not the clock
        stop = (lambda: "cancelled by the user" if cancel.cancelled else None) if strict else why_stop
        for step in run_trial(trial, loaded, judge, stop, strict=strict):
            bar.update(step)
            yield progress(done_before + bar.fraction, f"{label} · {bar.describe()}")

    def finished(trial: SearchTrial) -> None:
        result.best_index, result.closest_index = choose_best(result.trials)
        keep = set(result.pareto) | {result.best_index, 0}
        for i, t in enumerate(result.trials):  # the models of dominated trials are let go (memory)
            if i not in keep:
                t.result = None
        if on_trial is not None:
            on_trial(trial, result)

    # -- the study: here in memory, or shared through a storage with worker processes / other machines
    shared = settings.storage is not None or settings.workers > 1
    folder = None
    if shared:
        import tempfile

        url = settings.storage
        if url is None:
            folder = tempfile.TemporaryDirectory(prefix="qstudio-search-")
            url = str(Path(folder.name) / "journal.log")
        storage = _open_storage(url)
        name = settings.study_name or f"qstudio-{loaded.name}-{settings.seed}"
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=["maximize", "maximize"],
            sampler=_sampler(settings),
            load_if_exists=True,
        )
        result.executor = (
            f"{settings.workers} processes sharing an Optuna journal"
            if settings.storage is None
            else f"Optuna study {name!r} in {url}"
        )
    else:
        url, name = None, None
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=_sampler(settings))
    known = study.user_attrs.get("space")
    plain: SearchTrial | None = None

    # -- trial 0: the plain run, which also gives the FP32 reference and the layers' sensitivity
    if known is None:
        if worker:
            raise RecipeError(f"the study {name!r} has not been started", "start the search first, then its workers")
        plain = SearchTrial(0, base, "plain run")
        result.trials.append(plain)
        yield progress(0, f"trial 0: the plain run ({plain.describe()})")
        try:
            yield from trial_steps(plain, strict=True)
        except Cancelled as exc:
            result.stopped = "cancelled" if cancel.cancelled else "time"
            result.notes.append(f"Stopped during the plain run ({exc}).")
            result.trials.pop()
            result.seconds = clock() - started
            return result
        first = plain.result
        judge.fp32_quality = first.evaluation.fp32_accuracy if metric == "accuracy" else 1.0
        judge.eager_ms = first.fp32.latency_ms
        plain.within_budget = judge.within(plain)
        result.warnings.extend(_plain_warnings(first, metric, judge))
        space = _build_space(base, loaded, data, settings, first)
        study.set_user_attr("space", dataclasses.asdict(space))
        study.set_user_attr("fp32_quality", judge.fp32_quality)
        study.set_user_attr("metric", metric)
        study.set_user_attr("eager_ms", judge.eager_ms)
        dists = space.distributions()
        _add_done(study, space, dists, plain, judge)
        for origin, params in _seeds(space, base):
            study.enqueue_trial(params, user_attrs={"origin": origin})
    else:
        space = Space(**known)
        judge.fp32_quality = study.user_attrs.get("fp32_quality")
        judge.eager_ms = study.user_attrs.get("eager_ms")
        dists = space.distributions()
    result.fp32_quality = judge.fp32_quality
    if plain is not None:
        finished(plain)

    pool: list[Any] = []
    if shared and not worker and settings.workers > 1:
        pool = _start_workers(settings.workers - 1, recipe, loaded, settings, url, name, started, clock)
    own: set[int] = set()  # Optuna trial numbers run here

    def merge() -> None:
        """Add the trials other processes finished since the last look."""
        if not shared:
            return
        for ft in study.get_trials(deepcopy=False):
            rec = ft.user_attrs.get(_ATTR)
            if rec is None or ft.number in own or ft.state.name not in ("COMPLETE", "PRUNED", "FAIL"):
                continue
            own.add(ft.number)
            if plain is not None and ft.number == 0:
                continue  # the plain run, added by this process
            t = SearchTrial(
                len(result.trials),
                Recipe.from_dict(rec["recipe"]),
                rec["origin"] + " (another worker)",
                state=rec["state"],
                quality=rec["quality"],
                latency_ms=judge.eager_ms / rec["speedup"] if judge.eager_ms and rec["speedup"] else rec["latency_ms"],
                measured_ms=rec.get("measured_ms"),
                speedup=rec["speedup"],
                seconds=rec["seconds"],
                note=rec["note"],
                params=dict(ft.params),
                stable=rec.get("stable", True),
                int8_layers=rec.get("int8_layers"),
            )
            t.within_budget = judge.within(t)
            result.trials.append(t)
            finished(t)

    if plain is not None and shared:  # the plain run, added by this process (the enqueued first trials are not run yet)
        own.update(ft.number for ft in study.get_trials(deepcopy=False) if ft.state.name == "COMPLETE")

    repeats = in_a_row = 0  # sampled configurations already tried (not run again): in all, and in a row
    try:
        while True:
            merge()
            started_n = _started_count(study) if shared else len(result.trials)
            if limit is not None and started_n >= limit:
                break
            why = why_stop()
            if why:
                raise Cancelled(why)
            ot = study.ask(dists)
            own.add(ot.number)
            params = dict(ot.params)
            origin = ot.user_attrs.get("origin", "sampled")
            trial = SearchTrial(len(result.trials), space.recipe_for(base, params), origin, params=params)
            key = _config_key(trial.recipe)
            twin = next((t for t in result.trials if _config_key(t.recipe) == key), None)
            if twin is not None and twin.state in ("complete", "pruned", "failed"):
                # a configuration already tried is not run again: the sampler is told its figures, as Optuna
                # advises, and it costs no trial of the limit (the best few are measured again at the end anyway)
                _tell(study, ot, twin, judge, repeat=True)
                repeats += 1
                in_a_row += 1
                if in_a_row >= REPEATS_EXHAUSTED:
                    result.notes.append(
                        f"The sampler proposed only configurations already tried ({in_a_row} in a row): every "
                        "configuration it finds worth trying was tried, so the search ended early."
                    )
                    break
                continue
            in_a_row = 0
            result.trials.append(trial)
            yield progress(len(result.trials) - 1, f"trial {trial.number}: {trial.describe()}")
            try:
                yield from trial_steps(trial)
            except Cancelled:
                study.tell(ot, state=optuna.trial.TrialState.FAIL)
                raise
            _tell(study, ot, trial, judge)
            finished(trial)
        result.stopped = "trials"
        if repeats:
            result.notes.append(
                f"{repeats} configuration{'s' if repeats != 1 else ''} the sampler proposed again "
                f"{'were' if repeats != 1 else 'was'} not run twice (the sampler was given the earlier figures)."
            )
        while pool and any(p.poll() is None for p in pool):  # the workers end their last trials
            why = why_stop()
            if why:
                raise Cancelled(why)
            merge()
            time.sleep(0.5)
            yield progress(len(result.trials), f"waiting for {sum(p.poll() is None for p in pool)} worker(s)")
        merge()
    except Cancelled:
        result.stopped = "cancelled" if cancel.cancelled else "time"
        if result.trials and result.trials[-1].state in ("running", "cancelled"):
            result.trials.pop()  # the trial cut short measured nothing
        result.best_index, result.closest_index = choose_best(result.trials)
    finally:
        for p in pool:
            if p.poll() is None:
                p.terminate()
        for p in pool:
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
        for p in pool:
            _worker_problem(p, result)
        if pool:
            merge()
    if worker:
        result.seconds = clock() - started
        return result

    # QAT, the last resort: only when nothing met the budget and there is labelled training data
    train = recipe.train_source()
    static = mode_traits(base.mode).static_activations
    if result.best is None and result.stopped == "trials" and settings.allow_qat and static and train is not None:
        close = result.closest
        if close is not None:
            qat = copy.deepcopy(close.recipe)
            qat.mode = "qat"
            qat.deploy.target, qat.deploy.runtimes = "torchscript", []
            trial = SearchTrial(len(result.trials), qat, "QAT (last resort)")
            result.trials.append(trial)
            try:
                yield progress(len(result.trials) - 1, f"trial {trial.number}: QAT, as nothing met the budget")
                yield from trial_steps(trial)
                finished(trial)
            except Cancelled:
                result.trials.pop()
                result.stopped = "cancelled" if cancel.cancelled else "time"
            result.best_index, result.closest_index = choose_best(result.trials)

    # the fastest few within budget, measured a second time: a speedup inflated by a busy moment is not the winner
    if not worker and result.stopped == "trials":
        contenders = sorted(
            (t for t in result.trials if t.state == "complete" and t.within_budget and t.speedup),
            key=lambda t: t.speedup or 0.0,
            reverse=True,
        )[:CONFIRM_TOP]
        plain_run = result.plain
        if (
            contenders
            and plain_run is not None
            and plain_run.within_budget
            and all(t is not plain_run for t in contenders)
        ):
            contenders.append(plain_run)  # what the winner is compared with: a busy moment must not make it look slow
        if len(contenders) > 1 or (contenders and not contenders[0].stable):
            for k, t in enumerate(contenders):
                again = SearchTrial(t.number, t.recipe, t.origin)
                try:
                    for step in run_trial(again, loaded, judge, why_stop):
                        del step
                        yield progress(
                            0, f"measuring trial {t.number} again ({k + 1}/{len(contenders)})", k / len(contenders) / 2
                        )
                except Cancelled:
                    result.stopped = "cancelled" if cancel.cancelled else "time"
                    break
                if again.state == "complete" and again.speedup:
                    _confirm(t, again)
            result.best_index, result.closest_index = choose_best(result.trials)
    elif not worker and result.best is not None:
        result.notes.append("The winner's speed was not measured a second time (the search was stopped early).")

    # the winner again, beside every runtime (its headline is against the fastest FP32 one), on hold-out data
    winner = result.best
    late = why_stop() if winner is not None and result.stopped != "cancelled" and not worker else None
    if late:
        result.notes.append(
            f"The winner was not measured again beside every runtime ({late}). Its figures are its trial's; "
            "`qstudio run` on its recipe measures it beside every runtime."
        )
    elif winner is not None and result.stopped != "cancelled" and not worker:
        final = _beside_every_runtime(winner.recipe, recipe, holdout)
        try:
            result.final = yield from _measure(final, loaded, cancel, "the winner again beside every runtime", progress)
            result.remeasured = True
            result.warnings.extend(
                f"The winner, measured again beside every runtime: {v.text}"
                for v in result.final.verdicts
                if v.severity in ("critical", "warning") and v.code != "agreement-resolution"
            )
        except Cancelled:
            result.notes.append("Cancelled while measuring the winner again: its figures are the trial's.")
        except Exception as exc:
            result.notes.append(f"The winner could not be measured again ({type(exc).__name__}: {_first_line(exc)}).")
    # none met the budget: the closest configuration beside every runtime and precision says what would, and how fast
    close = result.closest
    if winner is None and close is not None and not worker and result.stopped == "trials":
        again = _beside_every_runtime(close.recipe, recipe, None)
        try:
            run = yield from _measure(again, loaded, cancel, "the closest beside every runtime and precision", progress)
        except Cancelled:
            result.stopped = "cancelled"
        except Exception as exc:
            result.notes.append(
                f"The closest could not be measured beside every runtime ({type(exc).__name__}: {_first_line(exc)})."
            )
        else:
            result.fallback = _fallback(run, judge, metric)
            result.warnings.insert(0, _fallback_note(result.fallback, run, close, metric))
    unstable = [t for t in result.trials if t.state == "complete" and not t.stable]
    if unstable and not worker:
        result.warnings.append(  # after what is wrong with the model, the data or the budget
            f"UNRELIABLE SPEEDS: {len(unstable)} of {len(result.trials)} trials had unstable timings (their calls "
            "varied too much: another process took the CPU, or calls this short jitter; each trial's note says how): "
            "their speedups can be off by several times, and the search may have chosen by noise. Search again on "
            "a quiet machine; the winner's figures measured again are shown beside it."
        )
    if result.final is None and winner is not None and winner.result is not None and holdout is None:
        result.final = winner.result
    if holdout is not None and result.final is not None and result.final.recipe.eval != holdout:
        result.notes.append("The winner was not measured on the hold-out data (see above).")
    if folder is not None:
        folder.cleanup()
    result.seconds = clock() - started
    return result


def _plain_warnings(first: Any, metric: str, judge: _Judge) -> list[str]:
    """What the plain run found about the model and the data that every trial shares, to be seen before the trials."""
    from qstudio.core.verdicts import RANDOM_DATA_TEXT

    out = [RANDOM_DATA_TEXT] if first.random_data else []
    codes = {"collapse"} | ({"agreement-resolution"} if metric == "agreement" else set())
    out += [v.text for v in first.verdicts if v.code in codes]
    n = first.evaluation.samples
    if n and judge.max_drop > 0 and 100.0 / n > judge.max_drop:
        out.append(
            f"THE BUDGET IS FINER THAN THE DATA: one of the {n} evaluation samples is {100.0 / n:.2f} points, more than "
            f"the budget of {judge.max_drop:g}, so within budget means no sample may change. Give at least "
            f"{math.ceil(100.0 / judge.max_drop)} evaluation samples, or a budget of {100.0 / n:.2f} points or more."
        )
    return out


def _beside_every_runtime(trial_recipe: Recipe, user: Recipe, holdout: DataSource | None) -> Recipe:
    """``trial_recipe`` run as the user's own run would be: their batch sizes, every runtime they measure."""
    r = copy.deepcopy(trial_recipe)
    r.benchmark.batch_sizes = list(user.benchmark.batch_sizes)
    r.deploy.runtimes = user.deploy.runtimes
    if holdout is not None:
        r.eval = holdout
    return r


def _measure(
    recipe: Recipe, loaded: Any, cancel: CancelToken, what: str, progress: Callable[..., Progress]
) -> Generator[Progress, None, Any]:
    """One ordinary run after the trials (the bar's last 5%): its RunResult.  Raises Cancelled when the user stops it."""
    from qstudio.core.pipeline import run_recipe
    from qstudio.core.progress import RunProgress

    work = run_recipe(recipe, loaded)
    bar = RunProgress()
    try:
        while True:
            step = next(work)
            if cancel.cancelled:
                work.close()
                raise Cancelled("cancelled by the user")
            bar.update(step)
            yield progress(0, f"{what} · {bar.describe()}", final=0.5 + bar.fraction / 2)
    except StopIteration as stop:
        return stop.value


def _row_quality(row: Any, metric: str) -> float | None:
    return row.accuracy if metric == "accuracy" else row.agreement


def _fallback(run: Any, judge: _Judge, metric: str) -> Any:
    """The fastest row of ``run`` (any runtime, any precision) within the budget, or None."""
    floor = judge.floor
    rows = [
        f
        for f in run.runtimes
        if f.latency_ms and (q := _row_quality(f, metric)) is not None and (floor is None or q >= floor - 1e-12)
    ]
    return min(rows, key=lambda f: f.latency_ms or 0.0) if rows else None


def _fallback_note(row: Any, run: Any, close: SearchTrial, metric: str) -> str:
    """What meets the budget when no trial did, loudly: which runtime and precision, how fast, against what."""
    eager = run.fp32.latency_ms
    where = f"measured on trial {close.number} (the closest) beside every runtime and precision"
    if row is None:
        return f"NO TRIAL MET THE BUDGET, nor did any runtime's figures, {where}."
    best32 = run.fp32_best
    vs = [f"{eager / row.latency_ms:.2f}x vs FP32 eager"] if eager and row.latency_ms else []
    if best32 is not None and best32 is not row and best32.name != "eager" and best32.latency_ms and row.latency_ms:
        vs.append(f"{best32.latency_ms / row.latency_ms:.2f}x vs {best32.label}")
    what = {
        "int8": "INT8 of that configuration on another runtime",
        "bf16": "BF16, no calibration",
        "fp32": "no quantization, a faster runtime",
    }.get(row.precision, row.precision)
    # its first clause names what meets the budget: the window shows that much on a line (formatting.headline)
    return (
        f"NO TRIAL MET THE BUDGET: the fastest within budget is {row.label}, {what}: "
        f"{_fmt_q(_row_quality(row, metric))} {metric}, {row.latency_ms:.3g} ms "
        f"({', '.join(vs) or 'no faster than FP32 eager'}), {where}. "
        "qstudio exports INT8 models only; this is what your budget allows on this machine."
    )


def _confirm(trial: SearchTrial, again: SearchTrial) -> None:
    """Fold a second measurement into ``trial``: the stable measurements' mean (all of them when none was stable)."""
    trial.measured.append(again.speedup or 0.0)
    stable = [s for s, ok in ((trial.speedup, trial.stable), (again.speedup, again.stable)) if ok and s]
    first = trial.speedup or 0.0
    values = stable or [v for v in (first, again.speedup) if v]
    trial.speedup = sum(values) / len(values)
    if trial.latency_ms and first:
        trial.latency_ms = trial.latency_ms * first / trial.speedup
    trial.stable = trial.stable or again.stable
    note = f"measured twice: {first:.2f}x, then {again.speedup:.2f}x"
    trial.note = note if trial.note.startswith("timing unstable") or not trial.note else f"{trial.note}; {note}"


def _build_space(base: Recipe, loaded: Any, data: Any, settings: SearchSettings, first: Any) -> Space:
    """The choices of this search, from the model, the machine and the plain run's per-layer sensitivity."""
    from qstudio.core.compare import worst_layers
    from qstudio.core.environment import check_backend

    ranked = [n for n in worst_layers(first.layers, len(first.layers)) if n not in base.settings.skip]
    sensitive = ranked[:SENSITIVE_LAYERS]
    # beyond the few chosen one by one: the worst quarter, half, three quarters of the layers (a deep model whose
    # error accumulates over every layer needs more in float than any few)
    n = len(ranked)
    deeper = [0, *sorted(d for d in {n // 4, n // 2, 3 * n // 4, n - 1} if d > len(sensitive))]
    static = mode_traits(base.mode).static_activations
    modes = ["fx"] + (["eager"] if _eager_works(base, loaded, data) else []) if static else ["dynamic"]
    backends = []
    for b in ("x86", "fbgemm", "onednn"):
        try:
            check_backend(b)
            backends.append(b)
        except QStudioError:
            pass
    runtimes = available_runtimes(settings) if static else ["torchscript"]
    batches = max(data.calib.num_batches(base.settings.batch_size), 1)
    # fewer batches than the data holds, and the user's own setting (more than the data holds means all of it)
    calib = sorted({c for c in CALIB_CHOICES if c < batches} | {base.settings.calib_batches})
    return Space(modes, backends or [base.settings.backend], runtimes, sensitive, calib, ranked, deeper)


def _seeds(space: Space, base: Recipe) -> list[tuple[str, dict[str, Any]]]:
    """The first trials, chosen not sampled: what a user would try by hand after the plain run."""
    if base.mode not in space.modes or base.deploy.target not in space.runtimes:
        return []
    start = space.params_of(base)
    # the same configuration on another runtime (OpenVINO first: the fastest INT8 measured here) is the cheapest
    # speed there is; the others trade speed for quality: interleaved, so a few trials already try both kinds
    others = sorted((rt for rt in space.runtimes if rt != start["runtime"]), key=lambda rt: rt != "openvino")
    speed = [(f"{_RUNTIME_TITLES.get(rt, rt)} runtime", {**start, "runtime": rt}) for rt in others]
    quality: list[tuple[str, dict[str, Any]]] = []
    n = len(space.sensitive)
    if n >= 1:
        quality.append(("worst 1 in float", {**start, "float_0": True}))
    if "observer" in start and start["observer"] != "minmax":
        quality.append(("minmax observer", {**start, "observer": "minmax"}))
    if n >= 2:
        quality.append(("worst 2 in float", {**start, **{f"float_{j}": j < 2 for j in range(n)}}))
    if len(space.deeper) > 1:
        k = space.deeper[len(space.deeper) // 2]
        quality.append((f"worst {k} in float", {**start, "float_worst": k}))
    seeds: list[tuple[str, dict[str, Any]]] = []
    for k in range(max(len(speed), len(quality))):
        seeds += speed[k : k + 1] + quality[k : k + 1]
    return seeds


def _eager_works(recipe: Recipe, loaded: Any, data: Any) -> bool:
    """Whether eager mode can take this model (its dry run passes), so the search may try it."""
    from qstudio.core.flows import FlowInput, get_flow
    from qstudio.core.pipeline import resolve_groups

    r = copy.deepcopy(recipe)
    r.mode = "eager"
    try:
        groups, _ = resolve_groups(r, loaded.module)
        get_flow(r).preflight(FlowInput(loaded.module, r, groups, data.calib, data.calib.sample(1)))
        return True
    except Exception:
        return False


# -- worker processes ------------------------------------------------------------------------------------------
def _start_workers(
    n: int, recipe: Recipe, loaded: Any, settings: SearchSettings, url: str, name: str, started: float, clock: Any
) -> list[Any]:
    """Start ``n`` worker processes on the study (``python -m qstudio.core.search_worker FOLDER``).

    Each loads the model again from its source, with this session's weights
    (a state_dict, loaded back with ``weights_only=True``) and exactly the code
    grants the model was loaded with; a model that cannot be loaded again runs
    its trials here only, said in the notes.
    """
    import json
    import subprocess
    import sys
    import tempfile

    import torch

    from qstudio.core.child_rebuild import child_grants, reload_problem

    problem = reload_problem(loaded.source)
    grants: frozenset[str] = frozenset()
    if not problem:
        grants, problem = child_grants(loaded.source)
    if problem:
        log.warning("search workers not started: %s", problem)
        return []
    folder = Path(tempfile.mkdtemp(prefix="qstudio-search-worker-"))
    torch.save(loaded.module.state_dict(), folder / "weights.pt")
    left = None if settings.time_budget is None else max(settings.time_budget - (clock() - started), 1.0)
    spec = {
        "recipe": recipe.to_dict(),
        "settings": {
            **dataclasses.asdict(settings),
            "storage": url,
            "study_name": name,
            "workers": 1,
            "time_budget": left,
        },
        "grants": sorted(grants),
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    procs = []
    for i in range(n):
        log_path = folder / f"worker{i}.log"
        with open(log_path, "wb") as fh:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "qstudio.core.search_worker", str(folder)],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        procs[-1].log_path = log_path  # type: ignore[attr-defined]
    return procs


def _worker_problem(proc: Any, result: SearchResult) -> None:
    """A worker that ended with an error: its last line in the notes (its trials already merged)."""
    code = proc.returncode
    if code in (0, None) or code < 0:  # done, or stopped by this process
        return
    try:
        tail = Path(proc.log_path).read_text(errors="replace").strip().splitlines()[-1:]
    except OSError:
        tail = []
    result.notes.append(f"A worker process failed (exit {code}): {' '.join(tail) or 'no output'}")


__all__ = [
    "METRICS",
    "SearchResult",
    "SearchSettings",
    "SearchTrial",
    "choose_best",
    "pareto_front",
    "run_trial",
    "search",
]
