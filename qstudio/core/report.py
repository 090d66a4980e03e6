"""The HTML report: one self-contained page a stakeholder can read, print or mail.

Everything on the page comes from a :class:`~qstudio.core.pipeline.RunResult`;
nothing is estimated or filled in.  A figure the run did not produce (no FP32
TorchScript baseline, no labels, no QAT) is shown as "—" or its section is
left out.  Charts are inline SVG drawn here, so the page needs no network,
no scripts and no Qt.  Module names, paths and the model name come from user
files, so the template is autoescaped and every string placed in SVG is
escaped too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from qstudio.core.benchmark import LatencyStat
from qstudio.core.compare import LayerError
from qstudio.core.errors import ExportError
from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.formatting import (
    DASH,
    _finite,
    fmt_db,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    fmt_sci,
    fmt_seconds,
    fmt_size,
)
from qstudio.core.pipeline import RunResult

TEMPLATE_NAME = "report.html.j2"
TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_CHART_LAYERS = 40

# One palette for the page and the charts (also used by the CSS in the template).
FP32_EAGER_COLOUR = "#8c939d"
FP32_SCRIPT_COLOUR = "#3d6fb4"
INT8_COLOUR = "#e07a1f"
GOOD_COLOUR = "#2f9e44"
WARN_COLOUR = "#e0a100"
BAD_COLOUR = "#d63a3a"
INK = "#222"
MUTED = "#666"
GRID = "#e3e3e3"

SQNR_BAD_DB = 20.0
SQNR_GOOD_DB = 30.0

MODE_LABELS = {"eager": "PTQ eager", "fx": "PTQ FX", "qat": "QAT", "dynamic": "dynamic"}

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
_MONO_CHAR_W = 6.7  # px per character of 11px monospace, to size label columns


# --------------------------------------------------------------------------- number formatting
# The template and the headline use the shared formatters, so a figure reads the same everywhere.


def breakable(name: object) -> Markup:
    """Escape a module name and let the browser wrap it after dots, not mid-word."""
    return Markup("<wbr>").join(escape(part) for part in _split_keep_dots(str(name)))


def _split_keep_dots(name: str) -> list[str]:
    parts = name.split(".")
    return [p + "." for p in parts[:-1]] + parts[-1:]


def sqnr_class(v: float | None) -> str:
    """CSS class for an SQNR figure: bad below 20 dB, warn 20-30 dB, good from 30 dB."""
    if v is None or math.isnan(v):
        return "na"
    if v < SQNR_BAD_DB:
        return "bad"
    if v < SQNR_GOOD_DB:
        return "warn"
    return "good"


def _sqnr_colour(v: float | None) -> str:
    return {"bad": BAD_COLOUR, "warn": WARN_COLOUR, "good": GOOD_COLOUR}.get(sqnr_class(v), MUTED)


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


# --------------------------------------------------------------------------- derived figures
def _smallest(stats: Sequence[LatencyStat]) -> LatencyStat | None:
    return min(stats, key=lambda s: s.batch_size) if stats else None


def size_ratio(result: RunResult) -> float | None:
    a, b = result.fp32.size_mb, result.int8.size_mb
    return a / b if _finite(a) and _finite(b) and a > 0 and b > 0 else None


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


@dataclass
class Card:
    title: str
    value: str
    detail: str = ""
    tone: str = ""  # "", "good", "warn", "bad", "int8"


def _cards(result: RunResult) -> list[Card]:
    ev = result.evaluation
    cards: list[Card] = []
    if result.fp32.accuracy is not None and result.int8.accuracy is not None:
        drop = (result.int8.accuracy - result.fp32.accuracy) * 100
        tone = "good" if drop >= -1 else "warn" if drop >= -3 else "bad"
        cards.append(
            Card(
                "Top-1 accuracy",
                f"{fmt_pct(result.fp32.accuracy)} → {fmt_pct(result.int8.accuracy)}",
                f"FP32 → INT8 ({drop:+.1f} points) on {ev.samples} samples",
                tone,
            )
        )
    cards.append(
        Card(
            "Agreement with FP32",
            fmt_pct(ev.agreement),
            f"same top-1 prediction, {ev.samples} samples",
            "good" if ev.agreement >= 0.99 else "warn" if ev.agreement >= 0.95 else "bad",
        )
    )
    cards.append(
        Card(
            "Output SQNR",
            f"{fmt_db(ev.output_sqnr_db)} dB",
            f"cosine similarity {fmt_num(ev.cosine)}",
            sqnr_class(ev.output_sqnr_db),
        )
    )
    int8_first = _smallest(result.int8.latency)
    if int8_first is not None:
        fp32_first = _smallest(result.fp32.latency)
        deploy_first = _smallest(result.fp32_deploy)
        detail = f"FP32 eager {fmt_ms(fp32_first.median_ms) if fp32_first else DASH} ms"
        detail += f", TorchScript {fmt_ms(deploy_first.median_ms)} ms" if deploy_first else ", no TorchScript baseline"
        cards.append(
            Card(
                f"INT8 latency (batch {int8_first.batch_size})",
                f"{fmt_ms(int8_first.median_ms)} ms",
                detail + " (median)",
                "int8",
            )
        )
    speed = result.speedup
    if speed:
        vs_deploy = result.speedup_vs_deploy
        cards.append(
            Card(
                "Speedup vs FP32 eager",
                fmt_ratio(speed),
                ("" if speed >= 1 else f"INT8 is {speed_phrase(speed)}; ")
                + f"vs frozen TorchScript FP32: {fmt_ratio(vs_deploy) if vs_deploy else 'not measured'}",
                "good" if speed >= 1 else "bad",
            )
        )
    ratio = size_ratio(result)
    cards.append(
        Card(
            "INT8 model size",
            fmt_size(result.int8.size_mb),
            f"FP32 {fmt_size(result.fp32.size_mb)}" + (f", {size_phrase(ratio)}" if ratio else ""),
            "",
        )
    )
    what = "Training time" if result.recipe.mode == "qat" else "Calibration time"
    cards.append(
        Card(what, fmt_seconds(result.calibration_seconds), f"whole run {fmt_seconds(result.total_seconds)}", "")
    )
    return cards


def _warnings(result: RunResult) -> list[str]:
    """The warnings box: critical verdicts (slowdown, collapse, unreliable timing, failed export) first, in red."""
    out: list[str] = []
    if result.random_data:
        out.append(
            "RANDOM DATA: this run used random inputs, so its accuracy, agreement and per-layer figures do not describe real inputs."
        )
    for w in [*result.warnings, *result.coverage.warnings]:
        if w not in out:
            out.append(w)
    severity = {v.text: v.severity for v in getattr(result, "verdicts", None) or ()}
    critical = [w for w in out if severity.get(w) == "critical"]
    loud = [Markup('<strong class="bad">{}</strong>').format(w) for w in critical]
    return loud + [w for w in out if w not in critical]


# --------------------------------------------------------------------------- SVG helpers
def _e(text: object) -> str:
    return str(escape(str(text)))


def _nice_step(span: float, target_ticks: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about ``target_ticks`` ticks over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target_ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _tick_label(v: float, step: float) -> str:
    """Axis numbers with just enough decimals for the step (0.25 -> two, 5 -> none)."""
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{_e(label)}" font-family="{_FONT}" font-size="12" '
        f'style="max-width:{width}px;height:auto">'
        f"<title>{_e(label)}</title>"
    )


def _empty_chart(message: str, width: int = 940) -> str:
    return (
        _svg_open(width, 60, message)
        + f'<text x="{width / 2}" y="34" text-anchor="middle" fill="{MUTED}">{_e(message)}</text></svg>'
    )


# --------------------------------------------------------------------------- latency chart
def _latency_series(result: RunResult) -> list[tuple[str, str, list[LatencyStat]]]:
    series = [
        ("FP32 eager", FP32_EAGER_COLOUR, result.fp32.latency),
        ("FP32 TorchScript (frozen)", FP32_SCRIPT_COLOUR, result.fp32_deploy),
        ("INT8", INT8_COLOUR, result.int8.latency),
    ]
    return [(name, colour, list(stats)) for name, colour, stats in series if stats]


def latency_chart_svg(result: RunResult) -> str:
    """Grouped bars per batch size (FP32 eager, FP32 TorchScript frozen, INT8): bar = median, whisker = p90."""
    series = _latency_series(result)
    if not series:
        return _empty_chart("No latency was measured in this run.")
    batches = sorted({s.batch_size for _, _, stats in series for s in stats})
    top = max(max(s.p90_ms, s.median_ms) for _, _, stats in series for s in stats)
    top = top if top > 0 and math.isfinite(top) else 1.0
    # the tick step (from a few candidates) that leaves the least empty space above the tallest whisker
    step, y_max = min(
        ((st, st * math.ceil(top * 1.1 / st)) for st in (_nice_step(top * 1.1, n) for n in (4, 5, 6, 7))),
        key=lambda c: (c[1], -c[0]),
    )

    width, left, right, top_pad, plot_h, bottom = 940, 70, 16, 56, 280, 52
    height = top_pad + plot_h + bottom
    plot_w = width - left - right
    group_w = plot_w / len(batches)
    k = len(series)
    gap = 6
    bar_w = min(64.0, (group_w * 0.78 - gap * (k - 1)) / k)
    label_w = 7.0 * 6  # up to six characters at 12px
    vertical_labels = bar_w + gap < label_w

    def y(v: float) -> float:
        return top_pad + plot_h - max(0.0, min(v, y_max)) / y_max * plot_h

    parts = [_svg_open(width, height, "Latency per call by batch size: median bars with p90 whiskers")]
    # legend
    lx = left
    for name, colour, _ in series:
        parts.append(f'<rect x="{lx}" y="14" width="14" height="14" rx="2" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 20}" y="25.5" fill="{INK}">{_e(name)}</text>')
        lx += 20 + len(name) * 6.4 + 26
    parts.append(
        f'<text x="{width - right}" y="25.5" text-anchor="end" fill="{MUTED}">bar = median, whisker = p90, values = median ms</text>'
    )
    # grid and y axis
    ticks = round(y_max / step)
    for i in range(ticks + 1):
        v = i * step
        yy = y(v)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{GRID if i else "#999"}"/>'
        )
        parts.append(
            f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" fill="{MUTED}">{_tick_label(v, step)}</text>'
        )
    cy = top_pad + plot_h / 2
    parts.append(
        f'<text x="18" y="{cy}" text-anchor="middle" fill="{INK}" transform="rotate(-90 18 {cy})">latency per call (ms)</text>'
    )
    # bars
    for gi, batch in enumerate(batches):
        gx = left + gi * group_w
        total_w = k * bar_w + (k - 1) * gap
        x0 = gx + (group_w - total_w) / 2
        for si, (name, colour, stats) in enumerate(series):
            stat = next((s for s in stats if s.batch_size == batch), None)
            bx = x0 + si * (bar_w + gap)
            cx = bx + bar_w / 2
            if stat is None:
                parts.append(
                    f'<text x="{cx:.1f}" y="{y(0) - 6:.1f}" text-anchor="middle" fill="{MUTED}" font-size="11">n/a</text>'
                )
                continue
            by = y(stat.median_ms)
            parts.append(
                f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w:.1f}" height="{y(0) - by:.1f}" fill="{colour}">'
                f"<title>{_e(name)}, batch {batch}: median {fmt_ms(stat.median_ms)} ms, p90 {fmt_ms(stat.p90_ms)} ms</title></rect>"
            )
            wy = y(stat.p90_ms)
            if stat.p90_ms > stat.median_ms:
                cap = min(bar_w * 0.5, 14)
                parts.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{by:.1f}" y2="{wy:.1f}" stroke="{INK}" stroke-width="1.3"/>'
                )
                parts.append(
                    f'<line x1="{cx - cap / 2:.1f}" x2="{cx + cap / 2:.1f}" y1="{wy:.1f}" y2="{wy:.1f}" stroke="{INK}" stroke-width="1.3"/>'
                )
            label_y = min(by, wy) - 5
            text = fmt_ms(stat.median_ms)
            if vertical_labels:
                parts.append(
                    f'<text x="{cx + 4:.1f}" y="{label_y:.1f}" fill="{INK}" font-size="11" '
                    f'transform="rotate(-90 {cx + 4:.1f} {label_y:.1f})">{text}</text>'
                )
            else:
                parts.append(
                    f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle" fill="{INK}" font-weight="600">{text}</text>'
                )
        parts.append(
            f'<text x="{gx + group_w / 2:.1f}" y="{top_pad + plot_h + 22}" text-anchor="middle" fill="{INK}" font-weight="600">batch {batch}</text>'
        )
        if gi:
            parts.append(
                f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h + 8}" stroke="#999"/>'
            )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" fill="{MUTED}">'
        "batch size (inputs per call); lower is better</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- per-layer chart
def _short(name: str, limit: int = 46) -> str:
    """Shorten a long module name from the left, at a dot where possible.

    The end of a module path (``stage2.block3.conv1``) tells layers apart; the
    shared beginning (``backbone.features.``) does not.
    """
    if len(name) <= limit:
        return name
    tail = name[-(limit - 1) :]
    dot = tail.find(".")
    if 0 <= dot < len(tail) - 8:
        tail = tail[dot + 1 :]
    return "…" + tail


def sorted_layers(layers: Iterable[LayerError]) -> list[LayerError]:
    """Worst first: lowest activation SQNR (else weight SQNR), ties by name."""
    return sorted(layers, key=lambda e: (e.worst_db(), e.name))


def layer_chart_svg(layers: list[LayerError], skipped: list[str]) -> str:
    """Horizontal bars of activation SQNR per layer, worst first, weight SQNR as a marker; skipped layers marked.

    Rows are numbered like the table below the chart; at most
    :data:`MAX_CHART_LAYERS` layers are drawn and the rest are counted.
    """
    rows = sorted_layers(layers)
    shown = rows[:MAX_CHART_LAYERS]
    more = len(rows) - len(shown)
    shown_names = {e.name for e in shown}
    skipped = [s for s in skipped if s not in shown_names]
    if not shown and not skipped:
        return _empty_chart("No quantized layers to compare.")

    finite = [v for e in shown for v in (e.activation_sqnr_db, e.weight_sqnr_db) if _finite(v)]
    x_max = 10 * math.ceil(max([40.0, *finite]) / 10)
    has_inf = any(
        v is not None and math.isinf(v) and v > 0 for e in shown for v in (e.activation_sqnr_db, e.weight_sqnr_db)
    )

    n_rows = len(shown) + len(skipped)
    rank_w = 8 + len(str(max(len(shown), 1))) * _MONO_CHAR_W
    names = [_short(e.name) for e in shown] + [_short(s) for s in skipped]
    name_w = min(46 * _MONO_CHAR_W, max(60.0, max(len(n) for n in names) * _MONO_CHAR_W))
    label_end = rank_w + 8 + name_w
    width, row_h = 940, 22
    value_w = 64  # a fixed column for the activation figure, so it never collides with bars or markers
    left = label_end + 10
    right_edge = width - value_w - 8
    plot_w = right_edge - left
    top_pad = 58
    plot_h = n_rows * row_h
    bottom = 30 + (24 if more else 0)
    height = top_pad + plot_h + bottom
    y0, y1 = top_pad, top_pad + plot_h

    def x(v: float) -> float:
        return left + max(0.0, min(v, x_max)) / x_max * plot_w

    parts = [_svg_open(width, height, "Per-layer SQNR, worst layer first")]
    # legend, one line across the top
    lx = 8
    parts.append(f'<rect x="{lx}" y="9" width="14" height="12" fill="{GOOD_COLOUR}"/>')
    parts.append(f'<text x="{lx + 20}" y="19.5" fill="{INK}">activation SQNR (bar)</text>')
    lx += 175
    parts.append(f'<path d="M{lx + 6} 8 l6 7 l-6 7 l-6 -7 z" fill="{INK}"/>')
    parts.append(f'<text x="{lx + 18}" y="19.5" fill="{INK}">weight SQNR</text>')
    lx += 120
    for colour, text in (
        (BAD_COLOUR, "below 20 dB: poor"),
        (WARN_COLOUR, "20–30 dB: fair"),
        (GOOD_COLOUR, "30 dB and up: good"),
    ):
        parts.append(f'<rect x="{lx}" y="9" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 17}" y="19.5" fill="{MUTED}">{text}</text>')
        lx += 30 + len(text) * 6.4
    if skipped:
        parts.append(
            f'<rect x="{lx}" y="9" width="18" height="12" fill="none" stroke="{MUTED}" stroke-dasharray="3 2"/>'
        )
        parts.append(f'<text x="{lx + 24}" y="19.5" fill="{MUTED}">kept in float</text>')
    # background zones, stripes, grid
    for lo, hi, colour in (
        (0, SQNR_BAD_DB, BAD_COLOUR),
        (SQNR_BAD_DB, SQNR_GOOD_DB, WARN_COLOUR),
        (SQNR_GOOD_DB, x_max, GOOD_COLOUR),
    ):
        parts.append(
            f'<rect x="{x(lo):.1f}" y="{y0}" width="{x(hi) - x(lo):.1f}" height="{plot_h}" fill="{colour}" opacity="0.07"/>'
        )
    for i in range(1, n_rows, 2):
        parts.append(f'<rect x="0" y="{y0 + i * row_h}" width="{width}" height="{row_h}" fill="#000" opacity="0.035"/>')
    for v in range(0, int(x_max) + 1, 10):
        xx = x(v)
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0 - 4}" y2="{y1}" stroke="{GRID}"/>')
        parts.append(f'<text x="{xx:.1f}" y="{y0 - 9}" text-anchor="middle" fill="{MUTED}">{v}</text>')
    for v, colour in ((SQNR_BAD_DB, BAD_COLOUR), (SQNR_GOOD_DB, WARN_COLOUR)):
        parts.append(
            f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{y0}" y2="{y1}" stroke="{colour}" stroke-dasharray="4 3"/>'
        )
    parts.append(f'<text x="{rank_w}" y="{y0 - 9}" text-anchor="end" fill="{MUTED}">#</text>')
    parts.append(f'<text x="{label_end - 16}" y="{y0 - 9}" text-anchor="end" fill="{MUTED}">layer</text>')
    parts.append(f'<text x="{width - 8}" y="{y0 - 9}" text-anchor="end" fill="{MUTED}">act. dB</text>')

    def label(i: int, rank: str, name: str, colour: str, tip: str) -> None:
        mid = y0 + i * row_h + row_h / 2
        parts.append(
            f'<text x="{rank_w}" y="{mid + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">{rank}</text>'
        )
        parts.append(
            f'<text x="{label_end}" y="{mid + 4:.1f}" text-anchor="end" font-family="{_MONO}" font-size="11" fill="{colour}">'
            f"<title>{_e(tip)}</title>{_e(_short(name))}</text>"
        )

    for i, e in enumerate(shown):
        ry = y0 + i * row_h
        mid = ry + row_h / 2
        label(i, str(i + 1), e.name, INK, f"{e.name} ({e.type})")
        a = e.activation_sqnr_db
        if a is not None and not math.isnan(a):
            end = x(a)
            parts.append(
                f'<rect x="{left}" y="{ry + 4}" width="{max(end - left, 1.5):.1f}" height="{row_h - 8}" fill="{_sqnr_colour(a)}" rx="1">'
                f"<title>{_e(e.name)}: activation {fmt_db(a)} dB, weight {fmt_db(e.weight_sqnr_db)} dB</title></rect>"
            )
        else:
            parts.append(
                f'<text x="{left + 6}" y="{mid + 4:.1f}" fill="{MUTED}" font-size="11" font-style="italic">activation not captured</text>'
            )
        parts.append(
            f'<text x="{width - 8}" y="{mid + 4:.1f}" text-anchor="end" font-size="11.5" font-weight="600" '
            f'fill="{_sqnr_colour(a) if a is not None else MUTED}">{fmt_db(a)}</text>'
        )
        w = e.weight_sqnr_db
        if w is not None and not math.isnan(w):
            wx = x(w)
            parts.append(
                f'<path d="M{wx:.1f} {mid - 7:.1f} l6 7 l-6 7 l-6 -7 z" fill="{INK}" stroke="#fff" stroke-width="1">'
                f"<title>{_e(e.name)}: weight {fmt_db(w)} dB</title></path>"
            )
    for j, name in enumerate(skipped):
        i = len(shown) + j
        ry = y0 + i * row_h
        label(i, "–", name, MUTED, f"{name}: kept in float")
        parts.append(
            f'<rect x="{left}" y="{ry + 4}" width="{plot_w:.1f}" height="{row_h - 8}" fill="#fff" fill-opacity="0.6" stroke="{MUTED}" stroke-dasharray="3 3"/>'
        )
        parts.append(
            f'<text x="{left + 8}" y="{ry + row_h / 2 + 4:.1f}" fill="{MUTED}" font-style="italic" font-size="11">kept in float (skipped, not quantized)</text>'
        )
    parts.append(f'<line x1="{left}" x2="{left}" y1="{y0}" y2="{y1}" stroke="#999"/>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{y1 + 20}" text-anchor="middle" fill="{MUTED}">SQNR (dB), higher is better'
        + (" · ∞ = no error at all, drawn at the axis end" if has_inf else "")
        + "</text>"
    )
    if more:
        parts.append(
            f'<text x="{left}" y="{y1 + 44}" fill="{INK}">… and {more} more layer{"s" if more != 1 else ""} '
            "(better SQNR; all are listed in the table below)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- page
@dataclass
class LatencyRow:
    label: str
    colour: str
    stat: LatencyStat
    vs_eager: float | None


def _latency_rows(result: RunResult) -> list[LatencyRow]:
    eager = {s.batch_size: s.median_ms for s in result.fp32.latency}
    rows = []
    for order, (name, colour, stats) in enumerate(_latency_series(result)):
        for s in stats:
            base = eager.get(s.batch_size)
            ratio = base / s.median_ms if base and s.median_ms and name != "FP32 eager" else None
            rows.append((s.batch_size, order, LatencyRow(name, colour, s, ratio)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def _slower_notes(result: RunResult) -> list[str]:
    """One plain note when INT8 is not faster than an FP32 baseline at some batch size."""
    int8 = {s.batch_size: s.median_ms for s in result.int8.latency}
    found = []
    for label, stats in (("FP32 eager", result.fp32.latency), ("frozen TorchScript FP32", result.fp32_deploy)):
        slower = sorted(s.batch_size for s in stats if s.batch_size in int8 and int8[s.batch_size] >= s.median_ms)
        if slower:
            found.append(f"{label} at batch {', '.join(map(str, slower))}")
    if not found:
        return []
    return [
        f"INT8 is not faster than {' or '.join(found)} on this machine. "
        "Check the CPU's VNNI/AMX support and the thread count in the environment table, "
        "and that the layers that carry the work were quantized (coverage below)."
    ]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms=fmt_ms,
        pct=fmt_pct,
        db=fmt_db,
        ratio=fmt_ratio,
        size=fmt_size,
        seconds=fmt_seconds,
        sci=fmt_sci,
        num=fmt_num,
        sqnr_class=sqnr_class,
        breakable=breakable,
    )
    return env


def _recipe_toml(result: RunResult) -> str:
    try:
        return result.recipe.to_toml()
    except Exception as exc:  # a report must still render; say why the recipe is missing
        return f"# the recipe could not be written as TOML: {type(exc).__name__}: {exc}"


def render_report(result: RunResult, *, generated: datetime | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts, no external files)."""
    generated = generated or datetime.now().astimezone()
    layers = sorted_layers(result.layers)
    kept = result.coverage.kept_float
    context: dict[str, Any] = {
        "r": result,
        "model_name": result.model_name,
        "generated": generated.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "mode": mode_label(result),
        "headline": headline(result),
        "warnings": _warnings(result),
        "cards": _cards(result),
        "latency_svg": Markup(latency_chart_svg(result)),
        "latency_rows": _latency_rows(result),
        "slower_notes": _slower_notes(result),
        "layer_svg": Markup(layer_chart_svg(result.layers, result.skipped)),
        "layers": layers,
        "kept": kept,
        "environment": [(str(k), "" if v is None else str(v)) for k, v in result.environment.items()],
        "recipe_toml": _recipe_toml(result),
        "palette": {
            "eager": FP32_EAGER_COLOUR,
            "script": FP32_SCRIPT_COLOUR,
            "int8": INT8_COLOUR,
            "good": GOOD_COLOUR,
            "warn": WARN_COLOUR,
            "bad": BAD_COLOUR,
        },
    }
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def write_report(result: RunResult, path: str | Path) -> Path:
    """Render the report and write it to ``path`` atomically; an earlier file survives any failure.

    A full or read-only disk, or a refused permission, is an :class:`ExportError`
    naming the problem and the fix (see :func:`~qstudio.core.fileio.atomic_write_bytes`).
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder", "give a file name for the report, e.g. report.html")
    atomic_write_bytes(path, render_report(result).encode("utf-8"), "report")
    return path
