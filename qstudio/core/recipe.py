"""The recipe: everything one quantization run needs, versioned and saved as TOML.

The window edits a :class:`Recipe`, the command line reads one from a file or
builds one from its options, the report embeds it.  Each section is a small
dataclass validated in ``__post_init__``; errors name the TOML key
(``settings.backend``) and the accepted values.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from qstudio.core.errors import RecipeError
from qstudio.core.recipe_checks import _build, _check_types, _drop_none

RECIPE_VERSION = 1

MODES = ("eager", "fx", "qat", "dynamic")
BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")
OBSERVERS = ("minmax", "moving_average", "histogram")
DATA_KINDS = ("demo", "folder", "tensor", "random")
INPUT_DTYPES = ("float32", "int64")
DYNAMIC_DTYPES = ("qint8", "float16")
QAT_GRAPHS = ("fx", "eager")
REDUCE_RANGE = ("auto", "on", "off")
#: the deployment runtimes (qstudio.core.runtimes holds them), and the export targets: one of them or "auto"
RUNTIMES = ("torchscript", "onnx", "openvino", "pt2")
TARGETS = (*RUNTIMES, "auto")
#: --target auto: the INT8 target may lose at most this many accuracy (or agreement) points to torch.ao's result
DEFAULT_MAX_DROP = 0.5


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(
            f"{key} = {value!r} is not a known value",
            f"use one of: {', '.join(allowed)}",
        )


def _positive(key: str, value: Any, *, allow_zero: bool = False, kind: type = int) -> None:
    ok_type = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "greater than zero"
        raise RecipeError(f"{key} = {value!r} is invalid", f"give a {kind.__name__} {need}")


@dataclass
class ModelSource:
    """Where the model comes from.

    ``spec`` is ``torchvision:NAME``, ``demo``, a weights file (``.pt``, ``.pth``,
    ``.safetensors``), a pickled module or TorchScript file, or a factory
    ``path/to/model.py:function``.  ``factory`` builds the module a state_dict
    is loaded into.  ``trusted_sha256`` records the user's explicit trust for
    one exact file content: a recipe replays trust only for that file, and an
    edited file loses it.
    """

    spec: str = "demo"
    factory: str | None = None
    trusted_sha256: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise RecipeError("model.spec is empty", "name a model file, a factory or torchvision:NAME")


@dataclass
class DataSource:
    """Input data for calibration, training or evaluation.

    ``kind``: ``demo`` (the shipped digits set), ``folder`` (an image folder,
    class sub-folders give labels), ``tensor`` (a ``.npy``/``.pt`` file; labels
    from ``labels``), ``random`` (allowed, but every result made with it is
    flagged).  Image preprocessing is part of the recipe so a run can be
    replayed exactly.
    """

    kind: str = "demo"
    path: str | None = None
    labels: str | None = None
    split: str = "calib"  # for demo data: calib, train or eval
    limit: int | None = None
    resize: int | None = None
    crop: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    grayscale: bool = False

    def __post_init__(self) -> None:
        _choice("data.kind", self.kind, DATA_KINDS)
        if self.kind in ("folder", "tensor") and not self.path:
            raise RecipeError(f"{self.kind} data needs a path", "set data.path to the file or folder")
        _choice("data.split", self.split, ("calib", "train", "eval"))
        if self.limit is not None:
            _positive("data.limit", self.limit)
        for key in ("resize", "crop"):
            if getattr(self, key) is not None:
                _positive(f"data.{key}", getattr(self, key))
        if (self.mean is None) != (self.std is None):
            raise RecipeError("data.mean and data.std must be given together", "set both or neither")

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        if self.kind == "demo":
            return f"demo digits ({self.split})"
        if self.kind == "random":
            return "random data (results are not meaningful)"
        return f"{self.kind} {self.path}" + (f" + labels {self.labels}" if self.labels else "")


@dataclass
class QuantSettings:
    """How to quantize; defaults are the ones that keep accuracy on x86 CPUs."""

    backend: str = "x86"
    observer: str = "histogram"
    per_channel: bool = True
    symmetric: bool = False
    calib_batches: int = 16
    batch_size: int = 16
    dynamic_dtype: str = "qint8"
    # 7-bit activations: "auto" = 7 bits for static x86/fbgemm models (their depthwise kernels saturate with 8,
    # even with VNNI), 8 bits for dynamic Linear/LSTM where the CPU has VNNI/AMX; onednn/qnnpack always 8
    reduce_range: str = "auto"
    skip: list[str] = field(default_factory=list)
    skip_worst: int = 0

    def __post_init__(self) -> None:
        _choice("settings.backend", self.backend, BACKENDS)
        _choice("settings.observer", self.observer, OBSERVERS)
        _choice("settings.dynamic_dtype", self.dynamic_dtype, DYNAMIC_DTYPES)
        _choice("settings.reduce_range", self.reduce_range, REDUCE_RANGE)
        for key in ("per_channel", "symmetric"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(
                    f"settings.{key} = {getattr(self, key)!r} is not true or false", f"write {key} = true or false"
                )
        _positive("settings.calib_batches", self.calib_batches)
        _positive("settings.batch_size", self.batch_size)
        _positive("settings.skip_worst", self.skip_worst, allow_zero=True)
        if not all(isinstance(s, str) for s in self.skip):
            raise RecipeError("settings.skip must be a list of module names", 'write skip = ["fc", "layer1.0.conv1"]')


@dataclass
class QATSettings:
    """Quantization-aware training.

    Observers are frozen and BatchNorm switched to running statistics after a
    share of the epochs, as the PyTorch QAT tutorial recommends.
    """

    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 32
    graph: str = "fx"
    freeze_bn_epoch: int = 1
    freeze_observer_epoch: int = 1

    def __post_init__(self) -> None:
        _positive("qat.epochs", self.epochs)
        _positive("qat.lr", self.lr, kind=float)
        _positive("qat.batch_size", self.batch_size)
        _choice("qat.graph", self.graph, QAT_GRAPHS)
        _positive("qat.freeze_bn_epoch", self.freeze_bn_epoch, allow_zero=True)
        _positive("qat.freeze_observer_epoch", self.freeze_observer_epoch, allow_zero=True)


@dataclass
class BenchmarkSettings:
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    warmup: int = 10
    iters: int = 50

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise RecipeError("benchmark.batch_sizes is empty", "give at least one batch size, e.g. [1, 8]")
        for b in self.batch_sizes:
            _positive("benchmark.batch_sizes", b)
        if self.threads is not None:
            _positive("benchmark.threads", self.threads)
        _positive("benchmark.warmup", self.warmup, allow_zero=True)
        _positive("benchmark.iters", self.iters)


@dataclass
class DeploySettings:
    """The runtimes a run measures side by side and the one its export targets.

    ``runtimes``: None measures every runtime installed here that is compared
    by default (the ``QSTUDIO_RUNTIMES`` environment variable, a comma list,
    narrows that default on a machine); a list names them; ``[]`` measures torch
    only.  The export target is always measured.  ``target``: the export's
    runtime, or ``auto``: the fastest INT8 runtime whose accuracy (agreement
    without labels) is within ``max_drop`` points (default
    :data:`DEFAULT_MAX_DROP`) of torch.ao's result.
    """

    runtimes: list[str] | None = None
    target: str = "torchscript"
    max_drop: float | None = None

    def __post_init__(self) -> None:
        for name in self.runtimes or []:
            _choice("deploy.runtimes", name, RUNTIMES)
        _choice("deploy.target", self.target, TARGETS)
        if self.max_drop is not None:
            _positive("deploy.max_drop", self.max_drop, allow_zero=True, kind=float)


@dataclass
class Recipe:
    """Everything a run needs.  ``fusion = None`` means: use the suggested groups."""

    model: ModelSource = field(default_factory=ModelSource)
    mode: str = "fx"
    input_shape: list[int] | None = None
    input_dtype: str | None = None  # None: what the model says (a factory's input_dtype), else float32
    fusion: list[list[str]] | None = None
    settings: QuantSettings = field(default_factory=QuantSettings)
    qat: QATSettings = field(default_factory=QATSettings)
    calib: DataSource = field(default_factory=DataSource)
    train: DataSource | None = None
    eval: DataSource | None = None
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        _choice("mode", self.mode, MODES)
        if self.input_dtype is not None:
            _choice("input_dtype", self.input_dtype, INPUT_DTYPES)
        if self.input_shape is not None and (
            not self.input_shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in self.input_shape)
        ):
            raise RecipeError(
                f"input_shape = {self.input_shape!r} is invalid",
                "give positive integers with the batch first, e.g. [1, 3, 224, 224]",
            )
        if self.fusion is not None:
            for group in self.fusion:
                if not isinstance(group, list) or len(group) < 2 or not all(isinstance(n, str) for n in group):
                    raise RecipeError(
                        f"fusion group {group!r} is invalid",
                        'write each group as a list of two or three module names, e.g. ["conv1", "bn1", "relu"]',
                    )
        if self.version > RECIPE_VERSION:
            raise RecipeError(
                f"recipe version {self.version} is newer than this qstudio understands ({RECIPE_VERSION})",
                "upgrade qstudio or re-save the recipe from this version",
            )

    # -- what the data sources imply --------------------------------------
    def eval_source(self) -> DataSource | None:
        """The evaluation data a run uses: ``eval``, else the demo's eval split when calibrating on the demo.

        None means the run evaluates on its calibration data.
        """
        return self.eval or (DataSource(kind="demo", split="eval") if self.calib.kind == "demo" else None)

    def train_source(self) -> DataSource | None:
        """The training data QAT uses: ``train``, else the demo's train split when calibrating on the demo."""
        return self.train or (DataSource(kind="demo", split="train") if self.calib.kind == "demo" else None)

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _drop_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError("a recipe must be a table of keys", "start from a recipe saved by qstudio")
        data = dict(data)
        version = data.pop("version", RECIPE_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise RecipeError(f"version = {version!r} is invalid", f"use version = {RECIPE_VERSION}")
        if version > RECIPE_VERSION:
            raise RecipeError(
                f"recipe version {version} is newer than this qstudio understands ({RECIPE_VERSION})",
                "upgrade qstudio or re-save the recipe from this version",
            )
        sections: dict[str, type] = {
            "model": ModelSource,
            "settings": QuantSettings,
            "qat": QATSettings,
            "calib": DataSource,
            "train": DataSource,
            "eval": DataSource,
            "benchmark": BenchmarkSettings,
            "deploy": DeploySettings,
        }
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise RecipeError(
                    f"unknown recipe key {key!r}",
                    f"remove it; known keys are {', '.join(sorted(known))}",
                )
            if key in sections:
                kwargs[key] = _build(sections[key], key, value)
            else:
                _check_types(cls, "", {key: value})
                kwargs[key] = value
        try:
            return cls(version=version, **kwargs)
        except TypeError as exc:  # a wrong type that __post_init__ did not catch
            raise RecipeError(f"invalid recipe value: {exc}", "check the types of the keys") from exc

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> Recipe:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"the recipe is not valid TOML ({exc})", "fix the line named, or re-save it") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the recipe atomically; a full or read-only disk is an ExportError and the earlier file is kept."""
        from qstudio.core.errors import ExportError
        from qstudio.core.fileio import atomic_write_bytes

        path = Path(path)
        if path.is_dir():
            raise ExportError(f"{path} is a folder", "give a file name for the recipe, e.g. recipe.toml")
        atomic_write_bytes(path, self.to_toml().encode("utf-8"), "recipe")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise RecipeError(f"recipe file {path} does not exist", "check the path") from None
        except IsADirectoryError:
            raise RecipeError(f"{path} is a folder, not a recipe file", "name a .toml file") from None
        except OSError as exc:
            raise RecipeError(f"cannot read recipe {path}: {exc.strerror}", "check the file's permissions") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RecipeError(f"recipe {path} is not UTF-8 text", "name a .toml recipe saved by qstudio") from None
        try:
            return cls.from_toml(text)
        except RecipeError as exc:
            raise RecipeError(f"{path}: {exc.problem}", exc.fix) from None
