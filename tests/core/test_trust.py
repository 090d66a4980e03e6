"""Trust in one place: what opening a model would run (decided up front) and the grants the loader checks.

Real files and real loads throughout: a marker file that a factory or a
pickle creates when it runs proves what ran and what did not.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from untrusted import Evil

from qstudio.cli import main as cli_main
from qstudio.core import loading
from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.loading import file_sha256, load_model
from qstudio.core.recipe import ModelSource, Recipe
from qstudio.core.trust import CodeRisk, Grants, code_files, granted, granted_by_user, uncovered, what_runs

FACTORY = "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())\n"


def _factory(folder: Path, marker: Path | None = None, name: str = "net.py") -> Path:
    path = folder / name
    touch = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" if marker else ""
    path.write_text(touch + FACTORY)
    return path


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())


def _files(tmp_path: Path) -> dict[str, Path]:
    """One file of each kind, all of the same small model."""
    model = _module()
    files = {
        "state_dict": tmp_path / "weights.pt",
        "legacy_state_dict": tmp_path / "legacy.pt",
        "safetensors": tmp_path / "weights.safetensors",
        "pickled_module": tmp_path / "whole.pt",
        "raw_pickle": tmp_path / "raw.pkl",
        "torchscript": tmp_path / "scripted.pt",
    }
    torch.save(model.state_dict(), files["state_dict"])
    torch.save(model.state_dict(), files["legacy_state_dict"], _use_new_zipfile_serialization=False)
    save_file(model.state_dict(), str(files["safetensors"]))
    torch.save(model, files["pickled_module"])
    files["raw_pickle"].write_bytes(pickle.dumps(model, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(files["torchscript"]))
    return files


# --------------------------------------------------------------------------- what_runs, per kind of source


def test_what_runs_for_each_kind_of_source(tmp_path: Path) -> None:
    factory = _factory(tmp_path)
    files = _files(tmp_path)
    assert what_runs(ModelSource("demo")) == []  # qstudio's own code
    assert what_runs(ModelSource("torchvision:resnet18")) == []
    assert what_runs(ModelSource("torchvision:resnet18", factory=f"{factory}:build")) == []  # ignored by the loader

    (risk,) = what_runs(ModelSource(f"{factory}:build"))
    assert risk == CodeRisk(factory.resolve(), file_sha256(factory), "factory", risk.reason)
    assert "net.py" in risk.reason and "runs" in risk.reason

    # weights run no code: only the factory that builds their module does
    for kind in ("state_dict", "legacy_state_dict", "safetensors"):
        risks = what_runs(ModelSource(str(files[kind]), factory=f"{factory}:build"))
        assert [(r.path, r.kind) for r in risks] == [(factory.resolve(), "factory")], kind

    # a pickled module and a TorchScript program are code, each named with its SHA-256 and why
    for kind, words in (
        ("pickled_module", ("pickled Python object", "arbitrary code", "torch.nn.modules.container.Sequential")),
        ("raw_pickle", ("pickled Python object", "arbitrary code")),
        ("torchscript", ("TorchScript program", "runs code")),
    ):
        (risk,) = what_runs(ModelSource(str(files[kind])))
        assert (risk.path, risk.sha256, risk.kind) == (files[kind].resolve(), file_sha256(files[kind]), "model file")
        assert risk.reason.startswith(files[kind].name + " is ")
        assert all(w in risk.reason for w in words), (kind, risk.reason)
        assert not risk.replayed

    # a model file that is missing, empty, damaged or not a model: no risk here, the loader names the problem
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk" * 10)
    for spec in ("missing.pt", str(tmp_path / "empty.pt"), str(tmp_path / "junk.pt"), str(tmp_path), "model.py"):
        assert what_runs(ModelSource(spec)) == [], spec
    # a factory that cannot be read is still listed (the user sees what is named), with no SHA-256 to grant
    (missing,) = what_runs(ModelSource(str(tmp_path / "nope.py:build")))
    assert missing.sha256 is None and uncovered([missing], Grants()) == []


def test_what_runs_names_the_payload_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": Evil(marker)}, evil)
    factory = _factory(tmp_path, marker)
    (risk, model) = what_runs(ModelSource(str(evil), factory=f"{factory}:build"))
    assert risk.kind == "factory" and model.kind == "model file"
    assert "io.open" in model.reason and "arbitrary code" in model.reason
    assert not marker.exists()


def test_what_runs_for_a_recipe_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    factory = _factory(tmp_path / "sub")
    files = _files(tmp_path)
    recipe = Recipe(model=ModelSource("whole.pt", factory="sub/net.py:build"))
    risks = what_runs(recipe)
    assert [r.path for r in risks] == [factory.resolve(), files["pickled_module"].resolve()]
    assert [r.path for r in what_runs(Recipe(model=ModelSource("net.py:build")), base=tmp_path / "sub")] == [
        factory.resolve()
    ]
    replayed = Recipe(model=ModelSource("whole.pt", trusted_sha256=file_sha256(files["pickled_module"]).upper()))
    (risk,) = what_runs(replayed)
    assert risk.replayed and "changed" not in risk.reason


def test_weights_only_not_in_force_makes_every_torch_file_code(tmp_path: Path) -> None:
    files = _files(tmp_path)
    source = ModelSource(str(files["state_dict"]), factory=f"{_factory(tmp_path)}:build")
    assert [r.kind for r in what_runs(source)] == ["factory"]
    # allow-listing the function the self-check's probe pickles makes the probe get through
    with torch.serialization.safe_globals([loading._probe_target]):
        risks = what_runs(source)
        assert [r.kind for r in risks] == ["factory", "model file"]
        assert "weights-only mode is not in force" in risks[1].reason
        assert what_runs(ModelSource(str(files["safetensors"]))) == []  # safetensors never unpickles


def test_what_runs_agrees_with_the_loader(tmp_path: Path) -> None:
    """A model file is a risk exactly when the loader, given every other grant, refuses it for want of trust."""
    factory = _factory(tmp_path)
    for kind, path in _files(tmp_path).items():
        source = ModelSource(str(path), factory=f"{factory}:build")
        risks = what_runs(source)
        others = granted(r for r in risks if r.kind == "factory")
        is_risk = any(r.kind == "model file" for r in risks)
        try:
            load_model(source, grants=others)
            refused = False
        except UntrustedFileError:
            refused = True
        assert refused == is_risk, kind
        if kind == "raw_pickle":  # not a torch.save file: granted, it fails as unreadable, never as untrusted
            with pytest.raises(LoadError) as info:
                load_model(source, grants=granted(risks))
            assert type(info.value) is LoadError
        else:
            assert load_model(source, grants=granted(risks)).module is not None, kind


# --------------------------------------------------------------------------- grants


def test_grants_are_file_sha256s() -> None:
    sha = "AB" * 32
    grants = Grants([sha, None, " ", f" {sha} "])
    assert grants == {sha.lower()} and isinstance(grants | ["cd" * 32], Grants)
    risk = CodeRisk(Path("/x.pt"), sha.lower(), "model file", "x.pt is code")
    assert grants.covers(risk) and uncovered([risk], grants) == [] and uncovered([risk], Grants()) == [risk]
    assert uncovered([risk], [sha]) == []  # any iterable of hex strings works


def test_a_file_swapped_between_the_decision_and_the_load_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _files(tmp_path)["pickled_module"]
    risks = what_runs(ModelSource(str(path)))
    grants = granted(risks)  # the user agreed to this content
    torch.save({"w": torch.ones(1), "x": Evil(marker)}, path)  # replaced before the loader reads it
    with pytest.raises(UntrustedFileError) as info:
        load_model(ModelSource(str(path)), grants=grants)
    assert "arbitrary code" in info.value.problem
    assert not marker.exists()


def test_factory_changed_after_the_user_agreed_is_not_run(tmp_path):
    """The window passes the SHA-256 of the file it showed; bytes read for import must be those bytes."""
    marker = tmp_path / "ran.txt"
    factory = tmp_path / "net.py"
    factory.write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "def build():\n    return torch.nn.Linear(4, 2)\n"
    )
    agreed = Grants([hashlib.sha256(factory.read_bytes()).hexdigest()])
    factory.write_text(factory.read_text() + "# swapped\n")
    with pytest.raises(LoadError) as err:
        load_model(ModelSource(f"{factory}:build"), grants=agreed)
    assert "changed after you agreed to run it" in err.value.problem and "again" in err.value.fix
    assert not marker.exists()
    agreed = Grants([hashlib.sha256(factory.read_bytes()).hexdigest()])
    assert load_model(ModelSource(f"{factory}:build"), grants=agreed).kind == "factory"
    assert marker.exists()


def test_a_factory_for_weights_is_checked_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    factory = _factory(tmp_path, marker)
    source = ModelSource(str(_files(tmp_path)["safetensors"]), factory=f"{factory}:build")
    with pytest.raises(UntrustedFileError, match="changed after you agreed"):
        load_model(source, grants=Grants())
    assert not marker.exists()
    assert load_model(source, grants=granted(what_runs(source))).kind == "safetensors" and marker.exists()


def test_a_recipe_replaying_trust_for_a_changed_file_asks_again(tmp_path: Path) -> None:
    path = _files(tmp_path)["pickled_module"]
    recipe = Recipe(model=ModelSource(str(path), trusted_sha256=file_sha256(path)))
    (risk,) = what_runs(recipe)
    assert risk.replayed
    assert load_model(recipe.model, grants=granted_by_user(recipe)).kind == "pickle"  # `qstudio run` replays it

    earlier = granted([risk])  # e.g. the window's remembered yes for that content
    torch.manual_seed(1)
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)  # edited since
    (changed,) = what_runs(recipe)
    assert not changed.replayed and changed.sha256 != risk.sha256
    assert "trusted before, but the file has changed since" in changed.reason
    assert uncovered([changed], earlier) == [changed]  # asked again
    with pytest.raises(UntrustedFileError, match="changed"):
        load_model(recipe.model, grants=granted_by_user(recipe))


def test_trust_flag_covers_only_that_files_current_bytes(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = _files(tmp_path)["pickled_module"]
    source = ModelSource(str(path))
    grants = granted_by_user(source, trust_model_file=True)  # --trust: the file's SHA-256, taken once
    assert grants == {file_sha256(path)}
    assert granted_by_user(source) == Grants()
    assert load_model(source, grants=grants).source.trusted_sha256 == file_sha256(path)

    other = tmp_path / "other.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), other)
    with pytest.raises(UntrustedFileError):  # another file is not covered
        load_model(ModelSource(str(other)), grants=grants)
    torch.save({"w": torch.ones(1), "x": Evil(marker)}, path)  # nor this file once its bytes change
    with pytest.raises(UntrustedFileError):
        load_model(source, grants=grants)
    assert not marker.exists()

    # the command line: --trust grants the file as it is when the command runs; without it, nothing
    torch.save(_module(), path)
    assert cli_main(["inspect", str(path), "--json"]) == 2
    assert "--trust" in capsys.readouterr().err
    assert cli_main(["inspect", str(path), "--json", "--trust"]) == 0
    assert '"kind": "pickle"' in capsys.readouterr().out


def test_trust_keyword_grants_the_spec_as_it_reads_now(tmp_path: Path) -> None:
    path = _files(tmp_path)["torchscript"]
    assert load_model(ModelSource(str(path)), trust=True).scripted
    with pytest.raises(UntrustedFileError):
        load_model(ModelSource(str(path)), grants=Grants())  # explicit grants: no factory, no trusted_sha256


# --------------------------------------------------------------------------- what a recipe names


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
    assert [r.path for r in what_runs(recipe)] == listed
