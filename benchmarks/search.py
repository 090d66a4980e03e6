"""``qstudio search`` on the demo and resnet18 at budgets of 0 and 1 point: what it finds, how long it takes.

For each model and budget: the trials run, the time taken, the winner's
accuracy (demo, labelled eval split) or agreement with FP32 (resnet18, random
weights with settled BatchNorm, random calibration and evaluation samples),
its speedup over FP32 eager measured in its trial and again beside every
runtime, the plain FX run's, and the best "keep the worst k layers in float"
trial (what a user does by hand) for comparison.

    python benchmarks/search.py [--models demo resnet18] [--budgets 0 1] [--trials 16] [--eval-samples 256]

Run on a quiet machine; the search's speedups are ratios measured inside each trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import environment_lines, settle_batchnorm

from qstudio.core.loading import load_model
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe
from qstudio.core.search import SearchSettings, search


def recipe_for(name: str, eval_samples: int) -> Recipe:
    if name == "demo":
        return Recipe(model=ModelSource("demo"), mode="fx")
    return Recipe(
        model=ModelSource(f"torchvision:{name}"),
        mode="fx",
        settings=QuantSettings(calib_batches=4, batch_size=8),
        calib=DataSource(kind="random", limit=32),
        eval=DataSource(kind="random", limit=eval_samples),
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=5, iters=30),
    )


def describe(result) -> list[str]:
    out = [result.summary()]
    plain = result.plain
    worst = [t for t in result.trials if t.origin.startswith("worst") and t.state == "complete"]
    best = result.best
    if plain is not None:
        out.append(
            f"plain FX: {100 * (plain.quality or 0):.2f}% {result.metric}, {plain.speedup or 0:.2f}x "
            f"({'within' if plain.within_budget else 'OVER'} budget)"
        )
    for t in worst:
        out.append(
            f"{t.origin}: {100 * (t.quality or 0):.2f}%, {t.speedup or 0:.2f}x "
            f"({'within' if t.within_budget else 'OVER'} budget)"
        )
    if best is not None:
        out.append(f"winner: trial {best.number} ({best.origin}): {best.describe()}")
        if best.measured:
            out.append("  speedups measured: " + ", ".join(f"{s:.2f}x" for s in best.measured))
        final = result.final
        if final is not None and final.speedup_vs_fp32_best:
            out.append(
                f"  again beside every runtime: {final.speedup_vs_fp32_best:.2f}x vs {final.fp32_best.label}, "
                f"{final.speedup:.2f}x vs FP32 eager"
            )
    states = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    out.append(f"trials by state: {states}; pareto: {result.pareto}")
    return out


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["demo", "resnet18"])
    p.add_argument("--budgets", nargs="+", type=float, default=[0.0, 1.0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--eval-samples", type=int, default=256)
    args = p.parse_args()
    print("\n".join(environment_lines()))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for name in args.models:
        recipe = recipe_for(name, args.eval_samples)
        loaded = load_model(recipe.model)
        if name != "demo":
            settle_batchnorm(loaded.module, list(loaded.input_shape))
        for budget in args.budgets:
            start = time.perf_counter()
            result = run(search(recipe, loaded, SearchSettings(max_drop=budget, trials=args.trials)))
            took = time.perf_counter() - start
            print(f"\n### {name}, --max-drop {budget:g}: {len(result.trials)} trials in {took:.0f} s")
            print("\n".join(describe(result)))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
