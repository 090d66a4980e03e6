"""The cards at the top of a run's results: accuracy (or agreement), latency, size, coverage; output SQNR and time.

Each :class:`Card` has a title, a value, a two-line detail, a tooltip and a
severity (:data:`CARD_SEVERITIES`); :func:`qstudio.core.summary.summarize`
makes them (and :mod:`qstudio.core.summary` exports :class:`Card` too), the
window, the report and the CLI show them.

Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qstudio.core.flows import mode_traits
from qstudio.core.formatting import (
    DASH,
    _finite,
    fmt_db,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    fmt_seconds,
    fmt_size,
)
from qstudio.core.latency_figures import _smallest
from qstudio.core.palette import OK, PALETTE, sqnr_band
from qstudio.core.phrases import size_phrase, speed_phrase
from qstudio.core.verdicts import CRITICAL, INFO, SEVERITIES, WARNING

if TYPE_CHECKING:
    from qstudio.core.run_result import RunResult

#: A card's severity: :data:`OK` (:mod:`qstudio.core.palette`) for figures that are fine, else a notice's.
CARD_SEVERITIES = (*SEVERITIES, OK)


@dataclass(frozen=True)
class Card:
    key: str  # "accuracy", "latency", "size", "coverage", "output_sqnr", "time"
    title: str
    value: str
    detail: str  # up to two lines, "\n" between them
    tooltip: str
    severity: str  # one of CARD_SEVERITIES

    @property
    def colour(self) -> str:
        return PALETTE[self.severity]

    @property
    def flagged(self) -> bool:
        """True when the card asks to be read with care (warning or critical)."""
        return self.severity in (WARNING, CRITICAL)


def size_ratio(result: RunResult) -> float | None:
    """FP32 size / INT8 size, None when either is missing: the size card's figure, and the headline's."""
    a, b = result.fp32.size_mb, result.int8.size_mb
    return a / b if _finite(a) and _finite(b) and a > 0 and b > 0 else None


def accuracy_card(result: RunResult, data_notice: str, collapsed: bool) -> Card:
    ev = result.evaluation
    fp, q = result.fp32.accuracy, result.int8.accuracy
    if fp is not None and q is not None:
        delta = (q - fp) * 100
        severity = OK if delta >= -1 else WARNING if delta >= -3 else CRITICAL
        card = Card(
            "accuracy",
            "Accuracy  FP32 → INT8",
            f"{fmt_pct(fp)} → {fmt_pct(q)}",
            f"{delta:+.1f} pts\nagreement {fmt_pct(ev.agreement)}",
            f"Top-1 accuracy on {ev.samples} samples of {ev.data}: FP32 {fmt_pct(fp)}, INT8 {fmt_pct(q)} "
            f"({delta:+.1f} points).\nINT8 makes FP32's top-1 prediction on {fmt_pct(ev.agreement)} of them.",
            severity,
        )
    else:
        severity = OK if ev.agreement >= 0.99 else WARNING if ev.agreement >= 0.95 else CRITICAL
        card = Card(
            "accuracy",
            "Agreement with FP32",
            fmt_pct(ev.agreement),
            f"cosine {fmt_num(ev.cosine)}\noutput SQNR {fmt_db(ev.output_sqnr_db)} dB",
            f"INT8 makes FP32's top-1 prediction on {fmt_pct(ev.agreement)} of {ev.samples} samples of {ev.data} "
            f"(no labels, so no accuracy).\nCosine similarity {fmt_num(ev.cosine)}, output SQNR {fmt_db(ev.output_sqnr_db)} dB.",
            severity,
        )
    if collapsed:
        return _with(card, CRITICAL, "INT8's outputs collapsed: see the warnings.")
    if data_notice:  # figures on random or calibration data are never simply fine
        return _with(card, WARNING if card.severity == OK else card.severity, data_notice)
    return card


def _with(card: Card, severity: str, note: str) -> Card:
    return Card(card.key, card.title, card.value, card.detail, f"{card.tooltip}\n{note}".strip(), severity)


def latency_card(result: RunResult, slower: bool, fastest: tuple[str, float] | None, timing: bool) -> Card:
    a, b = result.fp32.latency_ms, result.int8.latency_ms
    if a is None or b is None:
        return Card("latency", "Latency", DASH, "not measured\n", "No latency was measured in this run.", WARNING)
    batch = min(s.batch_size for s in result.int8.latency)
    speed, deploy = result.speedup, result.speedup_vs_deploy
    script = _smallest(result.fp32_deploy)
    tip = [
        f"Median time per call at batch {batch}: FP32 eager {fmt_ms(a)} ms, "
        + (f"frozen TorchScript FP32 {fmt_ms(script.median_ms)} ms, " if script else "no TorchScript baseline, ")
        + f"INT8 {fmt_ms(b)} ms."
    ]
    if fastest is not None and b:
        tip.append(
            f"Fastest FP32 measured: {fastest[0]} ({fmt_ms(fastest[1])} ms); INT8 is {speed_phrase(fastest[1] / b)} than it."
        )
    severity = OK
    if slower:
        severity = CRITICAL
        tip.append("INT8 IS SLOWER than FP32 here: see the warnings for why.")
    elif timing:
        severity = WARNING
        tip.append("The timing was unstable: see the warnings.")
    return Card(
        "latency",
        f"Latency  batch {batch}",
        f"{fmt_ms(a)} → {fmt_ms(b)} ms",
        f"{fmt_ratio(speed)} vs FP32 eager\n{_versus(result, deploy)}",
        "\n".join(tip),
        severity,
    )


def _versus(result: RunResult, deploy: float | None) -> str:
    """The card's second figure: against the fastest FP32 runtime when another runtime beat TorchScript."""
    best = result.fp32_best
    if best is not None and best.name not in ("eager", "torchscript") and result.speedup_vs_fp32_best:
        return f"vs {best.label} {fmt_ratio(result.speedup_vs_fp32_best)}"
    return f"vs TorchScript FP32 {fmt_ratio(deploy) if deploy is not None else 'n/a'}"


def _pair(a: str, b: str) -> str:
    """'4.87 → 1.25 MB' when both figures have the same unit, else '1.20 MB → 310.0 kB'."""
    na, _, ua = a.rpartition(" ")
    nb, _, ub = b.rpartition(" ")
    if na and nb and ua == ub:
        return f"{na} → {nb} {ua}"
    return f"{a} → {b}"


def size_card(result: RunResult) -> Card:
    a, b = result.fp32.size_mb, result.int8.size_mb
    ratio = size_ratio(result)
    return Card(
        "size",
        "Size",
        _pair(fmt_size(a), fmt_size(b)),
        size_phrase(ratio) if ratio else DASH,
        f"Serialized size: FP32 {fmt_size(a)}, INT8 {fmt_size(b)}.",
        OK if ratio and ratio >= 1 else WARNING,
    )


def coverage_card(result: RunResult) -> Card:
    cov = result.coverage
    q, total = len(cov.quantized_layers), len(cov.quantized_layers) + len(cov.float_layers)
    kept = len(result.skipped)
    detail = f"{len(cov.float_layers)} still float" if cov.float_layers else "every weighted layer is INT8"
    if kept:
        detail += f"\n{kept} kept in float on purpose"
    tip = f"{q} of {total} weighted layers run in INT8."
    if cov.float_layers:
        more = f" and {len(cov.float_layers) - 8} more" if len(cov.float_layers) > 8 else ""
        tip += f"\nStill float: {', '.join(cov.float_layers[:8])}{more}."
    return Card("coverage", "Coverage", f"{q} of {total} layers INT8", detail, tip, WARNING if cov.warnings else OK)


def more_cards(result: RunResult) -> tuple[Card, ...]:
    ev = result.evaluation
    band = sqnr_band(ev.output_sqnr_db)[0]
    sqnr = Card(
        "output_sqnr",
        "Output SQNR",
        f"{fmt_db(ev.output_sqnr_db)} dB",
        f"cosine similarity {fmt_num(ev.cosine)}",
        f"The model's output, INT8 against FP32: {band} ({fmt_db(ev.output_sqnr_db)} dB).",
        {"good": OK, "fair": WARNING, "poor": CRITICAL}.get(band, INFO),
    )
    what = mode_traits(result.recipe.mode).time_label
    time = Card(
        "time",
        what,
        fmt_seconds(result.calibration_seconds),
        f"whole run {fmt_seconds(result.total_seconds)}",
        f"{what} {fmt_seconds(result.calibration_seconds)}; the whole run took {fmt_seconds(result.total_seconds)}.",
        INFO,
    )
    return sqnr, time
