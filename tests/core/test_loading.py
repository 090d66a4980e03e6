"""Loading models from every supported form, on real models and real files (no mocks)."""

from __future__ import annotations

import io
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from qstudio.core import loading
from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.loading import LoadedModel, file_sha256, load_model
from qstudio.core.paths import resources_dir
from qstudio.core.recipe import ModelSource

# A small residual CNN, written into tmp_path as the user's model.py.  It imports a
# sibling module, which only works while its folder is on sys.path.
LAYERS_PY = """
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
"""

MODEL_PY = """
from pathlib import Path

import torch
from torch import nn

from qs_fixture_layers import Block


class Net(nn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def build():
    torch.manual_seed(0)
    return Net()


build.input_shape = [1, 1, 32, 32]


def build_wide():
    return Net(width=16)


def build_pretrained():
    net = Net()
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(Path(__file__).parent / "own_weights.safetensors")))
    return net


build_pretrained.input_shape = [1, 1, 32, 32]


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.fc = nn.Linear(16, 2)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


def build_tokens():
    return Tokens()


build_tokens.input_shape = [1, 12]
build_tokens.input_dtype = "int64"


def build_half():
    return Net().half()


def build_double():
    return Net().double()


def build_raises():
    raise ValueError("boom from the factory")


def build_int():
    return 42


def build_class():
    return Net
"""

X = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def write_model_py(folder: Path, body: str = MODEL_PY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qs_fixture_layers.py").write_text(LAYERS_PY)
    path = folder / "model.py"
    path.write_text(body)
    return path


def reference_net(model_py: Path) -> torch.nn.Module:
    """The fixture's Net, built through the loader, with weights changed away from the seed."""
    net = load_model(ModelSource(spec=f"{model_py}:build")).module
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        net.block.bn1.running_mean.uniform_(-0.5, 0.5)
    return net.eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor = X) -> bool:
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def save_pickled(obj: object, path: Path, fmt: str) -> Path:
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def script_save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture()
def model_py(tmp_path: Path) -> Path:
    return write_model_py(tmp_path / "code")


# ----------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_by_name(name: str) -> None:
    loaded = load_model(ModelSource(spec=f"torchvision:{name}"))
    assert isinstance(loaded, LoadedModel)
    assert (loaded.kind, loaded.name, loaded.scripted) == ("torchvision", name, False)
    assert loaded.input_shape == [1, 3, 224, 224] and loaded.input_dtype == "float32"
    assert not loaded.module.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.module.parameters())
    with torch.no_grad():
        assert loaded.module(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_torchvision_unknown_name_suggests_close_names() -> None:
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(spec="torchvision:resnet19"))
    text = str(info.value)
    assert "resnet19" in text and "resnet18" in text and "list_models()" in text


def test_bare_torchvision_name_hints_prefix() -> None:
    with pytest.raises(LoadError, match="torchvision:resnet18"):
        load_model(ModelSource(spec="resnet18"))


# ----------------------------------------------------------------------------- demo


def test_demo_model() -> None:
    demo = resources_dir() / "demo"
    if not (demo / "model.py").is_file() or not (demo / "digits_resnet.safetensors").is_file():
        pytest.skip(f"demo model files are not in {demo} yet (another engineer is creating them)")
    loaded = load_model(ModelSource(spec="demo"))
    assert (loaded.kind, loaded.name) == ("safetensors", "demo")
    assert not loaded.module.training
    assert loaded.input_shape is not None and loaded.input_dtype == "float32"
    with torch.no_grad():
        assert loaded.module(torch.randn(*loaded.input_shape)).shape[0] == loaded.input_shape[0]


# ----------------------------------------------------------------------------- weights + factory


@pytest.mark.parametrize("wrap", [None, "state_dict", "model_state_dict"])
def test_state_dict_with_factory(tmp_path: Path, model_py: Path, wrap: str | None) -> None:
    ref = reference_net(model_py)
    state = ref.state_dict()
    weights = tmp_path / "net.pt"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, weights)
    loaded = load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    assert (loaded.kind, loaded.name, loaded.scripted, loaded.warnings) == ("state_dict", "net.pt", False, [])
    assert loaded.input_shape == [1, 1, 32, 32] and loaded.input_dtype == "float32"
    assert loaded.source.trusted_sha256 is None
    assert not loaded.module.training
    assert same_outputs(loaded.module, ref)


def test_legacy_format_state_dict_and_dataparallel_prefix(tmp_path: Path, model_py: Path) -> None:
    ref = reference_net(model_py)
    weights = tmp_path / "old.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, weights, _use_new_zipfile_serialization=False)
    loaded = load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    assert any("module." in w for w in loaded.warnings)
    assert same_outputs(loaded.module, ref)


def test_safetensors_with_factory(tmp_path: Path, model_py: Path) -> None:
    ref = reference_net(model_py)
    weights = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(weights))
    loaded = load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    assert (loaded.kind, loaded.name) == ("safetensors", "net.safetensors")
    assert same_outputs(loaded.module, ref)


def test_factory_alone_loads_its_own_weights(model_py: Path) -> None:
    ref = reference_net(model_py)
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, str(model_py.parent / "own_weights.safetensors")
    )
    loaded = load_model(ModelSource(spec=f"{model_py}:build_pretrained"))
    assert (loaded.kind, loaded.name, loaded.scripted) == ("factory", "model.py:build_pretrained", False)
    assert loaded.input_shape == [1, 1, 32, 32]
    assert same_outputs(loaded.module, ref)


def test_factory_input_hints_for_token_models(model_py: Path) -> None:
    loaded = load_model(ModelSource(spec=f"{model_py}:build_tokens"))
    assert loaded.input_shape == [1, 12] and loaded.input_dtype == "int64"
    with torch.no_grad():
        assert loaded.module(torch.randint(0, 100, (1, 12))).shape == (1, 2)
    # no hint on the factory: the first layer and a test forward give the input, and say so (issue #10)
    wide = load_model(ModelSource(spec=f"{model_py}:build_wide"))
    assert wide.input_shape == [1, 1, 224, 224] and wide.input_dtype == "float32" and not wide.shape_declared
    assert "Conv2d with 1 input channel" in wide.input_origin


def test_torchvision_factory_for_a_state_dict(tmp_path: Path) -> None:
    ref = load_model(ModelSource(spec="torchvision:resnet18")).module
    weights = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), weights)
    loaded = load_model(ModelSource(spec=str(weights), factory="torchvision:resnet18"))
    assert loaded.kind == "state_dict" and loaded.input_shape == [1, 3, 224, 224]
    assert same_outputs(loaded.module, ref, torch.randn(1, 3, 32, 32))


def test_state_dict_mismatch_lists_keys_and_shapes(tmp_path: Path, model_py: Path) -> None:
    wide = load_model(ModelSource(spec=f"{model_py}:build_wide")).module
    weights = tmp_path / "wide.pt"
    torch.save(wide.state_dict(), weights)
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    text = str(info.value)
    assert "shape mismatches" in text and "stem.weight (file [16, 1, 3, 3], model [8, 1, 3, 3])" in text
    assert "factory" in info.value.fix

    other = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(8)])
    weights = tmp_path / "other.pt"
    torch.save(other.state_dict(), weights)
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    problem = info.value.problem
    assert "missing keys: stem.weight" in problem and "unexpected keys: 0.weight, 0.bias" in problem
    listed = problem.split("unexpected keys: ", 1)[1].split(", ...")[0]
    assert len(listed.split(", ")) == 5 and "more" in problem


def test_state_dict_without_factory_asks_for_one(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, weights)
    with pytest.raises(LoadError, match="--factory"):
        load_model(ModelSource(spec=str(weights)))


def test_non_state_dict_content(tmp_path: Path, model_py: Path) -> None:
    weights = tmp_path / "list.pt"
    torch.save([torch.ones(2)], weights)
    with pytest.raises(LoadError, match="holds a list"):
        load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    torch.save({"epoch": 3, "optimizer": {}}, weights)
    with pytest.raises(LoadError, match="'epoch'"):
        load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))


# ----------------------------------------------------------------------------- pickles and trust


class _Evil:
    """Unpickling this opens (creates) the marker file: stands in for any malicious payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_payload_is_real(tmp_path: Path) -> None:
    """Guard for the tests below: unsafe unpickling of these files really does touch the marker."""
    marker = tmp_path / "pwned"
    path = save_pickled({"w": torch.ones(1), "x": _Evil(marker)}, tmp_path / "evil.pt", "zip")
    torch.load(path, weights_only=False)["x"].close()
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw"])
@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_malicious_pickle_is_refused(
    tmp_path: Path, model_py: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, force_unsafe_env: bool
) -> None:
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = save_pickled({"w": torch.ones(1), "x": _Evil(marker)}, tmp_path / "evil.pt", fmt)
    for factory in (None, f"{model_py}:build"):
        with pytest.raises(UntrustedFileError) as info:
            load_model(ModelSource(spec=str(path), factory=factory))
        assert "io.open" in str(info.value) and "arbitrary code" in str(info.value)
    with pytest.raises(UntrustedFileError):  # a hash of some other content grants nothing
        load_model(ModelSource(spec=str(path), trusted_sha256="0" * 64))
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_pickled_module_refused_then_loaded_with_trust(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3600, 3))
    path = save_pickled(model, tmp_path / "whole.pt", fmt)
    with pytest.raises(UntrustedFileError) as info:
        load_model(ModelSource(spec=str(path)))
    err = info.value
    assert isinstance(err, LoadError)
    assert "pickled Python object" in err.problem and "arbitrary code" in err.problem
    assert "torch.nn.modules.container.Sequential" in err.problem
    assert "--trust" in err.fix and "state_dict" in err.fix and "window" in err.fix

    loaded = load_model(ModelSource(spec=str(path)), trust=True)
    assert (loaded.kind, loaded.name, loaded.scripted) == ("pickle", "whole.pt", False)
    assert loaded.source.trusted_sha256 == file_sha256(path)
    assert not loaded.module.training
    assert same_outputs(loaded.module, model.eval())


def test_trusted_sha256_round_trip(tmp_path: Path) -> None:
    path = save_pickled(torch.nn.Sequential(torch.nn.Linear(4, 2)), tmp_path / "m.pt", "zip")
    first = load_model(ModelSource(spec=str(path)), trust=True)
    sha = first.source.trusted_sha256
    assert sha == file_sha256(path) and len(sha) == 64

    again = load_model(ModelSource(spec=str(path), trusted_sha256=sha))
    assert again.kind == "pickle" and again.source.trusted_sha256 == sha

    save_pickled(torch.nn.Sequential(torch.nn.Linear(4, 3)), path, "zip")  # edited: trust is gone
    with pytest.raises(UntrustedFileError, match="changed"):
        load_model(ModelSource(spec=str(path), trusted_sha256=sha))


def test_force_weights_only_env_blocks_trusted_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_pickled(torch.nn.Sequential(torch.nn.Linear(4, 2)), tmp_path / "m.pt", "zip")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(LoadError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        load_model(ModelSource(spec=str(path)), trust=True)


def test_torchscript_needs_trust_then_runs(tmp_path: Path, model_py: Path) -> None:
    ref = reference_net(model_py)
    path = script_save(ref, tmp_path / "net.pt")  # a .pt name: detected by content
    with pytest.raises(UntrustedFileError) as info:
        load_model(ModelSource(spec=str(path)))
    assert "TorchScript" in info.value.problem and "--trust" in info.value.fix

    loaded = load_model(ModelSource(spec=str(path)), trust=True)
    assert (loaded.kind, loaded.scripted) == ("torchscript", True)
    assert isinstance(loaded.module, torch.jit.ScriptModule)
    assert loaded.source.trusted_sha256 == file_sha256(path)
    assert same_outputs(loaded.module, ref)
    assert load_model(ModelSource(spec=str(path), trusted_sha256=loaded.source.trusted_sha256)).scripted


def test_untrusted_loads_refused_when_weights_only_is_not_enforced(tmp_path: Path, model_py: Path) -> None:
    """The self-check notices a weights-only loader that lets a function call through, and fails closed."""
    weights = tmp_path / "w.pt"
    torch.save(reference_net(model_py).state_dict(), weights)
    # allow-listing the function the self-check's probe pickles makes the probe get through
    with torch.serialization.safe_globals([loading._probe_target]):
        with pytest.raises(UntrustedFileError, match="weights-only mode is not in force"):
            load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
        loaded = load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"), trust=True)
        assert loaded.kind == "state_dict"
    assert load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build")).kind == "state_dict"


# ----------------------------------------------------------------------------- factories


def test_sys_path_restored_after_factory_import(model_py: Path) -> None:
    before = list(sys.path)
    loaded = load_model(ModelSource(spec=f"{model_py}:build"))  # imports its sibling module
    assert sys.path == before and loaded.name == "model.py:build"
    with pytest.raises(LoadError):
        load_model(ModelSource(spec=f"{model_py}:build_raises"))
    assert sys.path == before
    assert not (model_py.parent / "__pycache__" / "model.cpython-311.pyc").exists()


def test_two_model_files_do_not_clash(tmp_path: Path) -> None:
    a = tmp_path / "a" / "model.py"
    b = tmp_path / "b" / "model.py"
    for path, out in ((a, 3), (b, 5)):
        path.parent.mkdir()
        path.write_text(f"import torch\ndef build():\n    return torch.nn.Linear(2, {out})\n")
    assert load_model(ModelSource(spec=f"{a}:build")).module.out_features == 3
    assert load_model(ModelSource(spec=f"{b}:build")).module.out_features == 5
    a.write_text("import torch\ndef build():\n    return torch.nn.Linear(2, 7)\n")  # edits are picked up
    assert load_model(ModelSource(spec=f"{a}:build")).module.out_features == 7


@pytest.mark.parametrize(
    ("func", "body", "expected"),
    [
        ("build_raises", None, "ValueError: boom from the factory"),
        ("build_int", None, "returned a int, not a torch.nn.Module"),
        ("build_class", None, "returned the class Net"),
        ("nope", None, "has no function 'nope'; it defines Net, Tokens, build"),
        ("build", "def build(:\n    pass\n", "not valid Python (line 1)"),
        ("build", "import torch\nraise RuntimeError('bad import')\n", "RuntimeError: bad import"),
        ("build", "import no_such_module_qstudio\n", "No module named 'no_such_module_qstudio'"),
        ("build", "import sys\nsys.exit(3)\n", "SystemExit: 3"),
        ("build", "\x00\x01garbage", "not valid Python"),
    ],
)
def test_factory_errors(tmp_path: Path, func: str, body: str | None, expected: str) -> None:
    path = write_model_py(tmp_path, body or MODEL_PY)
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(spec=f"{path}:{func}"))
    text = str(info.value)
    assert expected in text and "model.py" in text
    assert "Traceback" not in text


def test_factory_spec_problems(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_model(ModelSource(spec=f"{tmp_path}/missing.py:build"))
    with pytest.raises(LoadError, match=r"model\.py:build"):
        load_model(ModelSource(spec="model.py"))


# ----------------------------------------------------------------------------- precision


def test_half_precision_is_converted(tmp_path: Path, model_py: Path) -> None:
    ref = reference_net(model_py)
    weights = tmp_path / "half.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in ref.state_dict().items()}, weights)
    loaded = load_model(ModelSource(spec=str(weights), factory=f"{model_py}:build"))
    assert any("float16" in w and "float32" in w for w in loaded.warnings)
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    with torch.no_grad():
        assert torch.allclose(loaded.module(X), ref(X), atol=5e-2)

    for func, dtype in (("build_half", "float16"), ("build_double", "float64")):
        loaded = load_model(ModelSource(spec=f"{model_py}:{func}"))
        assert f"converted from {dtype} to float32" in loaded.warnings
        assert all(t.dtype == torch.float32 for t in loaded.module.state_dict().values() if t.is_floating_point())

    half = save_pickled(torch.nn.Sequential(torch.nn.Linear(4, 2)).half(), tmp_path / "halfmod.pt", "zip")
    loaded = load_model(ModelSource(spec=str(half)), trust=True)
    assert loaded.warnings == ["converted from float16 to float32"]
    assert loaded.module[0].weight.dtype == torch.float32


# ----------------------------------------------------------------------------- bad files


def _truncated_zip(path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(64)}, buf)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _plain_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(os.urandom(4096)), "not a PyTorch, safetensors or TorchScript file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "does not exist"),
        (_truncated_zip, "damaged or truncated zip"),
        (_plain_zip, "not a PyTorch file"),
        (lambda p: p.write_bytes(b"\x80\x02" + b"\x00" * 100), "damaged or not a PyTorch file"),
    ],
    ids=["empty", "random", "directory", "missing", "truncated-zip", "plain-zip", "bad-pickle"],
)
def test_bad_files(tmp_path: Path, model_py: Path, make, expected: str) -> None:
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(spec=str(path), factory=f"{model_py}:build"))
    assert expected in info.value.problem
    assert info.value.fix


def test_random_bytes_is_not_mistaken_for_first_bytes_of_random_with_zero_start(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x10" + b"\x00" * 7 + b"not json at all")
    with pytest.raises(LoadError, match="not a valid safetensors file"):
        load_model(ModelSource(spec=str(path)))


@pytest.mark.parametrize(
    "spec", ["bad\x00name.pt", "x" * 5000 + ".pt", "torchvision:", "bad\x00name.py:build", ":build", "model.py:"]
)
def test_odd_specs_raise_load_errors(spec: str) -> None:
    with pytest.raises(LoadError):
        load_model(ModelSource(spec=spec))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.ones(1)}, path)
    path.chmod(0)
    try:
        with pytest.raises(LoadError, match="permission denied"):
            load_model(ModelSource(spec=str(path)))
    finally:
        path.chmod(0o600)


# ----------------------------------------------------------------------------- fuzzing


def _valid_files() -> dict[str, bytes]:
    torch.manual_seed(0)
    state = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict()
    out = {}
    for name, kwargs in (("zip.pt", {}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
        buf = io.BytesIO()
        torch.save(state, buf, **kwargs)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    out["module.pt"] = buf.getvalue()
    from safetensors.torch import save

    out["w.safetensors"] = save({k: v.contiguous() for k, v in state.items()})
    return out


VALID = _valid_files()
FUZZ_FACTORY = (
    "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))\n"
)
PREFIXES = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 16))]
    return name, bytes(data)


random_files = st.tuples(
    st.sampled_from(["x.pt", "x.safetensors"]),
    st.builds(lambda p, b: p + b, st.sampled_from(PREFIXES), st.binary(max_size=512)),
)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.one_of(random_files, mutated()))
def test_fuzzed_files_raise_only_load_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    name, data = case
    factory = tmp_path / "fuzz_model.py"
    if not factory.exists():
        factory.write_text(FUZZ_FACTORY)
    path = tmp_path / name
    path.write_bytes(data)
    try:
        loaded = load_model(ModelSource(spec=str(path), factory=f"{factory}:build"))
    except LoadError as exc:
        assert exc.problem
        assert type(exc) is UntrustedFileError or "Traceback" not in str(exc)
    else:  # a mutation that left the weights loadable
        assert loaded.kind in ("state_dict", "safetensors") and not loaded.module.training
