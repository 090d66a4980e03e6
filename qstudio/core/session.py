"""One studio session: the loaded model, the recipe being edited, fusion groups and past runs.

The window keeps one :class:`Session` and observes it (``subscribe``); the
CLI needs none of this and calls the pipeline directly.  Every mutation goes
through a method that validates first and changes state only on success, so
a bad file or a bad edit never costs the user the model, settings or results
they already have.
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qstudio.core import fusion, tree
from qstudio.core.errors import FlowError
from qstudio.core.flows import mode_traits
from qstudio.core.inputs import example_input
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.pipeline import RunResult, run_recipe
from qstudio.core.progress import CancelToken, Progress
from qstudio.core.recipe import DataSource, ModelSource, Recipe
from qstudio.core.trust import Grants

if TYPE_CHECKING:
    from qstudio.core.search import SearchResult, SearchSettings, SearchTrial

log = logging.getLogger(__name__)

EVENTS = ("model", "recipe", "groups", "results")


@dataclass
class PreparedModel:
    loaded: LoadedModel
    groups: list[list[str]]
    method: str
    notes: list[str]
    tree: tree.ModuleNode
    recipe: Recipe  # the session's recipe, adjusted to this model (see follow_model)
    settings_notes: list[str] = field(default_factory=list)


def same_model(a: ModelSource, b: ModelSource) -> bool:
    return a.spec == b.spec and (a.factory or None) == (b.factory or None)


def follow_model(recipe: Recipe, loaded: LoadedModel) -> tuple[Recipe, list[str]]:
    """The recipe adjusted to a newly opened model, and what changed, in words.

    Opening the model a recipe names (a recipe file, the command line,
    re-opening the same model) keeps every setting.  Opening another model
    resets what belonged to the old one: the input shape and dtype (back to
    automatic, i.e. from the new model and its data), fusion groups and
    layers kept in float (module names of the old model), and the shipped
    demo data (it fits only the demo model: others get random data, flagged,
    until the user picks real data).  Data files the user chose are kept; the
    check before a run says if they do not fit.
    """
    recipe = copy.deepcopy(recipe)
    if same_model(recipe.model, loaded.source):
        recipe.model = loaded.source
        return recipe, []
    notes: list[str] = []
    is_demo = loaded.source.spec.strip().lower() == "demo"
    recipe.model = loaded.source
    recipe.input_shape = None
    recipe.input_dtype = None
    recipe.fusion = None
    if recipe.settings.skip:
        notes.append(
            f"layers kept in float were cleared ({', '.join(recipe.settings.skip)} belong to the previous model)"
        )
        recipe.settings.skip = []
    if is_demo:
        if recipe.calib.kind == "random":
            recipe.calib = DataSource(kind="demo", split="calib")
            notes.append("calibration: the demo digits")
    else:
        if recipe.calib.kind == "demo":
            recipe.calib = DataSource(kind="random")
        for role in ("eval", "train"):
            src = getattr(recipe, role)
            if src is not None and src.kind == "demo":
                setattr(recipe, role, None)
        if recipe.calib.kind == "random":
            notes.append(
                "calibration: RANDOM data, so figures will not describe real inputs: choose real data in Settings > Data"
            )
    if loaded.input_dtype == "int64" and mode_traits(recipe.mode).static_activations:
        notes.append(f"mode: dynamic (the model takes token ids; {recipe.mode} static quantization needs float inputs)")
        recipe.mode = "dynamic"
    shape = loaded.input_shape
    what = f"input {shape} {loaded.input_dtype}" if shape else f"input shape unknown ({loaded.input_origin})"
    notes.insert(0, f"{what}" + (f", from {loaded.input_origin}" if shape and loaded.input_origin else ""))
    return recipe, notes


Listener = Callable[[str], None]


class Session:
    def __init__(self, recipe: Recipe | None = None) -> None:
        self.recipe = recipe or Recipe()
        self.loaded: LoadedModel | None = None
        self.groups: list[list[str]] = []
        self.group_method = ""
        self.group_notes: list[str] = []
        self.tree: tree.ModuleNode | None = None
        self.results: list[RunResult] = []
        self._listeners: list[Listener] = []
        self._run_lock = threading.Lock()
        self._active_run: weakref.ref[Generator[Progress, Any, RunResult]] | None = None

    # -- observation ------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """``listener(event)`` is called after each change; event is one of EVENTS."""
        self._listeners.append(listener)

    def _emit(self, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken view must not break the session
                log.exception("session listener failed on %s", event)

    # -- model -------------------------------------------------------------------
    def load(self, source: ModelSource, *, grants: Grants | None = None) -> LoadedModel:
        """Load a model; on any error the previous model and everything else stay as they were."""
        return self.commit_load(self.prepare_load(source, grants=grants))

    def prepare_load(self, source: ModelSource, *, grants: Grants | None = None) -> PreparedModel:
        """The slow part of loading (file, tree, fusion suggestion); changes no state, so it can run in a worker.

        ``grants``: the SHA-256s of the files the user agreed to run (:mod:`qstudio.core.trust`); see :func:`load_model`.
        """
        loaded = load_model(source, grants=grants)
        recipe, settings_notes = follow_model(self.recipe, loaded)
        example = self._example_for(loaded, recipe)
        groups: list[list[str]] = []
        method, notes = "", []
        if not loaded.scripted:
            s = fusion.suggest_groups(loaded.module, set(recipe.settings.skip))
            groups, method, notes = s.groups, s.method, s.notes
        node = tree.build_tree(loaded.module, example, recipe.mode, groups, recipe.settings.skip)
        return PreparedModel(loaded, groups, method, notes, node, recipe, settings_notes)

    def commit_load(self, prepared: PreparedModel) -> LoadedModel:
        """Make a prepared model the session's model (call on the thread that owns the session)."""
        loaded = prepared.loaded
        self.loaded = loaded
        self.recipe = prepared.recipe
        self.recipe.fusion = None
        self.groups, self.group_method, self.group_notes = prepared.groups, prepared.method, prepared.notes
        self.tree = prepared.tree
        self._emit("model")
        self._emit("recipe")
        return loaded

    @staticmethod
    def _example_for(loaded: LoadedModel, recipe: Recipe) -> torch.Tensor | None:
        shape = (
            recipe.input_shape if same_model(recipe.model, loaded.source) and recipe.input_shape else loaded.input_shape
        )
        if not shape:
            return None
        return example_input(shape, recipe.input_dtype or loaded.input_dtype or "float32", loaded.module)

    # -- recipe ------------------------------------------------------------------
    def apply_recipe(self, recipe: Recipe) -> None:
        """Make ``recipe`` the session's recipe as it is, model included (a recipe file, or the one it replaced).

        Unlike :meth:`update_recipe` it keeps the recipe's own model: the
        caller loads that model next (:meth:`load`, or :meth:`prepare_load` in
        a worker), which adjusts the recipe to it, and applies the earlier
        recipe again if the model cannot be loaded.  The recipe is not copied.
        """
        self.recipe = recipe
        self._emit("recipe")

    def update_recipe(self, recipe: Recipe) -> None:
        """Replace the recipe (already validated by construction).  Keeps the loaded model's source."""
        recipe = copy.deepcopy(recipe)
        if self.loaded is not None:
            recipe.model = self.loaded.source
        mode_changed = recipe.mode != self.recipe.mode
        self.recipe = recipe
        if mode_changed and self.loaded is not None:
            self._refresh_tree()
        elif self.tree is not None:
            skip = set(recipe.settings.skip)
            for node in self.tree.walk():
                node.kept_float = node.name in skip
        self._emit("recipe")

    def set_skip(self, name: str, keep_float: bool) -> None:
        skip = [n for n in self.recipe.settings.skip if n != name]
        if keep_float:
            skip.append(name)
        self.recipe.settings.skip = skip
        if self.tree is not None:
            node = self.tree.find(name)
            if node is not None:
                node.kept_float = keep_float
        self._emit("recipe")

    # -- fusion ------------------------------------------------------------------
    def _model(self) -> torch.nn.Module:
        if self.loaded is None:
            raise FlowError("no model is loaded", "open a model first")
        return self.loaded.module

    def set_groups(self, groups: list[list[str]]) -> list[fusion.GroupProblem]:
        """Use ``groups`` if valid; otherwise return the problems and change nothing."""
        problems = fusion.validate_groups(self._model(), groups, set(self.recipe.settings.skip))
        if problems:
            return problems
        self.groups = [list(g) for g in groups]
        self.recipe.fusion = self.groups
        self._refresh_tree()
        self._emit("groups")
        return []

    def fuse(self, names: list[str]) -> list[fusion.GroupProblem]:
        """Add a group made of ``names`` (in model order), removing them from other groups."""
        order = {n: i for i, (n, _) in enumerate(self._model().named_modules())}
        group = sorted(names, key=lambda n: order.get(n, 0))
        rest = [g for g in self.groups if not set(g) & set(group)]
        return self.set_groups([*rest, group])

    def unfuse(self, names: list[str]) -> None:
        self.set_groups([g for g in self.groups if not set(g) & set(names)])

    def suggest(self) -> None:
        s = fusion.suggest_groups(self._model(), set(self.recipe.settings.skip))
        self.groups, self.group_method, self.group_notes = s.groups, s.method, s.notes
        self.recipe.fusion = None
        self._refresh_tree()
        self._emit("groups")

    def _refresh_tree(self) -> None:
        old = self.tree
        assert self.loaded is not None
        shapes_known = old is not None and any(n.output_shape for n in old.walk())
        example = self._example_for(self.loaded, self.recipe) if not shapes_known else None
        node = tree.build_tree(self.loaded.module, example, self.recipe.mode, self.groups, self.recipe.settings.skip)
        if old is not None and shapes_known:
            shapes = {n.name: n.output_shape for n in old.walk()}
            for n in node.walk():
                n.output_shape = shapes.get(n.name)
        self.tree = node

    # -- runs --------------------------------------------------------------------
    def run(self, *, export: str | Path | None = None) -> Generator[Progress, Any, RunResult]:
        """Quantize with a snapshot of the current recipe; the caller commits the result with :meth:`add_result`."""
        return self._start("the next run", lambda recipe, loaded: run_recipe(recipe, loaded, export=export))

    def _start(self, what: str, make: Callable[[Recipe, Any], Generator[Progress, Any, Any]]) -> Generator:
        """``make(snapshot of the recipe, loaded model)``, tracked as the session's one active run.

        One run at a time (a search is many runs): never two workers on one model.
        """
        if self.loaded is None:
            raise FlowError("no model is loaded", "open a model first")
        with self._run_lock:
            if self.running:
                raise FlowError(
                    "a run is already in progress", f"wait for it to finish or cancel it, then start {what}"
                )
            recipe = copy.deepcopy(self.recipe)
            recipe.fusion = copy.deepcopy(self.groups) if mode_traits(recipe.mode).fuses else None
            work = _tracked(make(recipe, self.loaded))
            self._active_run = weakref.ref(work)
        return work

    def search(
        self,
        settings: SearchSettings,
        *,
        cancel: CancelToken | None = None,
        holdout: DataSource | None = None,
        on_trial: Callable[[SearchTrial, SearchResult], None] | None = None,
    ) -> Generator[Progress, Any, SearchResult]:
        """Search configurations of a snapshot of the current recipe (:func:`qstudio.core.search.search`).

        One run at a time, as :meth:`run`: a search is many runs on the loaded
        model.  Cancelling through ``cancel`` makes the search return the best
        configuration so far; the caller commits a trial's result with
        :meth:`use_trial` (or :meth:`add_result`).
        """
        from qstudio.core.search import search

        return self._start(
            "the search",
            lambda recipe, loaded: search(recipe, loaded, settings, cancel=cancel, holdout=holdout, on_trial=on_trial),
        )

    def use_trial(self, trial: SearchTrial, *, result: RunResult | None = None) -> bool:
        """Make a search trial's result (``result``, else the one the trial kept) the session's last result.

        False when there is none (the search let the model of a dominated
        trial go): replay its recipe instead.  A result that already is the
        last one is not added twice.
        """
        run = result if result is not None else trial.result
        if run is None:
            return False
        if self.last is not run:
            self.add_result(run)
        return True

    @property
    def running(self) -> bool:
        """True from :meth:`run` or :meth:`search` until its generator finishes, fails, is cancelled or is dropped."""
        work = self._active_run() if self._active_run is not None else None
        return work is not None and work.gi_frame is not None

    def add_result(self, result: RunResult) -> None:
        self.results.append(result)
        if self.tree is not None:
            tree.annotate(self.tree, result.layers, result.coverage.quantized_layers, result.coverage.float_layers)
        self._emit("results")

    @property
    def last(self) -> RunResult | None:
        return self.results[-1] if self.results else None


def _tracked(work: Generator[Progress, Any, RunResult]) -> Generator[Progress, Any, RunResult]:
    """``work`` as a generator of its own, so :attr:`Session.running` can watch its frame."""
    return (yield from work)
