"""Rebuild the demo's data splits and weights from scratch, offline, on the CPU.

Run from the repository root (scikit-learn is a dev-only dependency of this
script; the studio itself never imports it)::

    pip install scikit-learn
    python resources/demo/train_demo.py

It writes, next to this file: ``digits_{train,calib,eval}_{x,y}.npy`` (raw
uint8 images and int64 labels), ``digits_resnet.safetensors`` (the
state_dict) and ``meta.json`` (shapes, normalisation, accuracy, provenance).
Everything is seeded, so a rerun gives the same splits; the weights match to
within float noise of the CPU kernels.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SEED = 0
SPLIT_SIZES = {"eval": 400, "calib": 200}  # train gets the rest: 1197
COMMAND = "python resources/demo/train_demo.py"
PROVENANCE = (
    "UCI ML hand-written digits (Optical Recognition of Handwritten Digits, E. Alpaydin and C. Kaynak, 1998; "
    "https://archive.ics.uci.edu/dataset/80, CC BY 4.0), the 1797-image copy bundled with scikit-learn as "
    "sklearn.datasets.load_digits: 8x8 images whose pixels count the 'on' pixels of 4x4 blocks of a 32x32 "
    "bitmap (0..16). Split stratified with seed 0 into train/calib/eval; stored raw as uint8."
)


def _sibling(name: str) -> ModuleType:
    """Import ``name``.py from this folder by path, as the engine does (no sys.path games)."""
    spec = importlib.util.spec_from_file_location(f"qstudio_demo_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified train/calib/eval split of load_digits with a fixed seed, raw uint8 (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # 0..16 fits uint8 exactly
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    rest, ev = train_test_split(idx, test_size=SPLIT_SIZES["eval"], stratify=labels, random_state=SEED)
    tr, ca = train_test_split(rest, test_size=SPLIT_SIZES["calib"], stratify=labels[rest], random_state=SEED)
    return {name: (images[ix], labels[ix]) for name, ix in (("train", tr), ("calib", ca), ("eval", ev))}


def shift(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (the only augmentation: digits are not mirror-symmetric)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w]


@torch.no_grad()
def top1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    pred = torch.cat([model(xb).argmax(1) for xb in x.split(200)])
    return float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()

    import sklearn
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    data, model_mod = _sibling("data"), _sibling("model")

    splits = make_splits()
    for name, (x, y) in splits.items():
        np.save(HERE / f"digits_{name}_x.npy", x)
        np.save(HERE / f"digits_{name}_y.npy", y)
    train_01 = data.upsample(splits["train"][0])
    mean, std = float(train_01.mean()), float(train_01.std())
    xs = {name: data.preprocess(x, mean, std) for name, (x, _) in splits.items()}
    ys = {name: torch.from_numpy(y) for name, (_, y) in splits.items()}

    model = model_mod.build()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * -(-len(ys["train"]) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(SEED)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(ys["train"]), generator=gen)
        total = 0.0
        for batch in order.split(args.batch_size):
            loss = F.cross_entropy(model(shift(xs["train"][batch], gen)), ys["train"][batch], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        acc = top1(model, xs["calib"], ys["calib"])
        print(
            f"epoch {epoch + 1}/{args.epochs}  loss {total / len(order):.4f}  calib top-1 {acc:.4f}  "
            f"{time.perf_counter() - start:.0f}s",
            flush=True,
        )
    seconds = time.perf_counter() - start

    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = HERE / "digits_resnet.safetensors"
    save_file(state, str(weights))
    weights.chmod(0o644)  # safetensors creates it owner-only; a shipped file must be readable by all
    accs = {name: round(top1(model, xs[name], ys[name]), 4) for name in ("train", "calib", "eval")}
    meta = {
        "model": "DigitsResNet (resources/demo/model.py:build)",
        "weights": "digits_resnet.safetensors",
        "input_shape": list(model_mod.INPUT_SHAPE),
        "input_dtype": "float32",
        "classes": [str(i) for i in range(model_mod.NUM_CLASSES)],
        "preprocessing": "raw uint8 0..16 (N,1,8,8) -> /16 -> bilinear 32x32 (align_corners=False) -> (x-mean)/std",
        "mean": mean,
        "std": std,
        "splits": {name: len(y) for name, (_, y) in splits.items()},
        "split_seed": SEED,
        "eval_top1": accs["eval"],
        "top1": accs,
        "data_provenance": PROVENANCE,
        "data_license": "CC BY 4.0 (UCI Machine Learning Repository)",
        "training": {
            "command": COMMAND,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"SGD nesterov momentum 0.9, weight decay 5e-4, OneCycle max lr {args.lr}",
            "loss": "cross-entropy, label smoothing 0.05",
            "augmentation": "random shift up to 2 px at 32x32",
            "seed": SEED,
            "seconds": round(seconds, 1),
            # 2 threads on 2 cores: a busy neighbour can slow training several-fold, so say how busy it was
            "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
        },
    }
    (HERE / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"trained in {seconds:.0f}s; top-1 {accs}", file=sys.stderr)


if __name__ == "__main__":
    main()
