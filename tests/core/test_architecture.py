"""The engine never imports Qt: checked by import-linter and by running it with Qt made unimportable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout
