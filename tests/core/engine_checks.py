"""What the engine tests share: the test models, a run driven like the window's worker, and a clean error.

Import it as ``from engine_checks import ...`` (pytest puts this folder on ``sys.path``, as it does
tests/ui for ``dialogs``).  Fixtures live in conftest.py; these are plain functions and constants.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from qstudio.cli import main
from qstudio.core import verdicts
from qstudio.core.errors import QStudioError
from qstudio.core.flows import FlowInput, get_flow
from qstudio.core.loading import LoadedModel
from qstudio.core.pipeline import RunResult, load_run_data, run_recipe
from qstudio.core.progress import CancelToken, Progress, run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, Recipe

ZOO = Path(__file__).parent / "models" / "zoo.py"  # small test models, each built by a factory function
QUICK = BenchmarkSettings(batch_sizes=[1], warmup=1, iters=2)  # a figure, not a measurement: for error paths


def zoo(name: str) -> ModelSource:
    """The test model ``name`` from tests/core/models/zoo.py (plain_cnn, gated_cnn, lstm_classifier, ...)."""
    return ModelSource(f"{ZOO}:{name}")


def write_factory(folder: Path, body: str, name: str = "net.py") -> Path:
    """A user's model file: ``body`` after the torch imports."""
    path = folder / name
    path.write_text("import torch\nfrom torch import nn\n\n" + body)
    return path


def bomb_factory(folder: Path, message: str) -> Path:
    """A model whose ``bomb`` module raises ``message`` on the third calibration batch (after two good ones)."""
    return write_factory(
        folder,
        f"""
class Bomb(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        if x.shape[0] > 1:  # calibration batches, not the single-sample checks before them
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError({message!r})
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bomb = Bomb()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        return self.head(self.bomb(self.conv(x)))


def build():
    return Net()


build.input_shape = [1, 1, 16, 16]
""",
    )


def assert_clean(err: QStudioError, *problem_words: str, fix_words: tuple[str, ...] = ()) -> None:
    """The message names the problem (with these words) and a fix."""
    assert isinstance(err, QStudioError)
    assert err.problem and err.fix, f"problem and fix must both be given: {err!r}"
    text = f"{err.problem} {err.fix}".lower()
    for word in (*problem_words, *fix_words):
        assert word.lower() in text, f"{word!r} not in {str(err)!r}"


def drive(work, cancel_at: tuple[str, int] | None = None) -> tuple[object, list[Progress]]:
    """Run ``work`` like the window's worker; cancel at the first step of ``stage`` with ``done`` >= n.

    An exception leaving the run carries ``seen`` (every step before it) and ``cancelled_at``.
    """
    seen: list[Progress] = []
    exc_step: list[Progress] = []  # the step at which the user pressed Cancel
    token = CancelToken()

    def on_progress(step: Progress) -> None:
        seen.append(step)
        if cancel_at and step.stage == cancel_at[0] and step.done >= cancel_at[1] and not token.cancelled:
            token.cancel()
            exc_step.append(step)

    try:
        return run(work, on_progress, token), seen
    except BaseException as exc:
        exc.seen = seen  # type: ignore[attr-defined]
        exc.cancelled_at = exc_step[0] if exc_step else None  # type: ignore[attr-defined]
        raise


def stages(steps: list[Progress]) -> set[str]:
    return {s.stage for s in steps}


def preflight(recipe: Recipe, model: LoadedModel) -> None:
    """The checks a run makes before its first batch (data, then the flow's preflight), without the run."""
    data = load_run_data(recipe, model)
    inp = FlowInput(model.module, recipe, [], data.calib, data.calib.sample(1), data.train, data.eval)
    get_flow(recipe).preflight(inp)


class SmallConvNet(nn.Module):
    """A few conv/bn/relu blocks and a classifier: quantizes in a second, runs in about a millisecond."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def quantize_fx_x86(model: nn.Module, example: torch.Tensor, calib_batches: int = 4) -> nn.Module:
    """Test setup only: post-training static FX quantization for the x86 backend."""
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (example,))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(calib_batches):
            prepared(torch.randn(4, *example.shape[1:], generator=gen))
    return convert_fx(prepared)


# --------------------------------------------------------------------------- quantizing a module built in the test
FAST_BENCH = BenchmarkSettings(batch_sizes=[1], warmup=2, iters=20)


def loaded(module: nn.Module, shape: list[int], dtype: str = "float32", name: str = "test") -> LoadedModel:
    return LoadedModel(
        module=module.eval(), source=ModelSource(spec=name), kind="factory", name=name,
        input_shape=shape, input_dtype=dtype, shape_declared=True,
    )  # fmt: skip


def quantize(module: nn.Module, shape: list[int], mode: str = "fx", dtype: str = "float32", **settings) -> RunResult:
    recipe = Recipe(mode=mode, calib=DataSource(kind="random"), benchmark=dataclasses.replace(FAST_BENCH))
    recipe.settings.calib_batches = 2
    for key, value in settings.items():
        setattr(recipe.settings, key, value)
    return run(run_recipe(recipe, loaded(module, shape, dtype)))


def codes(result: RunResult) -> dict[str, verdicts.Verdict]:
    return {v.code: v for v in result.verdicts}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``qstudio ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err
