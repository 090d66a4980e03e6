"""The step where PTQ and QAT differ (calibrate, or train with fake quantization) and QAT's training loop.

Shared by eager and FX: :func:`calibrate_or_train` asks the mode's traits which one the run does.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import torch
from torch import nn
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization import disable_observer

from qstudio.core.data import Dataset
from qstudio.core.errors import FlowError
from qstudio.core.flows.base import EpochStats, FlowInput, calibrate
from qstudio.core.flows.failures import forward_error
from qstudio.core.progress import Progress
from qstudio.core.recipe import QATSettings
from qstudio.core.tensors import first_tensor


def accuracy(model: nn.Module, data: Dataset, batch_size: int = 64) -> float:
    """Top-1 of ``model`` on labeled ``data`` (eval mode is the caller's business)."""
    assert data.labels is not None
    correct = 0
    with torch.no_grad():
        for x, y in data.batches(batch_size):
            correct += int((first_tensor(model(x)).argmax(-1) == y).sum())
    return correct / len(data)


def train_fake_quant(
    prepared: nn.Module, train: Dataset, cfg: QATSettings, evaluate: Dataset | None, *, prefix: str = ""
) -> Generator[Progress, None, list[EpochStats]]:
    """Train a model holding fake-quant modules.

    As the PyTorch QAT tutorial recommends, observers are frozen after
    ``freeze_observer_epoch`` epochs (so scales stop moving) and BatchNorm
    switches to its running statistics after ``freeze_bn_epoch`` epochs.
    """
    if train.labels is None:
        raise FlowError(
            f"quantization-aware training needs labels, and {train.description} has none",
            "give --train-data with --train-labels (or an image folder with one sub-folder per class)",
        )
    optimizer = torch.optim.SGD(prepared.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-5)
    loss_fn = nn.CrossEntropyLoss()
    steps = train.num_batches(cfg.batch_size)
    total = steps * cfg.epochs
    history: list[EpochStats] = []
    gen = torch.Generator().manual_seed(0)
    yield Progress("train", 0, total)
    for epoch in range(cfg.epochs):
        if epoch >= cfg.freeze_observer_epoch:
            prepared.apply(disable_observer)
        if epoch >= cfg.freeze_bn_epoch:
            prepared.apply(nniqat.freeze_bn_stats)
        prepared.train()
        order = torch.randperm(len(train), generator=gen)
        shuffled = Dataset(train.inputs[order], train.labels[order], train.description)
        running, correct, seen = 0.0, 0, 0
        for i, (x, y) in enumerate(shuffled.batches(cfg.batch_size)):
            assert y is not None
            where = (len(y), "qat.batch_size", prefix)
            optimizer.zero_grad()
            try:
                out = first_tensor(prepared(x))
                loss = loss_fn(out, y)
            except Exception as exc:
                raise forward_error(exc, prepared, "train", epoch * steps + i + 1, total, *where) from exc
            value = loss.detach().item()
            if not torch.isfinite(loss):
                raise FlowError(
                    f"training loss became {value} in epoch {epoch + 1}", "lower the learning rate (qat.lr)"
                )
            try:
                loss.backward()
            except Exception as exc:
                raise forward_error(exc, prepared, "train", epoch * steps + i + 1, total, *where) from exc
            optimizer.step()
            running += value * len(y)
            correct += int((out.argmax(-1) == y).sum())
            seen += len(y)
            yield Progress("train", epoch * steps + i + 1, total, f"epoch {epoch + 1}/{cfg.epochs}", {"loss": value})
        prepared.eval()
        eval_acc = accuracy(prepared, evaluate) if evaluate is not None and evaluate.labels is not None else None
        stats = EpochStats(epoch + 1, running / seen, correct / seen, eval_acc)
        history.append(stats)
        metrics = {"epoch": float(epoch + 1), "loss": stats.loss, "train_accuracy": stats.train_accuracy}
        if eval_acc is not None:
            metrics["eval_accuracy"] = eval_acc
        yield Progress("train", (epoch + 1) * steps, total, f"epoch {epoch + 1} done", metrics)
    prepared.eval()
    return history


def calibrate_or_train(
    prepared: nn.Module, inp: FlowInput, *, prefix: str = ""
) -> Generator[Progress, None, tuple[float, list[EpochStats]]]:
    """Calibrate the observers (PTQ) or train the fake-quant model (QAT); returns the seconds it took and the epochs."""
    if not inp.traits.trains:
        s = inp.recipe.settings
        return (yield from calibrate(prepared, inp.calib, s.batch_size, s.calib_batches, prefix=prefix)), []
    assert inp.train is not None  # run_data loads training data for a mode that trains
    start = time.perf_counter()
    history = yield from train_fake_quant(prepared, inp.train, inp.recipe.qat, inp.eval, prefix=prefix)
    return time.perf_counter() - start, history
