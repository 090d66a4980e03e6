"""What a run says: its headline, cards, notices, colours and SQNR bands, worked out once.

The HTML report (:mod:`qstudio.core.report`), the window
(:mod:`qstudio.ui.results_panel`) and the CLI (:mod:`qstudio.console`) all
show a :class:`~qstudio.core.pipeline.RunResult`.  What its figures *mean*
(is INT8 slower, is a layer's SQNR good, which warnings to read first) is
decided here, in :func:`summarize`, and the three only render the
:class:`Summary`:

* ``headline`` - one sentence: speed, size and accuracy (or agreement);
* ``cards`` - accuracy/agreement, latency/speedup, size and coverage, each with
  a title, a value, a two-line detail, a tooltip and a severity; ``more_cards``
  (output SQNR, calibration time) for the report, which has the room;
* ``notices`` - every warning about the run, typed (severity, code, text),
  loudest first and each said once: the engine's verdicts
  (:mod:`qstudio.core.verdicts`), random data, no evaluation data, coverage,
  and whatever else the run noted;
* typed flags (``random_data``, ``no_eval_data``, ``int8_slower``) that a
  renderer tests instead of matching a sentence;
* one :data:`PALETTE` and one set of SQNR bands (:func:`sqnr_band`).

Qt-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

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
from qstudio.core.verdicts import CRITICAL, INFO, NO_EVAL_DATA_TEXT, RANDOM_DATA_TEXT, SEVERITIES, WARNING

if TYPE_CHECKING:
    from qstudio.core.benchmark import LatencyStat
    from qstudio.core.pipeline import RunResult
    from qstudio.core.recipe import Recipe

#: A card whose figures are fine; notices only take :data:`SEVERITIES` (critical, warning, info).
OK = "ok"
CARD_SEVERITIES = (*SEVERITIES, OK)

# -- one palette ------------------------------------------------------------------------------
#: Every colour that carries meaning, for the report (CSS and SVG), the window (charts, cards, banner) and the CLI.
PALETTE = MappingProxyType(
    {
        # the three latency series, and layers kept in float
        "fp32_eager": "#8c939d",
        "fp32_script": "#3d6fb4",
        "int8": "#e07a1f",
        "float": "#9e9e9e",
        # SQNR bands (see sqnr_band)
        "poor": "#d63a3a",
        "fair": "#e0a100",
        "good": "#2f9e44",
        # severities of notices and cards
        CRITICAL: "#b00020",
        WARNING: "#e0a100",
        INFO: "#666666",
        OK: "#2f9e44",
        # text
        "ink": "#222222",
        "muted": "#666666",
    }
)

#: The latency series in legend order: (palette key, label).  The label is :attr:`LatencyStat.label`'s.
LATENCY_SERIES = (
    ("fp32_eager", "FP32 eager"),
    ("fp32_script", "FP32 TorchScript (frozen)"),
    ("int8", "INT8"),
)

# -- one set of SQNR bands ----------------------------------------------------------------------
#: Below this a layer (or the output) is poor: it usually hurts accuracy.
SQNR_POOR_BELOW = 20.0
#: From this up (30 dB itself included) it is good: it rarely hurts accuracy.  Between the two: fair.
SQNR_GOOD_FROM = 30.0


@dataclass(frozen=True)
class Band:
    name: str  # "poor", "fair", "good"
    colour: str
    low: float  # inclusive
    high: float  # exclusive
    label: str  # for a legend with room: "below 20 dB: poor"
    short: str  # for a one-row legend: "< 20 dB"


SQNR_BANDS = (
    Band("poor", PALETTE["poor"], -math.inf, SQNR_POOR_BELOW, "below 20 dB: poor", "< 20 dB"),
    Band("fair", PALETTE["fair"], SQNR_POOR_BELOW, SQNR_GOOD_FROM, "20–30 dB: fair", "20–30 dB"),
    Band("good", PALETTE["good"], SQNR_GOOD_FROM, math.inf, "30 dB and up: good", "≥ 30 dB"),
)
UNKNOWN_BAND = "unknown"


def sqnr_band(db: float | None) -> tuple[str, str]:
    """``(name, colour)`` of an SQNR figure: poor below 20 dB, fair from 20 to below 30, good from 30 dB (∞ too).

    A missing figure (None, NaN) is ``("unknown", PALETTE["muted"])``.
    """
    if db is None or (isinstance(db, float) and math.isnan(db)):
        return UNKNOWN_BAND, PALETTE["muted"]
    for band in SQNR_BANDS:
        if band.low <= db < band.high:
            return band.name, band.colour
    return SQNR_BANDS[-1].name, SQNR_BANDS[-1].colour  # +inf: no error at all


# -- the typed pieces ---------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Notice:
    severity: str  # one of SEVERITIES
    code: str  # a verdict's code, "random-data", "no-eval-data", "coverage" or "run" (anything else the run noted)
    text: str

    @property
    def colour(self) -> str:
        return PALETTE[self.severity]


@dataclass(frozen=True)
class Figure:
    """One figure as text, for tables that set runs side by side (the window's History)."""

    key: str
    label: str
    text: str


@dataclass(frozen=True)
class Series:
    key: str  # palette key: "fp32_eager", "fp32_script", "int8"
    label: str
    colour: str
    stats: tuple[LatencyStat, ...]  # by batch size


@dataclass(frozen=True)
class LatencyRow:
    """One batch size: the three medians and INT8's (and TorchScript's) speedups."""

    batch_size: int
    eager: LatencyStat | None
    script: LatencyStat | None
    int8: LatencyStat | None

    def stat(self, key: str) -> LatencyStat | None:
        """The figure of the series ``key`` ("fp32_eager", "fp32_script", "int8") at this batch size."""
        return {"fp32_eager": self.eager, "fp32_script": self.script, "int8": self.int8}[key]

    @staticmethod
    def _ratio(base: LatencyStat | None, stat: LatencyStat | None) -> float | None:
        if base is None or stat is None or not stat.median_ms or not base.median_ms:
            return None
        return base.median_ms / stat.median_ms

    @property
    def int8_vs_eager(self) -> float | None:
        return self._ratio(self.eager, self.int8)

    @property
    def int8_vs_script(self) -> float | None:
        return self._ratio(self.script, self.int8)

    @property
    def script_vs_eager(self) -> float | None:
        return self._ratio(self.eager, self.script)

    def vs_eager(self, key: str) -> float | None:
        """The series ``key``'s speedup over FP32 eager (None for eager itself)."""
        return {"fp32_script": self.script_vs_eager, "int8": self.int8_vs_eager}.get(key)


@dataclass(frozen=True)
class Summary:
    headline: str
    cards: tuple[Card, ...]  # accuracy, latency, size, coverage: the window's four, the report's first four
    more_cards: tuple[Card, ...]  # output SQNR and calibration (training) time: the report shows them too
    notices: tuple[Notice, ...]  # loudest first, each once
    series: tuple[Series, ...]  # FP32 eager, FP32 TorchScript, INT8 (a series may be empty)
    latency: tuple[LatencyRow, ...]  # by batch size
    figures: tuple[Figure, ...]
    random_data: bool
    no_eval_data: bool  # agreement (and accuracy) were measured on the calibration data
    int8_slower: bool  # at the smallest batch, INT8 is slower than FP32 eager or frozen TorchScript FP32
    fastest_fp32: tuple[str, float] | None  # (label, median ms) of the fastest FP32 path at the smallest batch

    def card(self, key: str) -> Card:
        return next(c for c in (*self.cards, *self.more_cards) if c.key == key)

    def figure(self, key: str) -> str:
        return next(f.text for f in self.figures if f.key == key)

    def has(self, code: str) -> bool:
        return any(n.code == code for n in self.notices)

    @property
    def critical(self) -> tuple[Notice, ...]:
        return tuple(n for n in self.notices if n.severity == CRITICAL)


# -- phrases ------------------------------------------------------------------------------------
MODE_LABELS = {"eager": "PTQ eager", "fx": "PTQ FX", "qat": "QAT", "dynamic": "dynamic"}



def speed_phrase(ratio: float) -> str:
    """'4.8x faster' when ``ratio`` (baseline / INT8 time) is at least 1, else '1.35x slower'."""
    if ratio >= 1:
        return f"{fmt_ratio(ratio)} faster"
    return f"{fmt_ratio(1 / ratio)} slower"


def size_phrase(ratio: float) -> str:
    """'3.9x smaller' when ``ratio`` (FP32 size / INT8 size) is at least 1, else '1.10x larger'."""
    if ratio >= 1:
        return f"{fmt_ratio(ratio)} smaller"
    return f"{fmt_ratio(1 / ratio)} larger"


def mode_label(result: RunResult) -> str:
    mode = result.recipe.mode
    label = MODE_LABELS.get(mode, mode)
    if mode == "qat":
        label += f" ({'FX' if result.recipe.qat.graph == 'fx' else 'eager'} graph)"
    elif mode == "dynamic":
        label += f" ({result.recipe.settings.dynamic_dtype})"
    return label


def _pair(a: str, b: str) -> str:
    """'4.87 → 1.25 MB' when both figures have the same unit, else '1.20 MB → 310.0 kB'."""
    na, _, ua = a.rpartition(" ")
    nb, _, ub = b.rpartition(" ")
    if na and nb and ua == ub:
        return f"{na} → {nb} {ua}"
    return f"{a} → {b}"


# -- the figures behind the meaning ---------------------------------------------------------
def evaluated_on_calibration(recipe: Recipe) -> bool:
    """True when the run had no evaluation data of its own: the pipeline then evaluates on the calibration data.

    The rule is :meth:`Recipe.eval_source`, which :func:`qstudio.core.pipeline.load_run_data` follows too.
    """
    return recipe.eval_source() is None


def _smallest(stats: Sequence[LatencyStat]) -> LatencyStat | None:
    return min(stats, key=lambda s: s.batch_size) if stats else None


def size_ratio(result: RunResult) -> float | None:
    a, b = result.fp32.size_mb, result.int8.size_mb
    return a / b if _finite(a) and _finite(b) and a > 0 and b > 0 else None


def latency_series(result: RunResult) -> tuple[Series, ...]:
    """FP32 eager, FP32 TorchScript (frozen) and INT8, in legend order, each sorted by batch size."""
    stats = {"fp32_eager": result.fp32.latency, "fp32_script": result.fp32_deploy, "int8": result.int8.latency}
    return tuple(
        Series(key, label, PALETTE[key], tuple(sorted(stats[key], key=lambda s: s.batch_size)))
        for key, label in LATENCY_SERIES
    )


def latency_rows(result: RunResult) -> tuple[LatencyRow, ...]:
    eager, script, int8 = ({s.batch_size: s for s in series.stats} for series in latency_series(result))
    sizes = sorted({*eager, *script, *int8})
    return tuple(LatencyRow(b, eager.get(b), script.get(b), int8.get(b)) for b in sizes)


def fastest_fp32(result: RunResult) -> tuple[str, float] | None:
    """The fastest FP32 path measured at INT8's smallest batch size: ``("frozen TorchScript FP32", 0.41)``."""
    first = _smallest(result.int8.latency)
    if first is None:
        return None
    found = [
        (label, s.median_ms)
        for label, stats in (("FP32 eager", result.fp32.latency), ("frozen TorchScript FP32", result.fp32_deploy))
        for s in stats
        if s.batch_size == first.batch_size and _finite(s.median_ms) and s.median_ms > 0
    ]
    return min(found, key=lambda f: f[1]) if found else None


def int8_slower(result: RunResult) -> bool:
    """At the smallest batch size, INT8's median is above FP32 eager's or frozen TorchScript FP32's."""
    speed, deploy = result.speedup, result.speedup_vs_deploy
    return bool(speed and min(speed, deploy or speed) < 1)


# -- the headline -------------------------------------------------------------------------------
def headline(result: RunResult) -> str:
    """The one sentence at the top: speed, size and accuracy (or agreement), all from ``result``."""
    clauses: list[str] = []
    speed = result.speedup
    int8_first = _smallest(result.int8.latency)
    if speed:
        clause = f"{speed_phrase(speed)} than FP32 eager"
        vs_deploy = result.speedup_vs_deploy
        if vs_deploy:
            clause += f" ({speed_phrase(vs_deploy)} vs frozen TorchScript FP32)"
        if int8_first is not None:
            clause += f" at batch {int8_first.batch_size}"
        clauses.append(clause)
    ratio = size_ratio(result)
    if ratio:
        clauses.append(size_phrase(ratio))
    ev = result.evaluation
    if result.fp32.accuracy is not None and result.int8.accuracy is not None:
        quality = f"top-1 {fmt_pct(result.fp32.accuracy)} → {fmt_pct(result.int8.accuracy)}"
    else:
        quality = f"predictions agree with FP32 on {fmt_pct(ev.agreement)} of {ev.samples} samples"
    if clauses:
        return f"INT8 is {', '.join(clauses)}; {quality}."
    return f"INT8 latency and size were not measured; {quality}."


# -- the notices --------------------------------------------------------------------------------
def notices(result: RunResult, no_eval_data: bool | None = None) -> tuple[Notice, ...]:
    """Every warning about ``result``, typed and said once, loudest first.

    From typed sources first (the verdicts, ``random_data``, the recipe's data,
    the coverage), then whatever else the run wrote in ``warnings`` (loading,
    fusion, baselines).  The pipeline records the verdicts' and the data
    notices' sentences in ``warnings`` too: a sentence already said is not said
    again.
    """
    if no_eval_data is None:
        no_eval_data = evaluated_on_calibration(result.recipe)
    found: list[Notice] = []
    said: set[str] = set()

    def add(severity: str, code: str, text: str) -> None:
        if text and text not in said:
            said.add(text)
            found.append(Notice(severity, code, text))

    for v in result.verdicts:
        add(v.severity, v.code, v.text)
    if result.random_data:
        add(WARNING, "random-data", RANDOM_DATA_TEXT)
    if no_eval_data:
        add(WARNING, "no-eval-data", NO_EVAL_DATA_TEXT)
    coverage = set(result.coverage.warnings)
    for w in [*result.warnings, *result.coverage.warnings]:
        add(WARNING, "coverage" if w in coverage else "run", w)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return tuple(sorted(found, key=lambda n: rank.get(n.severity, len(rank))))  # stable: the order above within each


# -- the cards ----------------------------------------------------------------------------------
def _accuracy_card(result: RunResult, data_notice: str, collapsed: bool) -> Card:
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


def _latency_card(result: RunResult, slower: bool, fastest: tuple[str, float] | None, timing: bool) -> Card:
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
        f"{fmt_ratio(speed)} vs FP32 eager\nvs TorchScript FP32 {fmt_ratio(deploy) if deploy is not None else 'n/a'}",
        "\n".join(tip),
        severity,
    )


def _size_card(result: RunResult) -> Card:
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


def _coverage_card(result: RunResult) -> Card:
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


def _more_cards(result: RunResult) -> tuple[Card, ...]:
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
    what = "Training time" if result.recipe.mode == "qat" else "Calibration time"
    time = Card(
        "time",
        what,
        fmt_seconds(result.calibration_seconds),
        f"whole run {fmt_seconds(result.total_seconds)}",
        f"{what} {fmt_seconds(result.calibration_seconds)}; the whole run took {fmt_seconds(result.total_seconds)}.",
        INFO,
    )
    return sqnr, time


# -- figures for side-by-side tables -------------------------------------------------------------
def _figures(result: RunResult) -> tuple[Figure, ...]:
    ev, cov = result.evaluation, result.coverage
    q = result.int8.accuracy
    ms = result.int8.latency_ms
    rows = [
        ("mode", "mode", result.recipe.mode),
        ("backend", "backend", result.recipe.settings.backend),
        ("quality", "accuracy / agreement", fmt_pct(q) if q is not None else f"agree {fmt_pct(ev.agreement)}"),
        ("int8_accuracy", "INT8 accuracy", fmt_pct(q)),
        ("agreement", "agreement", fmt_pct(ev.agreement)),
        ("output_sqnr", "output SQNR", f"{fmt_db(ev.output_sqnr_db)} dB"),
        ("int8_latency", "INT8 latency", f"{fmt_ms(ms)} ms" if ms is not None else DASH),
        ("speedup", "speedup vs eager", fmt_ratio(result.speedup)),
        ("speedup_vs_script", "vs TorchScript FP32", fmt_ratio(result.speedup_vs_deploy)),
        ("int8_size", "INT8 size", fmt_size(result.int8.size_mb)),
        (
            "coverage",
            "layers INT8",
            f"{len(cov.quantized_layers)} / {len(cov.quantized_layers) + len(cov.float_layers)}",
        ),
        ("kept_float", "kept in float", ", ".join(result.skipped) or "none"),
        ("skipped", "skipped", str(len(result.skipped))),
        ("random_data", "random data", "yes" if result.random_data else "no"),
    ]
    return tuple(Figure(*row) for row in rows)


# -- the summary ---------------------------------------------------------------------------------
def summarize(result: RunResult) -> Summary:
    """What ``result`` says, for the report, the window and the CLI to render."""
    no_eval = evaluated_on_calibration(result.recipe)
    said = notices(result, no_eval)
    codes = {n.code for n in said}
    slower = int8_slower(result)
    fastest = fastest_fp32(result)
    data_notice = " ".join(
        text for flag, text in ((result.random_data, RANDOM_DATA_TEXT), (no_eval, NO_EVAL_DATA_TEXT)) if flag
    )
    cards = (
        _accuracy_card(result, data_notice, "collapse" in codes),
        _latency_card(result, slower, fastest, "unreliable-timing" in codes or "slowdown" in codes),
        _size_card(result),
        _coverage_card(result),
    )
    return Summary(
        headline=headline(result),
        cards=cards,
        more_cards=_more_cards(result),
        notices=said,
        series=latency_series(result),
        latency=latency_rows(result),
        figures=_figures(result),
        random_data=result.random_data,
        no_eval_data=no_eval,
        int8_slower=slower,
        fastest_fp32=fastest,
    )
