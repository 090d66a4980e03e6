"""What a run says: its headline, cards and notices, worked out once.

The HTML report (:mod:`qstudio.core.report`), the window
(:mod:`qstudio.ui.results_panel`) and the CLI (:mod:`qstudio.console`) all
show a :class:`~qstudio.core.run_result.RunResult`.  What its figures *mean*
(is INT8 slower, is a layer's SQNR good, which warnings to read first) is
decided here, in :func:`summarize`, and the three only render the
:class:`Summary`:

* ``headline`` - one sentence: speed, size and accuracy (or agreement);
* ``cards`` - accuracy/agreement, latency/speedup, size and coverage, each with
  a title, a value, a two-line detail, a tooltip and a severity; ``more_cards``
  (output SQNR, calibration time) for the report, which has the room
  (:mod:`qstudio.core.cards`);
* ``notices`` - every warning about the run, typed (severity, code, text),
  loudest first and each said once: the engine's verdicts
  (:mod:`qstudio.core.verdicts`), random data, no evaluation data, coverage,
  and whatever else the run noted;
* typed flags (``random_data``, ``no_eval_data``, ``int8_slower``) that a
  renderer tests instead of matching a sentence;
* the latency chart's series and the latency table's rows
  (:mod:`qstudio.core.latency_figures`).

The colours and SQNR bands are :mod:`qstudio.core.palette`'s (one
:data:`PALETTE`, one :func:`sqnr_band`), the phrases ("4.8x faster")
:mod:`qstudio.core.phrases`'; this module exports them too.

Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qstudio.core.cards import (
    CARD_SEVERITIES,
    Card,
    accuracy_card,
    coverage_card,
    latency_card,
    more_cards,
    size_card,
    size_ratio,
)
from qstudio.core.formatting import (
    DASH,
    fmt_db,
    fmt_ms,
    fmt_pct,
    fmt_ratio,
    fmt_size,
)
from qstudio.core.latency_figures import (
    LATENCY_SERIES,
    LatencyRow,
    Series,
    _smallest,
    fastest_fp32,
    int8_slower,
    latency_rows,
    latency_series,
)
from qstudio.core.palette import (
    OK,
    PALETTE,
    SQNR_BANDS,
    SQNR_GOOD_FROM,
    SQNR_POOR_BELOW,
    UNKNOWN_BAND,
    Band,
    sqnr_band,
)
from qstudio.core.phrases import MODE_LABELS, mode_label, size_phrase, speed_phrase
from qstudio.core.verdicts import CRITICAL, INFO, NO_EVAL_DATA_TEXT, RANDOM_DATA_TEXT, SEVERITIES, WARNING

if TYPE_CHECKING:
    from qstudio.core.recipe import Recipe
    from qstudio.core.run_result import RunResult


# -- the typed pieces ---------------------------------------------------------------------------
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


# -- the figures behind the meaning ---------------------------------------------------------
def evaluated_on_calibration(recipe: Recipe) -> bool:
    """True when the run had no evaluation data of its own: the pipeline then evaluates on the calibration data.

    The rule is :meth:`Recipe.eval_source`, which :func:`qstudio.core.run_data.load_run_data` follows too.
    """
    return recipe.eval_source() is None


# -- the headline -------------------------------------------------------------------------------
def headline(result: RunResult) -> str:
    """The one sentence at the top: speed, size and accuracy (or agreement), all from ``result``."""
    clauses: list[str] = []
    speed = result.speedup
    int8_first = _smallest(result.int8.latency)
    best, deployed, vs_best = result.fp32_best, result.deployed, result.speedup_vs_fp32_best
    if vs_best and best is not None and deployed is not None and best.name not in ("eager", "torchscript"):
        # the stakeholder's figure: the exported model against the fastest true-FP32 runtime, named
        clause = f"{speed_phrase(vs_best)} than {best.label}, the fastest FP32 measured"
        if deployed.latency_ms and result.fp32.latency_ms:
            clause += f" ({speed_phrase(result.fp32.latency_ms / deployed.latency_ms)} vs FP32 eager)"
        if int8_first is not None:
            clause += f" at batch {int8_first.batch_size}"
        clauses.append(clause)
    elif speed:
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
    int8_accuracy, agreement = result.int8.accuracy, ev.agreement
    if deployed is not None and deployed.name != "torchscript":  # the exported model's own figures
        int8_accuracy, agreement = deployed.accuracy, deployed.agreement
    if result.fp32.accuracy is not None and int8_accuracy is not None:
        quality = f"top-1 {fmt_pct(result.fp32.accuracy)} → {fmt_pct(int8_accuracy)}"
    else:
        quality = f"predictions agree with FP32 on {fmt_pct(agreement)} of {ev.samples} samples"
    if clauses:
        name = f"INT8 ({deployed.label})" if deployed is not None and deployed.name != "torchscript" else "INT8"
        return f"{name} is {', '.join(clauses)}; {quality}."
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
    for n in runtime_notices(result):
        add(*n)
    coverage = set(result.coverage.warnings)
    for w in [*result.warnings, *result.coverage.warnings]:
        add(WARNING, "coverage" if w in coverage else "run", w)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return tuple(sorted(found, key=lambda n: rank.get(n.severity, len(rank))))  # stable: the order above within each


def runtime_notices(result: RunResult) -> list[tuple[str, str, str]]:
    """What the side-by-side runtimes say: INT8 slower than another runtime's FP32 or BF16, skips, auto's choice."""
    found: list[tuple[str, str, str]] = []
    best, deployed = result.fp32_best, result.deployed
    if best is not None and deployed is not None and best.latency_ms and deployed.latency_ms:
        if best.name not in ("eager", "torchscript") and deployed.latency_ms > best.latency_ms:
            found.append(
                (
                    CRITICAL,
                    "slower-than-fp32-runtime",
                    f"INT8 IS SLOWER than FP32 on another runtime: {deployed.label} takes {fmt_ms(deployed.latency_ms)} ms, "
                    f"{best.label} {fmt_ms(best.latency_ms)} ms. Deploy {best.label}, or export the fastest INT8 "
                    "runtime (--target auto).",
                )
            )
        bf16 = min(
            (f for f in result.runtimes if f.precision == "bf16" and f.latency_ms),
            key=lambda f: f.latency_ms or 0.0,
            default=None,
        )
        if bf16 is not None and bf16.latency_ms and deployed.latency_ms >= bf16.latency_ms:
            found.append(
                (
                    WARNING,
                    "bf16-faster",
                    f"INT8 does not beat BF16: {bf16.label} runs the float model in {fmt_ms(bf16.latency_ms)} ms without "
                    f"calibration, {deployed.label} takes {fmt_ms(deployed.latency_ms)} ms.",
                )
            )
    for line in result.runtime_notes:
        found.append((INFO, "runtime-skipped", line))
    if result.target_note:
        code = "target" if result.target is not None else "target-missing"
        found.append((INFO if result.target is not None else WARNING, code, result.target_note))
    return found


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
        ("speedup_vs_best", "vs fastest FP32", fmt_ratio(result.speedup_vs_fp32_best)),
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
        accuracy_card(result, data_notice, "collapse" in codes),
        latency_card(result, slower, fastest, "unreliable-timing" in codes or "slowdown" in codes),
        size_card(result),
        coverage_card(result),
    )
    return Summary(
        headline=headline(result),
        cards=cards,
        more_cards=more_cards(result),
        notices=said,
        series=latency_series(result),
        latency=latency_rows(result),
        figures=_figures(result),
        random_data=result.random_data,
        no_eval_data=no_eval,
        int8_slower=slower,
        fastest_fp32=fastest,
    )


__all__ = [  # the palette's, the cards', the latency figures' and the phrases' names too: they were defined here
    "CARD_SEVERITIES",
    "CRITICAL",
    "INFO",
    "LATENCY_SERIES",
    "MODE_LABELS",
    "NO_EVAL_DATA_TEXT",
    "OK",
    "PALETTE",
    "RANDOM_DATA_TEXT",
    "SEVERITIES",
    "SQNR_BANDS",
    "SQNR_GOOD_FROM",
    "SQNR_POOR_BELOW",
    "UNKNOWN_BAND",
    "WARNING",
    "Band",
    "Card",
    "Figure",
    "LatencyRow",
    "Notice",
    "Series",
    "Summary",
    "evaluated_on_calibration",
    "fastest_fp32",
    "headline",
    "int8_slower",
    "latency_rows",
    "latency_series",
    "mode_label",
    "notices",
    "size_phrase",
    "size_ratio",
    "speed_phrase",
    "sqnr_band",
    "summarize",
]
