"""qstudio's zoo: every (model, mode) entry through the real CLI, classified, written to docs/zoo.md.

    .venv/bin/python benchmarks/zoo.py --out docs/zoo.md [--only NAME ...] [--slow] [--json zoo.json]

Each entry runs in a subprocess exactly as a user would type it::

    qstudio quantize benchmarks/zoo_models.py:NAME --mode M --calib-data random --iters N \\
        --export out.pt --json out.json

(no ``--verbose``), with a per-run timeout, and is classified by :func:`classify`:

* **ok**: exit 0, the JSON written, the export written and reloaded;
* **clear failure**: exit 2 with exactly one ``qstudio: error:`` line and no traceback;
* **traceback**: a "Traceback" anywhere in the output, or any other exit
  (1, 3 = internal error, 134, a timeout, exit 0 without its files);
* **unwarned slowdown** (an ok run): INT8 slower than FP32 eager or frozen FP32
  TorchScript in the JSON, and no warning saying "slower";
* **unwarned collapse** (an ok run): cosine < 0.9, or top-1 agreement < 0.5 where
  chance is at most 25%, and no warning about it.

The harness reports what the CLI reports: latencies, speedups, cosine and
coverage are read from the run's JSON, never re-measured.  Without ``--slow``
only the fast subset runs (the entries tests/zoo runs unmarked).  ``--root``
runs another checkout's qstudio (``python -m qstudio.cli`` with that folder
first on PYTHONPATH and as the working directory): how docs/zoo-before.md was
made.  ``--before RESULTS.json`` adds that run's results as a column.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS_FILE = HERE / "zoo_models.py"

# ---------------------------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One (model, mode) run.  ``model`` is a function in zoo_models.py, or a ``torchvision:NAME`` spec."""

    family: str
    model: str
    mode: str
    fast: bool = False  # in the fast subset: run by default and by tests/zoo unmarked
    expect: tuple[str, ...] = ("ok",)  # results the entry accepts: "ok", and "clear" where failing clearly is right
    needs: str | None = None  # an optional package the model needs ("timm", "transformers")
    classes: int = 1000  # size of the output's last dimension: agreement below 0.5 is a collapse only past chance
    args: tuple[str, ...] = ()  # further CLI options
    pending: str | None = None  # known to fail until another engineer's fix lands: tests/zoo marks it xfail
    note: str = ""

    @property
    def name(self) -> str:
        label = self.model.split(":", 1)[1] if self.model.startswith("torchvision:") else self.model
        qat_graph = "-eager" if self.mode == "qat" and "eager" in self.args else ""
        return f"{label}-{self.mode}{qat_graph}"

    @property
    def spec(self) -> str:
        return self.model if ":" in self.model else f"{MODELS_FILE}:{self.model}"


TV, TVQ, TIMM, HF, TQ = (
    "torchvision",
    "torchvision.models.quantization",
    "timm",
    "Hugging Face transformers (small configs)",
    "torch's quantization test models (torch.testing._internal.common_quantization)",
)
EAGER_QAT = ("--qat-graph", "eager")

ENTRIES: list[Entry] = [
    # torchvision: FX graph mode is the way for models written with plain `+` and functional calls
    Entry(TV, "resnet18", "fx", fast=True),
    Entry(TV, "resnet18", "eager", expect=("ok", "clear"), note="plain torchvision: `out += identity`"),
    Entry(TV, "resnet18", "qat"),
    Entry(TV, "resnet50", "fx"),
    Entry(TV, "mobilenet_v2", "fx", fast=True),
    Entry(TV, "mobilenet_v3_small", "fx"),
    Entry(TV, "mobilenet_v3_large", "fx"),
    Entry(TV, "efficientnet_b0", "fx"),
    Entry(TV, "regnet_y_400mf", "fx"),
    Entry(TV, "shufflenet_v2_x1_0", "fx"),
    Entry(TV, "googlenet", "fx"),
    Entry(TV, "inception_v3", "fx"),
    Entry(TV, "densenet121", "fx"),
    Entry(TV, "convnext_tiny", "fx"),
    Entry(TV, "vit_b_32", "fx"),
    Entry(TV, "vit_b_32", "dynamic"),
    Entry(TV, "swin_t", "fx"),
    # torchvision's quantizable models: stubs, FloatFunctional and fuse_model(): eager PTQ and eager QAT
    Entry(TVQ, "q_resnet18", "eager", fast=True),
    Entry(TVQ, "q_resnet18", "qat", args=EAGER_QAT),
    Entry(TVQ, "q_resnet50", "eager"),
    Entry(TVQ, "q_mobilenet_v2", "eager"),
    Entry(TVQ, "q_mobilenet_v2", "qat", args=EAGER_QAT),
    Entry(TVQ, "q_mobilenet_v3_large", "eager"),
    Entry(TVQ, "q_shufflenet_v2_x1_0", "eager"),
    Entry(TVQ, "q_googlenet", "eager"),
    Entry(TVQ, "q_inception_v3", "eager"),
    Entry(TVQ, "tutorial_qresnet", "eager", fast=True, classes=2, note="the seed tutorial's Qresnet wrapper"),
    Entry(TVQ, "tutorial_qresnet", "qat", classes=2, args=EAGER_QAT),
    # timm
    Entry(TIMM, "timm_efficientnet_lite0", "fx", needs="timm"),
    Entry(TIMM, "timm_mobilenetv3_small_100", "fx", needs="timm"),
    Entry(TIMM, "timm_convnext_atto", "fx", needs="timm"),
    Entry(TIMM, "timm_vit_tiny_patch16_224", "dynamic", needs="timm"),
    # Hugging Face: forward(input_ids) -> tensor; qstudio infers the int64 input from the embedding
    Entry(HF, "bert_encoder", "dynamic", fast=True, needs="transformers", classes=64),
    Entry(HF, "bert_encoder", "fx", needs="transformers", classes=64),
    Entry(HF, "distilbert_encoder", "dynamic", needs="transformers", classes=64),
    Entry(HF, "gpt2_decoder", "dynamic", needs="transformers", classes=500),
    Entry(HF, "llama_decoder", "dynamic", needs="transformers", classes=500),
    # torch's own test models
    Entry(TQ, "tq_annotated_conv_bn_relu", "eager", fast=True, classes=14),
    Entry(TQ, "tq_quant_stub_model", "eager", classes=5),
    Entry(TQ, "tq_sequential_fusion", "eager", classes=10),
    Entry(TQ, "tq_multiple_ops", "eager", classes=6),
    Entry(TQ, "tq_rnn_lstm", "dynamic", classes=2),
    Entry(TQ, "tq_conv_transpose", "fx", fast=True, classes=18),
    Entry(TQ, "tq_annotated_conv_transpose", "eager", classes=18),
    Entry(TQ, "tq_conv_transpose_bn", "fx", classes=8),
    Entry(TQ, "tq_manual_conv_linear_qat", "qat", classes=10, args=EAGER_QAT),
]
FAMILIES = [TV, TVQ, TIMM, HF, TQ]


def select(only: list[str] | None = None, slow: bool = False) -> list[Entry]:
    """The fast subset, everything with ``slow``; ``only`` picks entries by name or model name (either subset)."""
    if only:
        wanted = set(only)
        picked = [e for e in ENTRIES if e.name in wanted or e.model in wanted]
        unknown = wanted - {e.name for e in picked} - {e.model for e in picked}
        if unknown:
            raise SystemExit(f"zoo.py: no entry named {', '.join(sorted(unknown))}; see --list")
        return picked
    return [e for e in ENTRIES if slow or e.fast]


def missing_package(entry: Entry) -> str | None:
    """Why ``entry`` cannot run here (its optional package is not installed), else None."""
    if entry.needs and importlib.util.find_spec(entry.needs) is None:
        return f"{entry.needs} is not installed (pip install -e '.[zoo]')"
    return None


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    entry: str
    family: str
    model: str
    mode: str
    result: str  # ok | clear failure | traceback | internal error | crash | timeout | no output | skipped
    bucket: str  # ok | clear | traceback | skipped: the counts' columns
    exit_code: int | None = None
    seconds: float = 0.0
    error: str = ""  # the one line that says why it failed
    unwarned_slowdown: bool = False
    unwarned_collapse: bool = False
    warned_slowdown: bool = False
    warned_collapse: bool = False
    unreliable_timing: bool = False
    speedup: float | None = None
    speedup_vs_torchscript: float | None = None
    speedup_vs_fastest: float | None = None
    cosine: float | None = None
    agreement: float | None = None
    quantized_layers: int | None = None
    float_layers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def flagged(self) -> str:
        flags = [
            f
            for f, on in (("unwarned slowdown", self.unwarned_slowdown), ("unwarned collapse", self.unwarned_collapse))
            if on
        ]
        return ", ".join(flags)


def command(entry: Entry, out_dir: Path, iters: int, python: str = sys.executable) -> list[str]:
    cmd = [python, "-m", "qstudio.cli", "quantize", entry.spec, "--mode", entry.mode, "--calib-data", "random"]
    cmd += ["--calib-batches", "2", "--batch-size", "8", "--iters", str(iters)]
    if entry.mode == "qat":
        x, y = train_data(entry, out_dir)
        cmd += ["--train-data", str(x), "--train-labels", str(y), "--epochs", "1"]
    cmd += [*entry.args, "--export", str(out_dir / "out.pt"), "--json", str(out_dir / "out.json")]
    return cmd


def train_data(entry: Entry, out_dir: Path, samples: int = 16) -> tuple[Path, Path]:
    """Random labeled inputs for a QAT entry, shaped as its factory says (QAT needs labels; nothing is downloaded)."""
    import torch

    shape = _factory_shape(entry) or [1, 3, 224, 224]
    gen = torch.Generator().manual_seed(0)
    x, y = out_dir / "train_x.pt", out_dir / "train_y.pt"
    torch.save(torch.randn(samples, *shape[1:], generator=gen), x)
    torch.save(torch.randint(0, entry.classes, (samples,), generator=gen), y)
    return x, y


def _factory_shape(entry: Entry) -> list[int] | None:
    if ":" in entry.model:
        return None
    spec = importlib.util.spec_from_file_location("_zoo_models", MODELS_FILE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(getattr(mod, entry.model), "input_shape", None)


def run_entry(
    entry: Entry, out_dir: Path, *, iters: int = 20, timeout: float = 900.0, root: Path | None = None
) -> Outcome:
    """Run ``entry`` through the CLI in a subprocess (``root``: that checkout's qstudio) and classify it."""
    skip = missing_package(entry)
    if skip:
        return Outcome(entry.name, entry.family, entry.model, entry.mode, "skipped", "skipped", error=skip)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("out.pt", "out.json"):
        (out_dir / name).unlink(missing_ok=True)
    cmd = command(entry, out_dir, iters)
    env = dict(os.environ)
    env.pop("QSTUDIO_VERBOSE", None)
    cwd = str(root) if root else str(REPO)
    if root:
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
        )
        code, stdout, stderr, timed_out = proc.returncode, proc.stdout, proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        code, timed_out = None, True
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - start
    (out_dir / "stdout.txt").write_text(stdout)
    (out_dir / "stderr.txt").write_text(stderr)
    (out_dir / "exit.txt").write_text("timeout\n" if timed_out else f"{code}\n")
    outcome = classify(entry, code, stdout, stderr, out_dir / "out.json", out_dir / "out.pt", timed_out=timed_out)
    outcome.seconds = seconds
    outcome.command = " ".join(c.replace(str(out_dir) + os.sep, "").replace(str(REPO) + os.sep, "") for c in cmd[1:])
    return outcome


# ---------------------------------------------------------------------------------------------- classifying

_ERROR_LINE = re.compile(r"^qstudio: error:", re.MULTILINE)
#: A warning that says the outputs collapsed: not the generic "agreement is measured on the calibration data".
_COLLAPSE_WORDS = re.compile(r"collapse|near zero|(cosine|agreement)[^.]*\b(below|low|far)\b")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _reloads(path: Path) -> str | None:
    """None if the exported TorchScript file loads back; else why not."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch announces TorchScript's deprecation on every load
            torch.jit.load(str(path))
    except Exception as exc:
        return f"{type(exc).__name__}: {_last_line(str(exc))}"
    return None


def classify(
    entry: Entry,
    exit_code: int | None,
    stdout: str,
    stderr: str,
    json_path: Path,
    export_path: Path,
    *,
    timed_out: bool = False,
) -> Outcome:
    """What one CLI run of ``entry`` amounts to, from its exit, its output and the files it wrote."""
    out = _classify(entry, exit_code, stdout, stderr, json_path, export_path, timed_out)
    out.error = out.error.replace(str(json_path.parent) + os.sep, "")  # "out.pt", not the scratch folder it was in
    return out


def _classify(
    entry: Entry, exit_code: int | None, stdout: str, stderr: str, json_path: Path, export_path: Path, timed_out: bool
) -> Outcome:
    out = Outcome(entry.name, entry.family, entry.model, entry.mode, "", "traceback", exit_code)
    text = stdout + "\n" + stderr
    errors = _ERROR_LINE.findall(stderr)
    if timed_out:
        out.result, out.error = "timeout", "no exit within the timeout"
        return out
    if "Traceback" in text:
        out.result = "traceback"
        out.error = _last_line(text[text.rindex("Traceback") :]) or _last_line(stderr)
        return out
    if exit_code == 2:
        if len(errors) == 1:
            out.result, out.bucket = "clear failure", "clear"
            out.error = next(ln for ln in stderr.splitlines() if ln.startswith("qstudio: error:"))
            out.error = out.error.removeprefix("qstudio: error:").strip()
        else:
            out.result = "unclear failure (exit 2)"
            out.error = f"{len(errors)} 'qstudio: error:' lines: {_last_line(stderr)}"
        return out
    if exit_code != 0:
        out.result = "internal error (exit 3)" if exit_code == 3 else f"crash (exit {exit_code})"
        out.error = _last_line(stderr) or _last_line(stdout)
        return out
    # exit 0: the files it promised
    try:
        doc: dict[str, Any] = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        out.result, out.error = "no output", f"exit 0 but no readable JSON: {exc}"
        return out
    read_figures(out, doc, entry)
    if not export_path.is_file():
        out.result = "no output"
        out.error = f"exit 0 but no export: {doc.get('export_error') or _last_line(stderr) or 'nothing said'}"
        return out
    problem = _reloads(export_path)
    if problem:
        out.result, out.error = "no output", f"the export does not reload: {problem}"
        return out
    out.result, out.bucket = "ok", "ok"
    return out


def read_figures(out: Outcome, doc: dict[str, Any], entry: Entry) -> None:
    """Copy the figures from the CLI's JSON and judge slowdown and collapse against its warnings."""
    warns = [str(w) for w in doc.get("warnings") or []]
    verdicts = [v.get("code") for v in doc.get("verdicts") or [] if isinstance(v, dict)]
    out.warnings = warns
    out.speedup = doc.get("speedup")
    out.speedup_vs_torchscript = doc.get("speedup_vs_fp32_torchscript")
    known = [s for s in (out.speedup, out.speedup_vs_torchscript) if isinstance(s, (int, float))]
    out.speedup_vs_fastest = min(known) if known else None
    out.cosine = doc.get("cosine")
    out.agreement = doc.get("agreement")
    cov = doc.get("coverage") or {}
    out.quantized_layers = len(cov.get("quantized_layers") or [])
    out.float_layers = list(cov.get("float_layers") or [])
    lowered = [w.lower() for w in warns]
    out.warned_slowdown = any("slower" in w for w in lowered)
    out.warned_collapse = "collapse" in verdicts or any(_COLLAPSE_WORDS.search(w) for w in lowered)
    out.unreliable_timing = "unreliable-timing" in verdicts or any("unreliable timing" in w for w in lowered)
    slow = any(isinstance(s, (int, float)) and s < 1.0 for s in known)
    chance = 1.0 / entry.classes if entry.classes else 1.0
    collapsed = (isinstance(out.cosine, (int, float)) and out.cosine < 0.9) or (
        isinstance(out.agreement, (int, float)) and out.agreement < 0.5 and chance <= 0.25
    )
    out.unwarned_slowdown = slow and not out.warned_slowdown
    out.unwarned_collapse = collapsed and not out.warned_collapse


# ---------------------------------------------------------------------------------------------- the report


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    ran = [o for o in outcomes if o.bucket != "skipped"]
    return {
        "entries": len(ran),
        "quantized and exported": sum(o.bucket == "ok" for o in ran),
        "failed with a clear line": sum(o.bucket == "clear" for o in ran),
        "traceback or unclear failure": sum(o.bucket == "traceback" for o in ran),
        "unwarned slowdown": sum(o.unwarned_slowdown for o in ran),
        "unwarned collapse": sum(o.unwarned_collapse for o in ran),
        "skipped": len(outcomes) - len(ran),
    }


def counts_line(c: dict[str, int]) -> str:
    return (
        f"{c['quantized and exported']} quantized and exported / {c['failed with a clear line']} failed with a clear "
        f"line / {c['traceback or unclear failure']} tracebacks or unclear failures / {c['unwarned slowdown']} "
        f"unwarned slowdowns / {c['unwarned collapse']} unwarned collapses (of {c['entries']} runs"
        + (f", {c['skipped']} skipped" if c["skipped"] else "")
        + ")"
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}"}


def _x(v: Any) -> str:
    return f"{v:.2f}x" if isinstance(v, (int, float)) else ""


def _quality(o: Outcome) -> str:
    if o.cosine is None and o.agreement is None:
        return ""
    cos = f"{o.cosine:.4f}" if isinstance(o.cosine, (int, float)) else "?"
    agr = f"{o.agreement:.0%}" if isinstance(o.agreement, (int, float)) else "?"
    return f"{cos} / {agr}"


def _float(o: Outcome) -> str:
    if o.bucket != "ok":
        return ""
    if not o.float_layers:
        return f"nothing ({o.quantized_layers} layer{'s' if o.quantized_layers != 1 else ''} INT8)"
    shown = ", ".join(f"`{n}`" for n in o.float_layers[:3])
    more = f" and {len(o.float_layers) - 3} more" if len(o.float_layers) > 3 else ""
    return f"{len(o.float_layers)} of {len(o.float_layers) + (o.quantized_layers or 0)}: {shown}{more}"


def _notes(o: Outcome) -> str:
    parts = []
    if o.flagged:
        parts.append(f"**{o.flagged.upper()}**")
    if o.warned_slowdown:
        parts.append("slowdown warned")
    if o.warned_collapse:
        parts.append("collapse warned")
    if o.unreliable_timing:
        parts.append("timing marked unreliable")
    if isinstance(o.cosine, (int, float)) and abs(o.cosine) > 1.0001:
        parts.append("cosine outside [-1, 1]: the CLI's figure is wrong")
    if o.error:
        parts.append(o.error)
    return "; ".join(parts).replace("|", "\\|").replace("\n", " ")


def _result(o: Outcome | None) -> str:
    if o is None:
        return "not run"
    return o.result + (f" ({o.flagged})" if o.flagged else "")


def markdown(outcomes: list[Outcome], meta: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    prior = {o["entry"]: Outcome(**o) for o in (before or {}).get("results", [])}
    lines = [
        "# qstudio's zoo",
        "",
        "Every model below was built with random weights by a factory in `benchmarks/zoo_models.py` (nothing is "
        "downloaded; BatchNorm statistics settled with a few random batches) and run through the real CLI in a "
        "subprocess, as a user runs it:",
        "",
        "```",
        "qstudio quantize benchmarks/zoo_models.py:NAME --mode MODE --calib-data random --calib-batches 2 "
        f"--batch-size 8 --iters {meta['iters']} --export out.pt --json out.json",
        "```",
        "",
        "QAT entries add `--train-data`/`--train-labels` (random inputs and labels) and `--epochs 1`. Figures are "
        "the CLI's own (from its JSON), not re-measured. Speedups are at batch 1; the fastest FP32 is the faster of "
        "FP32 eager and frozen FP32 TorchScript. Quality is cosine to FP32 / top-1 agreement with FP32 on random "
        "inputs. *Unwarned* slowdowns and collapses are runs where INT8 was slower than FP32, or far from it "
        "(cosine < 0.9, or agreement < 50% past chance), and the run's warnings did not say so.",
        "",
        "## Counts",
        "",
        f"- **{meta.get('label', 'this run')}**: {counts_line(counts(outcomes))}",
    ]
    if before:
        lines.append(f"- **{before['meta'].get('label', 'before')}**: {counts_line(counts(list(prior.values())))}")
    lines += [
        "",
        "The unwarned slowdowns and collapses are among the runs counted as quantized and exported.",
        "",
        "## Machine and command",
        "",
        f"- date: {meta['date']}; torch {meta['torch']}, torchvision {meta['torchvision']}, Python {meta['python']}",
        f"- CPU: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, {meta['machine']['os']}",
        f"- load average (1, 5, 15 min): {meta['load_start']} at the start, {meta['load_end']} at the end"
        + (" — **not a quiet machine: read the speedups as rough**" if meta.get("noisy") else ""),
        f"- qstudio imported from `{meta['qstudio']}`; {meta['seconds'] / 60:.0f} min in all",
        f"- regenerate: `{meta['command']}`",
    ]
    if meta.get("note"):
        lines.append(f"- note: {meta['note']}")
    if before:
        bm = before["meta"]
        lines.append(
            f"- before: {bm.get('label', 'before')}, qstudio from `{bm['qstudio']}`, {bm['date']}, load "
            f"{bm['load_start']} → {bm['load_end']} (`{bm['command']}`)"
        )
    for family in FAMILIES + sorted({o.family for o in outcomes} - set(FAMILIES)):
        rows = [o for o in outcomes if o.family == family]
        if not rows:
            continue
        head = ["model", "mode", "result"] + (["before"] if before else [])
        head += ["vs FP32 eager", "vs fastest FP32", "cosine / agreement", "stayed float", "error / notes"]
        lines += ["", f"## {family}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for o in rows:
            cells = [f"`{o.model}`", o.mode, _result(o)]
            if before:
                cells.append(_result(prior.get(o.entry)))
            cells += [_x(o.speedup), _x(o.speedup_vs_fastest), _quality(o), _float(o), _notes(o)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _qstudio_file(root: Path | None) -> str:
    env = dict(os.environ)
    if root:
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-c", "import qstudio; print(qstudio.__file__)"],
        capture_output=True, text=True, env=env, cwd=str(root or REPO), check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def _exit_code(path: Path) -> int | None:
    text = path.read_text().strip()
    return None if text in ("timeout", "None") else int(text)


def regenerate_command(args: argparse.Namespace) -> str:
    """The command that makes this document again: the run's own options, without its scratch folders."""
    cmd = ["python", "benchmarks/zoo.py"]
    if args.root:
        cmd += ["--root", str(args.root)]
    for flag, value in (("--out", args.out), ("--json", args.json), ("--before", args.before)):
        if value:
            cmd += [flag, str(value)]
    if args.only:
        cmd += ["--only", *args.only]
    if args.slow:
        cmd.append("--slow")
    if args.iters != 20:
        cmd += ["--iters", str(args.iters)]
    if args.label != "after":
        cmd += ["--label", args.label]
    return shlex.join(cmd)


def reclassify(results: dict[str, Any], runs: Path) -> list[Outcome]:
    """Classify a finished run again from its kept files (``--keep``): the judging changed, the runs did not."""
    by_name = {e.name: e for e in ENTRIES}
    outcomes = []
    if not results.get("results"):  # an interrupted run: what its folders hold (exit.txt says how each ended)
        results = {**results, "results": [
            {"entry": e.name, "bucket": "", "result": (runs / e.name / "exit.txt").read_text().strip(),
             "exit_code": _exit_code(runs / e.name / "exit.txt"), "seconds": 0.0, "command": ""}
            for e in ENTRIES if (runs / e.name / "exit.txt").is_file()
        ]}  # fmt: skip
    for old in results["results"]:
        entry, d = by_name[old["entry"]], runs / old["entry"]
        if old["bucket"] == "skipped" or not d.is_dir():
            outcomes.append(Outcome(**old))
            continue
        text = {n: (d / f"{n}.txt").read_text() for n in ("stdout", "stderr")}
        o = classify(
            entry, old["exit_code"], text["stdout"], text["stderr"], d / "out.json", d / "out.pt",
            timed_out=old["result"] == "timeout",
        )  # fmt: skip
        o.seconds, o.command = old["seconds"], old["command"]
        outcomes.append(o)
    return outcomes


def write(outcomes: list[Outcome], meta: dict[str, Any], args: argparse.Namespace) -> None:
    before = json.loads(args.before.read_text()) if args.before else None
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "counts": counts(outcomes), "results": [dataclasses.asdict(o) for o in outcomes]}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(outcomes, meta, before))
        print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the markdown table here (docs/zoo.md)")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--only", nargs="+", metavar="NAME", help="entries by name (resnet18-fx) or model (resnet18)")
    p.add_argument("--slow", action="store_true", help="every entry, not only the fast subset")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per run (the CLI's --iters)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take")
    p.add_argument("--root", type=Path, help="run this checkout's qstudio (PYTHONPATH and working directory)")
    p.add_argument("--label", default="after", help="what this run is called in the counts")
    p.add_argument("--before", type=Path, help="a previous --json dump to show beside this run")
    p.add_argument("--keep", type=Path, help="keep each run's files (stdout, stderr, JSON, export) under here")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--reclassify", type=Path, metavar="RESULTS.json", help="judge a kept run again (with --keep)")
    args = p.parse_args(argv)
    if args.reclassify:
        if not args.keep:
            p.error("--reclassify needs --keep, the folder the run kept its files in")
        results = json.loads(args.reclassify.read_text()) if args.reclassify.is_file() else {"meta": {}}
        outcomes = reclassify(results, args.keep)
        print(counts_line(counts(outcomes)))
        meta = results["meta"] or {  # an interrupted run left no meta: what can still be said
            "label": args.label, "date": "?", "torch": "?", "torchvision": "?", "python": platform.python_version(),
            "machine": machine(), "load_start": "?", "load_end": _load(), "qstudio": "?", "iters": args.iters,
            "seconds": sum(o.seconds for o in outcomes), "command": regenerate_command(args),
        }  # fmt: skip
        write(outcomes, meta, args)
        return 0
    if args.list:
        for e in ENTRIES:
            print(f"{e.name:40s} {'fast' if e.fast else 'slow'}  {e.family}")
        return 0
    entries = select(args.only, args.slow)
    root = args.root.resolve() if args.root else None
    where = _qstudio_file(root)
    print(f"qstudio from {where}; {len(entries)} runs", flush=True)
    import torch
    import torchvision

    meta: dict[str, Any] = {
        "label": args.label,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "machine": machine(),
        "load_start": _load(),
        "qstudio": where,
        "iters": args.iters,
        "command": regenerate_command(args),
    }
    start = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="zoo-run-") as tmp:
        base = (args.keep or Path(tmp)).resolve()
        for i, entry in enumerate(entries, 1):
            o = run_entry(entry, base / entry.name, iters=args.iters, timeout=args.timeout, root=root)
            outcomes.append(o)
            if args.json:  # as it goes: an interrupted run keeps what it measured
                meta["seconds"], meta["load_end"] = time.monotonic() - start, _load()
                write(outcomes, meta, argparse.Namespace(**{**vars(args), "out": None}))
            figures = f"{_x(o.speedup)} / {_x(o.speedup_vs_fastest)} {_quality(o)}" if o.bucket == "ok" else o.error
            print(f"[{i}/{len(entries)}] {o.entry:36s} {_result(o):28s} {o.seconds:6.0f}s  {figures}", flush=True)
    meta["seconds"] = time.monotonic() - start
    meta["load_end"] = _load()
    loads = [float(x) for x in (meta["load_start"] + ", " + meta["load_end"]).replace("?", "0").split(", ")]
    meta["noisy"] = max(loads[0], loads[3]) > 0.5 * (os.cpu_count() or 1)
    print(counts_line(counts(outcomes)))
    write(outcomes, meta, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
