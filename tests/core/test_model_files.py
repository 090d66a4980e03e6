"""Model files that run code or are not what they claim: refused, named and never half-loaded.

Pickles (zip, legacy, raw) and TorchScript run code when loaded: refused without trust,
with the payload named and a marker file untouched.  Damaged, truncated, mutated,
unreadable and random files are each a LoadError naming the file and the fix; fuzzed
files give nothing else.  Trust itself (what runs, the grants): tests/core/test_trust.py.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from engine_checks import assert_clean, write_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from untrusted import Evil
from user_model import reference_net, same_outputs, save_pickled, script_save

from qstudio.core import loading
from qstudio.core.errors import LoadError, UntrustedFileError
from qstudio.core.loading import file_sha256, load_model
from qstudio.core.recipe import ModelSource

# ----------------------------------------------------------------------------- pickles and trust


def test_malicious_payload_is_real(tmp_path: Path) -> None:
    """Guard for the tests below: unsafe unpickling of these files really does touch the marker."""
    marker = tmp_path / "pwned"
    path = save_pickled({"w": torch.ones(1), "x": Evil(marker)}, tmp_path / "evil.pt", "zip")
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
    path = save_pickled({"w": torch.ones(1), "x": Evil(marker)}, tmp_path / "evil.pt", fmt)
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


def _state_zip() -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(3, 4).state_dict(), buf)
    return buf.getvalue()


def _entry_data_offset(data: bytes, suffix: str) -> tuple[int, int]:
    """Where the stored bytes of the zip entry ending in ``suffix`` start, and how many there are."""
    info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename.endswith(suffix))
    h = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[h + 26 : h + 30])
    return h + 30 + name_len + extra_len, info.compress_size


def _rezip(data: bytes, suffix: str, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info.filename, change(body) if info.filename.endswith(suffix) else body)
    return out.getvalue()


def _flip_tensor_byte(data: bytes) -> bytes:
    off, _ = _entry_data_offset(data, "/data/0")
    out = bytearray(data)
    out[off + 3] ^= 0x40  # one bit of one weight: the zip's CRC-32 no longer matches
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_flip_tensor_byte, "does not match its checksum"),
        (lambda d: _rezip(d, "/data.pkl", lambda b: b"\x00garbage" * 3), "damaged or not a PyTorch file"),
        (lambda d: _rezip(d, "/data/0", lambda b: b[: len(b) // 2]), "damaged or not a PyTorch file"),
        (lambda d: _rezip(d, "/version", lambda b: b"\x00garbage"), "damaged or not a PyTorch file"),
        (lambda d: d[: len(d) - 30], "damaged or truncated zip"),
    ],
    ids=["flipped-weight-byte", "garbage-pickle-entry", "short-tensor-entry", "garbage-version-entry", "truncated"],
)
def test_zip_with_a_mutated_entry_is_refused(tmp_path: Path, mutate, expected: str) -> None:
    factory = write_factory(tmp_path, "def build():\n    return nn.Linear(3, 4)\n")
    good = _state_zip()
    path = tmp_path / "weights.pt"
    path.write_bytes(good)
    assert load_model(ModelSource(str(path), factory=f"{factory}:build")).kind == "state_dict"  # the original loads
    path.write_bytes(mutate(good))
    with pytest.raises(LoadError) as info:
        load_model(ModelSource(str(path), factory=f"{factory}:build"))
    assert_clean(info.value, expected, "weights.pt", fix_words=("again",))


def test_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permissions: real chmod for a normal user; as root (who ignores chmod) the kernel's refusal is simulated."""
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.ones(1)}, path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root: simulate exactly the error open() gives a normal user
            real_open = open

            def denied(file, *args, **kwargs):
                if str(file) == str(path):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr("builtins.open", denied)
        with pytest.raises(LoadError) as info:
            load_model(ModelSource(str(path)))
    finally:
        monkeypatch.undo()
        path.chmod(0o600)
    assert_clean(info.value, "secret.pt", "permission denied", fix_words=("permission",))


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
