"""What a model takes as input (shape and dtype), and whether the chosen data fits it.

A user opening their own model should be able to press Run without typing a
shape.  The facts come, most trusted first, from: the user's own setting; the
model's source (a factory's ``input_shape``/``input_dtype`` attributes,
torchvision's documented sizes, the demo's metadata); the data the user picks;
and last the model itself: its first layer says the channels, features or
that it takes token ids (``nn.Embedding``), and a test forward on candidate
sizes finds a spatial size the model accepts.

:func:`check_fits` runs one sample of each chosen data source through the
float model before any work starts, so a mismatch is a clear error naming
the setting, never a failure halfway through calibration.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from qstudio.core.errors import DataError

log = logging.getLogger(__name__)

#: Spatial sizes tried for image models, most common first (224 for ImageNet models, 32/28 for small ones).
_SIDES_2D = (224, 32, 28, 64, 96, 128, 256, 299, 16, 512)
_LENGTHS_1D = (128, 256, 1024, 16000, 64, 32, 16)
_SIZES_3D = ((16, 112, 112), (8, 64, 64), (16, 224, 224))
_SEQ_LENGTHS = (16, 32, 8, 64, 128)
_PROBE_SECONDS = 10.0  # stop trying more sizes after this long; the user can always type the shape


@dataclass
class InputGuess:
    shape: list[int] | None
    dtype: str
    origin: str  # where the shape and dtype came from, in words the status bar can show
    checked: bool = False  # a forward pass with this shape ran


def first_layer(module: nn.Module) -> tuple[str, nn.Module] | None:
    """The first module (in definition order) that consumes the input: an embedding, convolution, linear or RNN."""
    consumers = (nn.Embedding, nn.EmbeddingBag, nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase)
    for name, m in module.named_modules():
        if isinstance(m, consumers):
            return name, m
    return None


def dtype_from_model(module: nn.Module) -> str | None:
    """``int64`` when the model starts with an embedding (token ids), ``float32`` for other known first layers."""
    found = first_layer(module)
    if found is None:
        return None
    return "int64" if isinstance(found[1], (nn.Embedding, nn.EmbeddingBag)) else "float32"


def _candidates(name: str, layer: nn.Module) -> tuple[list[list[int]], str]:
    """Shapes to try for a model whose first layer is ``layer``, and a phrase naming it."""
    kind = type(layer).__name__
    if isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
        return [[1, n] for n in _SEQ_LENGTHS], f"first layer {name} is {kind}({layer.num_embeddings}): token ids"
    if isinstance(layer, nn.modules.conv._ConvNd):
        c = layer.in_channels
        what = f"first layer {name} is {kind} with {c} input channel{'s' if c != 1 else ''}"
        dims = len(layer.kernel_size)
        if dims == 1:
            return [[1, c, n] for n in _LENGTHS_1D], what
        if dims == 3:
            return [[1, c, *s] for s in _SIZES_3D], what
        return [[1, c, s, s] for s in _SIDES_2D], what
    if isinstance(layer, nn.Linear):
        f = layer.in_features
        return [[1, f], [1, 16, f]], f"first layer {name} is Linear with {f} input features"
    if isinstance(layer, nn.RNNBase):
        i = layer.input_size
        shapes = [[1, 16, i], [16, 1, i]] if layer.batch_first else [[16, 1, i], [1, 16, i]]
        return shapes, f"first layer {name} is {kind} with input size {i}"
    return [], f"first layer {name} is {kind}"


def example_input(shape: list[int], dtype: str, module: nn.Module | None = None) -> torch.Tensor:
    """A random input of ``shape``/``dtype``; token ids stay inside the model's vocabulary."""
    if dtype == "int64":
        vocab = 1000
        if module is not None:
            emb = next((m for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), None)
            vocab = emb.num_embeddings if emb is not None else vocab
        return torch.randint(0, vocab, shape)
    return torch.randn(shape)


def _runs(module: nn.Module, x: torch.Tensor) -> Exception | None:
    try:
        with torch.no_grad():
            module(x)
    except Exception as exc:  # any failure means "not this shape"
        return exc
    return None


def guess_input(module: nn.Module, shape: list[int] | None, dtype: str | None, origin: str = "") -> InputGuess:
    """Complete what the model's source said (``shape``/``dtype``, may be None) from the model itself.

    A shape the source gave is kept as it is.  Otherwise candidate shapes for
    the first layer are tried with a forward pass until one runs.
    """
    model_dtype = dtype_from_model(module)
    dtype = dtype or model_dtype or "float32"
    if shape is not None:
        return InputGuess(list(shape), dtype, origin or "the model's source")
    found = first_layer(module)
    if found is None:
        return InputGuess(None, dtype, "the model has no convolution, linear, embedding or RNN layer to read it from")
    candidates, what = _candidates(*found)
    if not candidates:
        return InputGuess(None, dtype, what)
    was_training = module.training
    module.eval()
    started = time.monotonic()
    failure: Exception | None = None
    try:
        for candidate in candidates:
            failure = _runs(module, example_input(candidate, dtype, module))
            if failure is None:
                return InputGuess(candidate, dtype, f"{what}; a test forward with {candidate} ran", checked=True)
            if time.monotonic() - started > _PROBE_SECONDS:
                break
    finally:
        module.train(was_training)
    log.info("no candidate input shape ran through the model: %s", failure)
    return InputGuess(
        candidates[0], dtype, f"{what}; guessed {candidates[0]}, but a test forward failed: set the input shape"
    )


# -- checking chosen data against the model ------------------------------------------------------------------
_SETTING = {
    "calib": (
        "calibration data",
        "choose calibration data that fits the model (--calib-data; in the window: Settings > Data)",
    ),
    "train": (
        "training data",
        "choose training data that fits the model (--train-data; in the window: Settings > Data)",
    ),
    "eval": (
        "evaluation data",
        "choose evaluation data that fits the model (--eval-data; in the window: Settings > Data)",
    ),
}
_SHAPE_FIX = "set the input shape the model takes (--input-shape; in the window: Settings > Input > Shape)"


def check_fits(module: nn.Module, samples: dict[str, tuple[torch.Tensor, str, bool]]) -> None:
    """Run one sample of each data source (role -> (batch of one, description, is random)) through ``module``.

    Raises :class:`DataError` with ``key`` set to the role (``calib``,
    ``train``, ``eval``) whose sample the model refused, naming the model's
    complaint and the setting to change.
    """
    seen: set[tuple[tuple[int, ...], torch.dtype]] = set()
    was_training = module.training
    module.eval()
    try:
        for role, (x, description, is_random) in samples.items():
            key = (tuple(x.shape), x.dtype)
            if key in seen:  # same shape and dtype as a source already checked
                continue
            seen.add(key)
            failure = _runs(module, x)
            if failure is None:
                continue
            from qstudio.core.graph import first_line, user_frame

            what, fix = _SETTING.get(role, ("the data", "choose data that fits the model"))
            where = user_frame(failure)
            at = f" (at {where})" if where else ""
            raise DataError(
                f"the {what} does not fit the model: one sample of shape {list(x.shape)} ({str(x.dtype).replace('torch.', '')}) "
                f"from {description} made the model raise {type(failure).__name__}{at}: {first_line(failure)}",
                _SHAPE_FIX if is_random else fix,
                key="input_shape" if is_random else role,
            )
    finally:
        module.train(was_training)
