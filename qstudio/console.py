"""Terminal output for the CLI: one progress bar for the whole run, fed by the engine's Progress steps, and result tables."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from qstudio.core import progress as core_progress
from qstudio.core.formatting import fmt_db
from qstudio.core.latency_figures import runtime_batch_sizes, runtime_rows
from qstudio.core.summary import CRITICAL, PALETTE, WARNING, sqnr_band, summarize

#: Piped into a file or a CI log (no terminal, no COLUMNS), rich would wrap every line at 80 columns and cut a
#: table's rows into fragments a reader or grep cannot follow; this width keeps a row on one line.
LOG_WIDTH = 160


def _console(stream: Any, **kwargs: Any) -> Console:
    piped = not (getattr(stream, "isatty", lambda: False)() or os.environ.get("COLUMNS"))
    return Console(width=LOG_WIDTH if piped else None, **kwargs)


out = _console(sys.stdout)
err = _console(sys.stderr, stderr=True)


class ProgressPrinter:
    """One bar for the whole run on stderr: the stage, the overall percentage and the time left for the run.

    The engine's steps go through :class:`~qstudio.core.progress.RunProgress`,
    which maps each stage's batches onto the run's plan; a note in the plan
    (fewer calibration batches than asked for) is printed above the bar.
    """

    STEPS = 1000  # bar resolution

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=err,
            transient=False,
        )
        self.tracker = core_progress.RunProgress()
        self._task: Any = None

    def __enter__(self) -> ProgressPrinter:
        self._bar.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and self._task is not None:
            self.tracker.finish()
            self._bar.update(self._task, completed=self.STEPS, description="done", eta="")
        self._bar.stop()

    def update(self, step: core_progress.Progress) -> None:
        tracker = self.tracker
        tracker.update(step)
        if step.plan is not None:
            if step.message:
                self._bar.console.print(f"[yellow]note:[/] {escape(step.message)}")
            return
        if self._task is None:  # added at the first working step: a run refused before that prints only its error
            self._task = self._bar.add_task("", total=self.STEPS, eta="")
        desc = tracker.label
        if step.metrics and "loss" in step.metrics:
            desc = f"{desc} loss {step.metrics['loss']:.3f}"
        eta = tracker.describe_eta()
        self._bar.update(self._task, completed=round(tracker.fraction * self.STEPS), description=desc, eta=eta)


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} ms"


def print_tree(loaded: Any, root: Any, suggestion: Any, shape: list[int] | None) -> None:
    group_of = {n: i for i, g in enumerate(suggestion.groups) for n in g}
    title = f"[bold]{loaded.name}[/] {root.type} ({loaded.kind}), {root.params:,} parameters, input {shape or 'unknown (pass --input-shape)'}"
    tree = Tree(title)

    def add(branch: Tree, node: Any) -> None:
        for child in node.children:
            bits = [f"[bold]{child.short_name}[/]", child.type]
            if child.params:
                bits.append(f"{child.params:,} params")
            if child.output_shape:
                bits.append(f"-> {child.output_shape}")
            if child.quantizable:
                bits.append("[green]int8[/]")
            if child.name in group_of:
                bits.append(f"[cyan]fuse#{group_of[child.name]}[/]")
            add(branch.add("  ".join(bits)), child)

    add(tree, root)
    out.print(tree)
    out.print(f"\n[bold]Fusion groups[/] ({suggestion.method}): {len(suggestion.groups)}")
    for i, g in enumerate(suggestion.groups):
        out.print(f"  #{i}: {' + '.join(g)}")
    for note in [*loaded.warnings, *suggestion.notes]:
        out.print(f"[yellow]note:[/] {note}")


def print_result(result: Any, args: argparse.Namespace) -> None:
    """The run's figures, then its notices (critical ones loud), all as :func:`~qstudio.core.summary.summarize` says."""
    summary = summarize(result)
    ev = result.evaluation
    t = Table(title=f"{result.model_name}: {result.recipe.mode} on {ev.data}", caption=summary.headline)
    t.add_column("")
    t.add_column("FP32", justify="right")
    t.add_column("INT8", justify="right")
    if ev.fp32_accuracy is not None:
        t.add_row("top-1", fmt_pct(ev.fp32_accuracy), fmt_pct(ev.int8_accuracy))
    t.add_row("agreement with FP32", "", fmt_pct(ev.agreement))
    t.add_row("output SQNR / cosine", "", f"{fmt_db(ev.output_sqnr_db)} dB / {ev.cosine:.4f}")
    t.add_row("latency (median)", fmt_ms(result.fp32.latency_ms), fmt_ms(result.int8.latency_ms))
    if result.fp32_deploy:
        t.add_row(
            "FP32 TorchScript (frozen)", fmt_ms(min(result.fp32_deploy, key=lambda s: s.batch_size).median_ms), ""
        )
    t.add_row("size", f"{result.fp32.size_mb:.2f} MB", f"{result.int8.size_mb:.2f} MB")
    out.print(t)
    if len(result.runtimes) > 1:
        print_runtimes(result)
    if result.speedup:
        vs = f", {result.speedup_vs_deploy:.2f}x vs FP32 TorchScript" if result.speedup_vs_deploy else ""
        best, deployed = result.fp32_best, result.deployed
        if best is not None and deployed is not None and result.speedup_vs_fp32_best:
            vs = f", {result.speedup_vs_fp32_best:.2f}x vs {best.label} (the fastest FP32 measured)"
        slower = summary.int8_slower
        line = f"speedup {result.speedup:.2f}x vs FP32 eager{vs}{' (INT8 is SLOWER)' if slower else ''}"
        out.print(
            f"[bold {PALETTE[CRITICAL]}]{line}[/]" if slower else line,
            f"; calibration {result.calibration_seconds:.1f} s",
            sep="",
        )
    cov = result.coverage
    out.print(f"quantized layers: {len(cov.quantized_layers)} of {len(cov.quantized_layers) + len(cov.float_layers)}")
    if result.layers:
        print_layers(result.layers[:5])
    if result.skip_worst:
        sw = result.skip_worst
        out.print(
            f"kept in float: {', '.join(sw.layers)}; agreement {fmt_pct(sw.before.agreement)} -> {fmt_pct(sw.after.agreement)}"
        )
    for n in summary.notices:
        if n.severity == CRITICAL:  # slowdown, collapse, unreliable timing, failed export: loud
            err.print(f"[bold {n.colour}]WARNING: {escape(n.text)}[/]")
        elif n.severity == WARNING:
            err.print(f"[bold {n.colour}]warning:[/] {escape(n.text)}")
        else:
            err.print(f"[{n.colour}]note:[/] {escape(n.text)}")
    if result.export:
        e = result.export
        files = " + ".join(e.files) if len(e.files) > 1 else e.path
        out.print(f"exported {files} ({e.runtime} {e.precision.upper()}, {e.size_mb:.2f} MB, verified by reload)")
    for label, path in (("report", getattr(args, "report", None)), ("json", getattr(args, "json", None))):
        if path:
            out.print(f"{label}: {path}")


def print_runtimes(result: Any) -> None:
    """Every runtime and precision measured side by side: latency per batch, speedup vs the fastest FP32, quality."""
    rows = runtime_rows(result)
    sizes = runtime_batch_sizes(result)
    labelled = any(r.figure.accuracy is not None for r in rows)
    rt = Table(title="runtimes side by side (median ms per call)")
    rt.add_column("runtime")
    for b in sizes:
        rt.add_column(f"batch {b}", justify="right")
    for col in ("vs FP32 best", "size", "top-1" if labelled else "agreement", "cosine"):
        rt.add_column(col, justify="right")
    for r in rows:
        f = r.figure
        marks = [m for m, on in (("baseline", r.baseline), ("export", r.target)) if on]
        name = f"[bold]{escape(f.label)}[/] ({', '.join(marks)})" if marks else escape(f.label)
        vs = "—" if r.vs_fp32_best is None else f"{r.vs_fp32_best:.2f}x"
        if r.vs_fp32_best is not None and r.vs_fp32_best < 1 and f.precision == "int8":
            vs = f"[bold {PALETTE[CRITICAL]}]{vs}[/]"
        size = "—" if f.size_mb is None or f.size_mb != f.size_mb else f"{f.size_mb:.2f} MB"
        cos = "—" if f.cosine is None else f"{f.cosine:.4f}"
        rt.add_row(
            name,
            *(fmt_ms(s.median_ms) if (s := r.latency_at(b)) else "—" for b in sizes),
            vs,
            size,
            fmt_pct(f.accuracy if labelled else f.agreement),
            cos,
        )
    out.print(rt)


def print_layers(layers: Any) -> None:
    """The worst layers: SQNR in dB, the activation figure in its band's colour and the band named."""
    lt = Table(title="worst layers (SQNR dB, higher is better)")
    for col in ("layer", "type", "weight", "activation", "band"):
        lt.add_column(col, justify="right" if col in ("weight", "activation") else "left")
    for e in layers:
        band, colour = sqnr_band(e.activation_sqnr_db)
        lt.add_row(
            escape(e.name),
            e.type,
            fmt_db(e.weight_sqnr_db),
            f"[{colour}]{fmt_db(e.activation_sqnr_db)}[/]",
            f"[{colour}]{band}[/]",
        )
    out.print(lt)


# -- search -------------------------------------------------------------------------------
class SearchPrinter(ProgressPrinter):
    """The search's bar (trials and time against their limits) and one line per finished trial above it."""

    def __init__(self, settings: Any) -> None:
        super().__init__()
        self.settings = settings
        self._phase = ""

    def update(self, step: core_progress.Progress) -> None:
        if self._task is None:
            self._task = self._bar.add_task("", total=self.STEPS, eta="")
        desc = step.message.split(" · ")[0] if step.message else "Searching"
        phase = re.sub(r" of \d+$", "", desc.split(":")[0])  # "trial 3 of 16: ..." and "trial 3: ..." are one phase
        if phase != self._phase and not self._bar.console.is_terminal:
            # piped into a log there is no live bar: each phase gets a line, so minutes of re-measuring are not silence
            self._bar.console.print(f"[dim]{escape(desc)}…[/]")
        self._phase = phase
        best = ""
        if step.metrics and "best_speedup" in step.metrics:
            best = f"best {step.metrics['best_speedup']:.2f}x at {100 * step.metrics['best_quality']:.2f}%"
        self._bar.update(self._task, completed=round(step.fraction * self.STEPS), description=_cut(desc, 28), eta=best)

    def trial_done(self, trial: Any, result: Any) -> None:
        q = "—" if trial.quality is None else f"{100 * trial.quality:.2f}%"
        speed = "—" if not trial.speedup else f"{trial.speedup:.2f}x"
        mark = {"complete": "[green]within[/]" if trial.within_budget else "[red]over[/]"}.get(
            trial.state, f"[yellow]{trial.state}[/]"
        )
        star = " [bold]best so far[/]" if result.best is trial else ""
        note = f" ({escape(trial.note)})" if trial.note else ""
        self._bar.console.print(
            f"trial {trial.number:>2}  {mark:<8} {result.metric} {q:>8}  {speed:>7}  "
            f"{escape(trial.describe())}{note}{star}"
        )


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def print_search(result: Any, args: argparse.Namespace) -> None:
    """The trials on the Pareto front, the winner and how it compares with the plain run, then the notes."""
    front = set(result.pareto)
    t = Table(title=f"{result.model_name}: search within {result.max_drop:g} points of FP32 ({result.metric})")
    for col in ("#", "configuration", result.metric, "vs FP32", "ms", "speedup", ""):
        t.add_column(col, justify="right" if col not in ("configuration", "") else "left")
    for i, tr in enumerate(result.trials):
        if i not in front and tr is not result.best and i != 0:
            continue
        marks = ", ".join(
            m
            for m, on in (
                ("best", tr is result.best),
                ("plain run", i == 0),
                ("Pareto", i in front),
                ("over budget", tr.state == "complete" and not tr.within_budget),
                (tr.state, tr.state not in ("complete",)),
            )
            if on
        )
        t.add_row(
            str(tr.number),
            escape(tr.describe()),
            fmt_pct(tr.quality),
            c if (c := result.points_vs_fp32(tr)) == "—" else f"{c} pt",
            "—" if tr.latency_ms is None else f"{tr.latency_ms:.2f}",
            "—" if not tr.speedup else f"{tr.speedup:.2f}x",
            marks,
        )
    out.print(t)
    colour = "green" if result.best is not None else "red"
    out.print(f"[{colour}]{escape(result.summary())}[/]")
    plain, best = result.plain, result.best
    if best is not None and plain is not None and best is not plain and plain.speedup and best.speedup:
        where = "within" if plain.within_budget else "OVER"
        out.print(
            f"plain run ({where} budget): {fmt_pct(plain.quality)} at {plain.speedup:.2f}x; "
            f"the winner is {best.speedup / plain.speedup:.2f}x its speed"
        )
    final = result.final
    if final is not None and final.speedup_vs_fp32_best and result.remeasured:
        fb = final.fp32_best
        data = "hold-out data" if result.holdout is not None else "the evaluation data"
        q = fmt_pct(final.deployed.accuracy if result.metric == "accuracy" else final.deployed.agreement)
        out.print(
            f"winner measured again beside every runtime, on {data}: {result.metric} {q}, "
            f"{final.speedup_vs_fp32_best:.2f}x vs {fb.label} (the fastest FP32 runtime), "
            f"{final.speedup:.2f}x vs FP32 eager"
        )
        if final.export is not None:
            out.print(f"exported: {escape(final.export.path)}")
    for warning in result.warnings:
        out.print(f"[bold red]{escape(warning)}[/]")
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    if getattr(args, "save_recipe", None) and final is not None:
        out.print(f"winner's recipe: {escape(args.save_recipe)} (replay: qstudio run {escape(args.save_recipe)})")
