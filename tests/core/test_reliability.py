"""Issue #5, engine side: bad input, faults and untrusted files.

Each test feeds one bad input or fault to the real engine (real models, real
torch.ao quantization, real files) and checks that a :class:`QStudioError`
comes out naming the problem and the fix, that no code from an untrusted
file ran, and that nothing the user had (session state, an earlier file) was
lost.  A monkeypatch appears only where a fault cannot be produced for real
here (a disk failing midway, a GPU on a machine without one); each says so.
"""

from __future__ import annotations

from pathlib import Path

from qstudio.core.errors import QStudioError
from qstudio.core.loading import load_model
from qstudio.core.recipe import ModelSource, Recipe, code_files

ZOO = Path(__file__).parent / "models" / "zoo.py"


def assert_clean(err: QStudioError, *problem_words: str, fix_words: tuple[str, ...] = ()) -> None:
    """The message names the problem (with these words) and a fix."""
    assert isinstance(err, QStudioError)
    assert err.problem and err.fix, f"problem and fix must both be given: {err!r}"
    text = f"{err.problem} {err.fix}".lower()
    for word in (*problem_words, *fix_words):
        assert word.lower() in text, f"{word!r} not in {str(err)!r}"


# --------------------------------------------------------------------------- code a recipe would run


def test_code_files_lists_the_factory_files_a_recipe_would_import(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    as_spec = Recipe.from_toml('[model]\nspec = "sub/net.py:build"\n')
    assert code_files(as_spec) == [(tmp_path / "sub" / "net.py").resolve()]
    assert code_files(as_spec, base=tmp_path / "sub") == [(tmp_path / "sub" / "sub" / "net.py").resolve()]

    with_factory = Recipe.from_toml('[model]\nspec = "w.safetensors"\nfactory = "/abs/models.py:make.net"\n')
    assert code_files(with_factory) == [Path("/abs/models.py")]

    # a recipe that replays trust for a pickle would deserialise it without asking: it is code too
    replayed = Recipe.from_toml('[model]\nspec = "m.pt"\nfactory = "f.py:b"\ntrusted_sha256 = "ab"\n')
    assert code_files(replayed) == [(tmp_path / "f.py").resolve(), (tmp_path / "m.pt").resolve()]

    for spec in ("demo", "torchvision:resnet18", "weights.pt", "model.py"):
        assert code_files(Recipe(model=ModelSource(spec))) == [], spec
    # the spec is a factory: model.factory is ignored by the loader, so it is not listed
    both = Recipe(model=ModelSource("a.py:build", factory="b.py:build"))
    assert code_files(both) == [(tmp_path / "a.py").resolve()]


def test_code_files_names_exactly_the_file_the_loader_imports(tmp_path: Path, monkeypatch) -> None:
    """The listed file is the one that runs: a factory touching a marker proves it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    marker = tmp_path / "ran.txt"
    (tmp_path / "models" / "evil.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "def build():\n    return torch.nn.Linear(2, 2)\n"
    )
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text('[model]\nspec = "models/evil.py:build"\n')
    recipe = Recipe.load(recipe_path)
    listed = code_files(recipe)
    assert not marker.exists()  # reading the recipe and listing its code ran nothing
    load_model(recipe.model)
    assert marker.exists()
    assert listed == [(tmp_path / "models" / "evil.py").resolve()]
