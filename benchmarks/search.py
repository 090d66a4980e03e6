"""``qstudio search`` on the demo and resnet18 at budgets of 0 and 1 point: what it finds, how long it takes.

For each model and budget: the trials run, the time taken, the winner's
accuracy (demo, labelled eval split) or agreement with FP32 (resnet18, random
weights seeded and BatchNorm settled, random calibration and evaluation
samples); ``resnet18-digits`` is resnet18 at 224x224 made into a real,
labelled classifier without downloading anything: its BatchNorm settled on
the demo digits (upscaled, 3 channels) and a 10-way head fitted to their
train split on its random convolutions' pooled features, searched by
accuracy on the eval split; ``resnet18-trained`` is resnet18 trained whole
on those digits at 224x224 (3 epochs from seeded random weights, about 5 min
here, cached under ~/.cache/qstudio-bench) and loaded as a user's weights
file with a factory, searched by agreement with FP32 on the unlabelled eval
split (the metric a user without labels has);
its speedup over FP32 eager measured in its trial and again beside every
runtime, the plain FX run's, and the best "keep the worst k layers in float"
trial (what a user does by hand) for comparison.

    python benchmarks/search.py [--models demo resnet18 resnet18-digits resnet18-trained] [--budgets 0 1] [--trials 16] [--eval-samples 256]

Run on a quiet machine; the search's speedups are ratios measured inside each trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import environment_lines, settle_batchnorm

from qstudio.core.data import _load_demo
from qstudio.core.loading import LoadedModel, load_model
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, QuantSettings, Recipe
from qstudio.core.search import SearchSettings, search


def digits_224(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo digits of ``split`` as resnet18 takes them: 3 x 224 x 224, and their labels."""
    x, y = _load_demo(split).inputs, _load_demo(split).labels
    return torch.nn.functional.interpolate(x, size=224, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1), y


def digits_resnet18(folder: Path) -> tuple[LoadedModel, Recipe]:
    """resnet18 (seeded random convolutions) as a labelled 10-way digits classifier, and a recipe on its data files."""
    loaded = load_model(ModelSource("torchvision:resnet18"))
    model = loaded.module
    xtr, ytr = digits_224("train")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(xtr), 64):
            model(xtr[i : i + 64])
    model.eval()
    body = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        feats = torch.cat([body(xtr[i : i + 64]).flatten(1) for i in range(0, len(xtr), 64)])
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    head = torch.nn.Linear(feats.shape[1], 10)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200)
    z = (feats - mu) / sd

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(z), ytr) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    model.fc = torch.nn.Linear(feats.shape[1], 10)
    with torch.no_grad():  # the standardisation folded into the head
        model.fc.weight.copy_(head.weight / sd)
        model.fc.bias.copy_(head.bias - (head.weight / sd * mu).sum(1))
    return loaded, digits_recipe(folder, ModelSource("torchvision:resnet18"), labels=True)


def digits_recipe(folder: Path, model: ModelSource, *, labels: bool) -> Recipe:
    """A recipe on the digits at 224 written to ``folder`` (calib and eval splits), with or without their labels."""
    sources = {}
    for split in ("calib", "eval"):
        x, y = digits_224(split)
        np.save(folder / f"{split}_x.npy", x.numpy())
        np.save(folder / f"{split}_y.npy", y.numpy())
        sources[split] = DataSource(
            kind="tensor",
            path=str(folder / f"{split}_x.npy"),
            labels=str(folder / f"{split}_y.npy") if labels else None,
        )
    return Recipe(
        model=model,
        mode="fx",
        settings=QuantSettings(calib_batches=8, batch_size=16),
        calib=sources["calib"],
        eval=sources["eval"],
        benchmark=BenchmarkSettings(batch_sizes=[1], warmup=5, iters=30),
    )


TRAINED = Path.home() / ".cache" / "qstudio-bench" / "resnet18-digits-seed0-3ep.pt"
FACTORY = "import torchvision\n\n\ndef build():\n    return torchvision.models.resnet18(num_classes=10)\n"


def trained_resnet18(folder: Path) -> tuple[LoadedModel, Recipe]:
    """resnet18 trained whole on the digits at 224 (cached), loaded as a weights file with a factory; no labels."""
    if not TRAINED.exists():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10)
        xtr, ytr = digits_224("train")
        epochs, batch = 3, 32
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * -(-len(xtr) // batch))
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(xtr))
            for i in range(0, len(xtr), batch):
                idx = order[i : i + batch]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
                sched.step()
        TRAINED.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), TRAINED)
    (folder / "factory.py").write_text(FACTORY)
    source = ModelSource(str(TRAINED), factory=f"{folder / 'factory.py'}:build")
    loaded = load_model(source)
    xev, yev = digits_224("eval")
    with torch.no_grad():
        top1 = torch.cat([loaded.module(xev[i : i + 64]).argmax(1) for i in range(0, len(xev), 64)])
    print(f"resnet18-trained: FP32 accuracy {100 * (top1 == yev).float().mean():.2f}% on {len(yev)} eval digits")
    return loaded, digits_recipe(folder, source, labels=False)


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
    out += [f"note: {n}" for n in result.notes]
    return out


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["demo", "resnet18", "resnet18-digits", "resnet18-trained"])
    p.add_argument("--budgets", nargs="+", type=float, default=[0.0, 1.0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--eval-samples", type=int, default=256)
    args = p.parse_args()
    print("\n".join(environment_lines()))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    folder = tempfile.TemporaryDirectory(prefix="qstudio-bench-")
    for name in args.models:
        torch.manual_seed(0)  # the same random weights in every run, so runs compare
        if name == "resnet18-digits":
            loaded, recipe = digits_resnet18(Path(folder.name))
        elif name == "resnet18-trained":
            loaded, recipe = trained_resnet18(Path(folder.name))
        else:
            recipe = recipe_for(name, args.eval_samples)
            loaded = load_model(recipe.model)
        if name not in ("demo", "resnet18-digits", "resnet18-trained"):
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
