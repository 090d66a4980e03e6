"""A search's worker process: ``python -m qstudio.core.search_worker FOLDER``.

Started by :func:`qstudio.core.search.search` with ``workers > 1``.  The
folder holds ``spec.json`` (the user's recipe, the search settings with the
shared Optuna storage, the code grants the model was loaded with) and
``weights.pt`` (the session's weights: a torchvision model with settled
BatchNorm is not what its source builds).  The worker loads the model again
with exactly those grants, loads the weights with ``weights_only=True``,
then runs sampled trials on the shared study until its limits are reached.
Its trials reach the parent through the storage; its exit code says whether
it failed.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0])
    spec = json.loads((folder / "spec.json").read_text())

    import torch

    from qstudio.core.loading import load_model
    from qstudio.core.progress import run
    from qstudio.core.recipe import Recipe
    from qstudio.core.search import SearchSettings, search

    recipe = Recipe.from_dict(spec["recipe"])
    settings = SearchSettings(**spec["settings"])
    loaded = load_model(recipe.model, grants=frozenset(spec["grants"]))
    state = torch.load(folder / "weights.pt", weights_only=True)
    loaded.module.load_state_dict(state)
    loaded.module.eval()
    run(search(recipe, loaded, settings, worker=True))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
