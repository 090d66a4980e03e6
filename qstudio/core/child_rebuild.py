"""What a benchmark child process rebuilds, and how: the description the parent writes, the rebuild the child does.

Used by :mod:`qstudio.core.child_benchmark` (read that first).  The parent
decides up front whether every contender can be rebuilt (:func:`plan_for`),
then writes into a private folder (:func:`write_description`): the exact
benchmark inputs, the eager model's weights, TorchScript bytes, runtime
files, each contender's output on the smallest batch, and ``plan.json``.  The
child (:func:`run_child`) rebuilds each contender, checks it reproduces the
parent's output, times them all with
:func:`~qstudio.core.stability.benchmark_checked` and sends the figures back.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from collections.abc import Callable, Generator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qstudio.core import stability, torchscript
from qstudio.core.benchmark import LatencyStat, call_model
from qstudio.core.compare import output_tensors
from qstudio.core.deploy import EAGER_FP32, SCRIPT_FP32
from qstudio.core.errors import QStudioError
from qstudio.core.flows.base import forward_error
from qstudio.core.memory import available_bytes, format_bytes
from qstudio.core.progress import Progress
from qstudio.core.recipe import BenchmarkSettings, ModelSource
from qstudio.core.runtimes import RuntimeUnavailable, get_runtime
from qstudio.core.runtimes.base import first_line

#: a rebuilt contender must reproduce the parent's output within this, relative to outputs above 1
#: (the FP32 baseline is traced and optimized again in the child; float reassociation stays far below it)
REBUILD_ATOL = 1e-4

EAGER, BASELINE, SCRIPT, RUNTIME = "eager", "fp32 TorchScript baseline", "TorchScript", "runtime"


class Unavailable(Exception):
    """This contender cannot be rebuilt in a child process; the message says why, in words."""


@dataclass
class Entry:
    """One contender as the child rebuilds it."""

    label: str
    kind: str  # EAGER, BASELINE, SCRIPT or RUNTIME
    files: list[str] = field(default_factory=list)
    runtime: str = ""
    precision: str = ""


@dataclass
class Plan:
    entries: list[Entry]
    source: ModelSource | None
    grants: list[str]


def eager_label(contenders: Mapping[str, Any]) -> str | None:
    """The FP32 eager contender's label: the pipeline's, else the first plain ``nn.Module``."""
    plain = [k for k, v in contenders.items() if _plain_module(v)]
    return EAGER_FP32 if EAGER_FP32 in plain else (plain[0] if plain else None)


def _plain_module(value: Any) -> bool:
    return isinstance(value, nn.Module) and not isinstance(value, torch.jit.ScriptModule)


def plan_for(contenders: Mapping[str, Any], source: ModelSource | None, grants: AbstractSet[str] | None) -> Plan | str:
    """How the child rebuilds each contender, or why one cannot be (then the set is timed in this process)."""
    entries: list[Entry] = []
    eager = eager_label(contenders)
    for label, value in contenders.items():
        if _plain_module(value):
            entries.append(Entry(label, EAGER))
        elif label == SCRIPT_FP32 and isinstance(value, torch.jit.ScriptModule) and eager is not None:
            entries.append(Entry(label, BASELINE))  # optimized: its MKLDNN weights cannot be saved
        elif isinstance(value, torch.jit.ScriptModule):
            entries.append(Entry(label, SCRIPT))
        elif all(hasattr(value, a) for a in ("runtime", "precision", "save")):
            entries.append(Entry(label, RUNTIME, runtime=value.runtime, precision=value.precision))
        else:
            return f"{label} is a {type(value).__name__}, which a benchmark process cannot rebuild"
    if eager is None:
        return Plan(entries, None, [])
    if source is None:
        return "the model's source was not given"
    problem = reload_problem(source)
    if problem:
        return problem
    if grants is None:
        granted, problem = child_grants(source)
        if problem:
            return problem
    else:
        granted = frozenset(grants)
    return Plan(entries, source, sorted(granted))


def reload_problem(source: ModelSource) -> str:
    """Why the model cannot be loaded again from ``source`` ('' when it can)."""
    from qstudio.core.loading.factories import parse_factory

    spec = source.spec.strip()
    if spec.lower() == "demo" or spec.lower().startswith("torchvision:"):
        return ""
    parsed = parse_factory(spec)
    path = parsed[0] if parsed else Path(spec).expanduser()
    if not path.is_file():
        return f"the model was built in memory, and its source {spec!r} is no file to load it from again"
    return ""


def child_grants(source: ModelSource) -> tuple[frozenset[str], str]:
    """Grants for loading ``source`` again: exactly the code that ran when it was loaded, else a reason.

    A file the source pins by SHA-256 (``trusted_sha256``, set by the loader to
    the bytes it ran) is granted as it is; a factory file only if it has not
    changed since this process started, so its content is the one the user
    agreed to when the model was loaded.  Anything else would run code nobody
    agreed to: the benchmark then stays in this process.
    """
    from qstudio.core import trust

    started = process_start_time()
    shas: set[str] = set()
    for risk in trust.what_runs(source):
        if risk.sha256 is None:
            return frozenset(), f"{risk.path.name} can no longer be read"
        if risk.replayed or (started is not None and _unchanged_since(risk.path, started)):
            shas.add(risk.sha256)
            continue
        return frozenset(), (
            f"{risk.path.name} changed after qstudio started, and loading the model again would run the new version"
        )
    return frozenset(shas), ""


def process_start_time() -> float | None:
    """When this process started (seconds since the epoch, a second early to be safe); None where unknown."""
    try:
        import psutil

        return psutil.Process().create_time() - 1.0
    except Exception:  # psutil absent or refused: Linux's /proc says it too
        pass
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        stat = Path("/proc/stat").read_text().splitlines()
        boot = next(int(line.split()[1]) for line in stat if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") - 1.0
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None


def _unchanged_since(path: Path, when: float) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return max(st.st_mtime, st.st_ctime) < when  # ctime: an edit cannot set it back


# -- the parent writes ---------------------------------------------------------------------------
def write_description(
    folder: Path,
    plan: Plan,
    contenders: Mapping[str, Any],
    make_input: Callable[[int], Any],
    settings: BenchmarkSettings,
    example: Any,
    backend: str | None,
    rounds: int,
    stage: str,
) -> Generator[Progress, None, str]:
    """Write what the child needs into ``folder``; returns '' or why it cannot (then the set is timed here).

    A model that fails on the benchmark input raises here as it would in the
    in-process benchmark; a file that cannot be written, or too little free
    memory for the child's copy of the models, is a reason instead.
    """
    inputs = {b: make_input(b) for b in settings.batch_sizes}
    example = example if example is not None else make_input(1)
    smallest = inputs[min(settings.batch_sizes)]
    references: dict[str, list[torch.Tensor]] = {}
    for i, entry in enumerate(plan.entries):
        yield Progress(stage, 0, 1, f"handing {entry.label} to the benchmark process")
        value = contenders[entry.label]
        try:
            entry.files = _write(folder, i, entry, value)
        except _WRITE_ERRORS as exc:
            return f"{entry.label} could not be written for it ({first_line(exc)})"
        with torch.inference_mode():  # a model fault raises here, as in the in-process benchmark
            references[entry.label] = output_tensors(call_model(value, smallest))
    try:
        _save({"inputs": inputs, "example": example}, folder / "inputs.pt")
        _save(references, folder / "references.pt")
    except _WRITE_ERRORS as exc:
        return f"the benchmark inputs could not be written for it ({first_line(exc)})"
    written_bytes = sum(f.stat().st_size for f in folder.iterdir())
    free = available_bytes()
    if free is not None and free < 3 * written_bytes:  # the models loaded, the baseline frozen, the inputs
        return f"too little free memory for a second copy of the models ({format_bytes(free)} free)"
    description = {
        "entries": [asdict(e) for e in plan.entries],
        "source": asdict(plan.source) if plan.source is not None else None,
        "grants": plan.grants,
        "settings": asdict(settings),
        "threads": torch.get_num_threads(),
        "engine": backend or torch.backends.quantized.engine,
        "rounds": rounds,
        "stage": stage,
    }
    (folder / "plan.json").write_text(json.dumps(description))
    return ""


#: what saving a contender raises when it cannot be saved (not a model fault): disk, serializer, runtime refusal
_WRITE_ERRORS = (OSError, RuntimeError, pickle.PicklingError, RuntimeUnavailable, QStudioError)


def _save(obj: Any, path: Path) -> None:
    """``torch.save`` through memory: torch's zip writer aborts the process on a full disk, Python's I/O raises."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getvalue())


def _write(folder: Path, i: int, entry: Entry, value: Any) -> list[str]:
    """Save one contender as the child loads it; the file names, relative to ``folder``."""
    if entry.kind == EAGER:
        _save(value.state_dict(), folder / f"{i}-weights.pt")
        return [f"{i}-weights.pt"]
    if entry.kind == SCRIPT:
        buffer = io.BytesIO()
        torch.jit.save(value, buffer)  # the bytes an export writes: what a deployment loads
        (folder / f"{i}.pt").write_bytes(buffer.getvalue())
        return [f"{i}.pt"]
    if entry.kind == RUNTIME:
        written = value.save(folder / f"{i}{get_runtime(entry.runtime).suffix}")
        return [Path(p).name for p in written]
    return []  # the baseline: built from eager in the child


# -- the child rebuilds and measures ---------------------------------------------------------------
def run_child(folder: Path, send: Callable[..., None]) -> int:
    """The child's work after the parent said go: rebuild, check, time, send the figures."""
    plan = json.loads((folder / "plan.json").read_text())
    torch.set_num_threads(int(plan["threads"]))
    torch.backends.quantized.engine = plan["engine"]  # packed INT8 weights are re-packed for it on load
    start = time.perf_counter()
    entries = [Entry(**e) for e in plan["entries"]]
    rebuilt: dict[str, Any] = {}
    eager: nn.Module | None = None
    try:
        data = torch.load(folder / "inputs.pt", weights_only=True)  # tensors only: nothing here runs code
        references = torch.load(folder / "references.pt", weights_only=True)
        inputs: dict[int, Any] = data["inputs"]
        for entry in sorted(entries, key=lambda e: e.kind != EAGER):  # the baseline is traced from eager
            send(t="doing", what=f"rebuilding {entry.label} in the benchmark process")
            rebuilt[entry.label] = _rebuild(folder, entry, plan, eager, data["example"])
            if entry.kind == EAGER and eager is None:
                eager = rebuilt[entry.label]
        for entry in entries:
            send(t="doing", what=f"checking {entry.label} in the benchmark process")
            _check(entry.label, rebuilt[entry.label], inputs[min(inputs)], references[entry.label])
    except Unavailable as exc:
        send(t="unavailable", reason=str(exc))
        return 0
    except Exception as exc:  # a loader's, a runtime's or the model's own failure: measure in the parent instead
        send(t="unavailable", reason=f"rebuilding the models there failed with {first_line(exc)}")
        return 0
    send(t="ready", seconds=time.perf_counter() - start)
    contenders = {e.label: rebuilt[e.label] for e in entries}  # the parent's order: the same turns
    settings = BenchmarkSettings(**plan["settings"])
    steps = stability.benchmark_checked(
        contenders, lambda b: inputs[b], settings, rounds=int(plan["rounds"]), stage=plan["stage"]
    )
    try:
        while True:
            step = next(steps)
            send(t="progress", done=step.done, total=step.total, message=step.message)
    except StopIteration as stop:
        stats, check = stop.value
    except QStudioError as exc:
        send(t="error", cls=type(exc).__name__, problem=exc.problem, fix=exc.fix, details=exc.details)
        return 0
    except Exception as exc:  # a model fault, said as the in-process benchmark would say it
        err = forward_error(exc, eager or nn.Module(), plan["stage"], 0, 0, max(inputs), "benchmark.batch_sizes")
        send(t="error", cls=type(err).__name__, problem=err.problem, fix=err.fix, details=err.details)
        return 0
    send(t="result", **to_json(stats, check))
    return 0


def _rebuild(folder: Path, entry: Entry, plan: dict[str, Any], eager: nn.Module | None, example: Any) -> Any:
    if entry.kind == EAGER:
        from qstudio.core.loading import load_model

        try:
            loaded = load_model(ModelSource(**plan["source"]), grants=frozenset(plan["grants"]))
        except QStudioError as exc:
            raise Unavailable(f"the model could not be loaded again there ({exc.problem})") from exc
        module = loaded.module
        weights = torch.load(folder / entry.files[0], weights_only=True, map_location="cpu")
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise Unavailable(
                f"loading {plan['source']['spec']} again gives a model of another shape ({first_line(exc)[:120]})"
            ) from exc
        return module.eval()
    if entry.kind == BASELINE:
        assert eager is not None
        return torchscript.freeze_fp32(eager, example)
    if entry.kind == SCRIPT:
        module = torch.jit.load(str(folder / entry.files[0]), map_location="cpu")
        return module.eval()
    return get_runtime(entry.runtime).load([folder / f for f in entry.files], entry.precision)


def _check(label: str, model: Any, x: Any, reference: list[torch.Tensor]) -> None:
    """The rebuilt model must compute what the parent's did: else it would time another model."""
    with torch.inference_mode():
        outputs = output_tensors(call_model(model, x))
    if len(outputs) != len(reference):
        raise Unavailable(f"{label} rebuilt there gives {len(outputs)} outputs, not {len(reference)}")
    for got, want in zip(outputs, reference, strict=True):
        diff = torchscript.output_max_abs_diff(got, want)
        scale = float(want.abs().max()) if want.numel() else 0.0
        if not diff <= REBUILD_ATOL * max(1.0, scale):
            raise Unavailable(f"{label} rebuilt there differs from this process's by {diff:.3g}")


def to_json(stats: dict[str, list[LatencyStat]], timing: stability.TimingCheck) -> dict[str, Any]:
    return {"latencies": {k: [asdict(s) for s in v] for k, v in stats.items()}, "timing": asdict(timing)}
