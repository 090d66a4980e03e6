"""The engine never imports Qt (import-linter, and running it with Qt made unimportable); the layers
(cli over ui over the shared options over core) hold and no qstudio package has an import cycle."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]

BLOCK_QT = r"""
import sys, importlib.abc
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"PySide6", "shiboken6", "pyqtgraph", "superqt", "qtpy", "PyQt5", "PyQt6"}:
            raise ImportError(f"Qt is blocked in this test: {name}")
sys.meta_path.insert(0, BlockQt())
import pkgutil, importlib, qstudio.core
for mod in pkgutil.walk_packages(qstudio.core.__path__, "qstudio.core."):
    importlib.import_module(mod.name)
import qstudio.cli
from qstudio.core.loading import load_model
from qstudio.core.recipe import ModelSource, Recipe, QuantSettings, BenchmarkSettings
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
r = run(run_recipe(Recipe(mode="fx", settings=QuantSettings(calib_batches=1),
        benchmark=BenchmarkSettings(warmup=1, iters=2)), load_model(ModelSource("demo"))))
qt = [m for m in sys.modules if m.split(".")[0] in {"PySide6", "pyqtgraph", "superqt", "shiboken6"}]
assert not qt, qt
print("OK", r.evaluation.agreement)
"""


def test_engine_runs_with_qt_unimportable():
    proc = subprocess.run([sys.executable, "-c", BLOCK_QT], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK")


def test_import_linter_contract_holds():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    types = {c["type"] for c in contracts}
    assert {"forbidden", "layers", "acyclic_siblings"} <= types, types  # Qt-free engine, layers, no cycles
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # --no-cache: grimp's cache can keep a module that became a package (qstudio/cli.py -> qstudio/cli/)
    proc = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(contracts)} kept, 0 broken" in proc.stdout


def _packages(graph: grimp.ImportGraph, name: str) -> list[str]:
    """``name`` and every package below it (modules with children)."""
    children = graph.find_children(name)
    return [name] + [p for child in sorted(children) if graph.find_children(child) for p in _packages(graph, child)]


def test_no_import_cycle_between_siblings():
    """At every level (qstudio's cli/ui/core/..., core's modules, flows' modules ...) no two siblings import each other.

    Lazy imports inside functions count (the CLI's window command imports qstudio.ui.app); imports made only
    for type annotations (``if TYPE_CHECKING:``) do not, as they never run.
    """
    graph = grimp.build_graph("qstudio", exclude_type_checking_imports=True, cache_dir=None)
    cycles = []
    for package in _packages(graph, "qstudio"):
        for a, b in itertools.combinations(sorted(graph.find_children(package)), 2):
            there = graph.find_shortest_chain(importer=a, imported=b, as_packages=True)
            back = graph.find_shortest_chain(importer=b, imported=a, as_packages=True)
            if there and back:
                cycles.append(f"{' -> '.join(there)}  and back:  {' -> '.join(back)}")
    assert not cycles, "\n".join(cycles)
    # the cycle this layout removed: the window parsing its options with the CLI's private helpers
    assert graph.find_shortest_chain(importer="qstudio.ui", imported="qstudio.cli", as_packages=True) is None
