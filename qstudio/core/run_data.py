"""The data a run reads: its calibration, training and evaluation sets, loaded and checked against the model.

:func:`load_run_data` reads every data source a recipe names (the rule for
which data a run evaluates on and trains with is :meth:`Recipe.eval_source`
and :meth:`Recipe.train_source`) and settles the input shape;
:func:`check_data_fits` runs one sample of each through the float model before
any work, so a mismatch names its setting.

Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from qstudio.core.data import Dataset, load_dataset
from qstudio.core.errors import DataError
from qstudio.core.flows import mode_traits
from qstudio.core.inputs import check_fits
from qstudio.core.loading import LoadedModel
from qstudio.core.recipe import DataSource, Recipe


@dataclass
class RunData:
    calib: Dataset
    train: Dataset | None
    eval: Dataset
    input_shape: list[int]
    eval_is_calib: bool


def vocab_size(model: nn.Module) -> int | None:
    emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return emb.num_embeddings if emb is not None else None


def input_shape_for(recipe: Recipe, loaded: LoadedModel) -> list[int] | None:
    return recipe.input_shape or loaded.input_shape


def input_dtype_for(recipe: Recipe, loaded: LoadedModel) -> str:
    """The user's setting, else what the model says (a factory attribute, or ``int64`` behind an embedding)."""
    return recipe.input_dtype or loaded.input_dtype or "float32"


def _load_role(role: str, source: DataSource, shape: list[int] | None, dtype: str, vocab: int | None) -> Dataset:
    """Load one data source; an error names the setting it concerns (``key``), so the window can mark it."""
    try:
        return load_dataset(source, input_shape=shape, input_dtype=dtype, vocab_size=vocab)
    except DataError as exc:
        exc.key = role
        raise


def load_run_data(recipe: Recipe, loaded: LoadedModel) -> RunData:
    """Read every data source the recipe names and check they fit the model.

    Without an input shape set by the user or declared by the model's code,
    real calibration data decides it (a guessed shape, or torchvision's usual
    224, must not refuse the user's own data; :func:`check_data_fits` then
    tries it); random data takes the model's shape.
    """
    dtype = input_dtype_for(recipe, loaded)
    vocab = vocab_size(loaded.module)
    declared = loaded.input_shape if loaded.shape_declared or recipe.calib.kind == "random" else None
    shape = recipe.input_shape or declared
    calib = _load_role("calib", recipe.calib, shape, dtype, vocab)
    shape = shape or [1, *calib.inputs.shape[1:]]
    train = None
    if mode_traits(recipe.mode).trains:
        src = recipe.train_source()
        if src is None:
            raise DataError(
                "quantization-aware training needs labeled training data",
                "give --train-data X --train-labels Y (or an image folder with one sub-folder per class)",
                key="train",
            )
        train = _load_role("train", src, shape, dtype, vocab)
    eval_src = recipe.eval_source()
    evaluation = _load_role("eval", eval_src, shape, dtype, vocab) if eval_src is not None else calib
    return RunData(calib, train, evaluation, shape, eval_src is None)


def check_data_fits(model: nn.Module, data: RunData) -> None:
    """One sample of each data source through the float model, before any work: a mismatch names its setting."""
    sources = {"calib": data.calib, "train": data.train, "eval": None if data.eval_is_calib else data.eval}
    check_fits(
        model, {role: (ds.sample(1), ds.description, ds.is_random) for role, ds in sources.items() if ds is not None}
    )
