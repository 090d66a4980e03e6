"""The report's charts as inline SVG: latency per batch size and per-layer SQNR.

Drawn here, with no Qt and no scripts, so the page needs nothing but a
browser.  Colours and SQNR bands are :mod:`qstudio.core.summary`'s, the same
as the window's charts.  Every string placed in SVG (module names come from
user files) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from markupsafe import escape

from qstudio.core.compare import LayerError
from qstudio.core.formatting import _finite, fmt_db, fmt_ms
from qstudio.core.pipeline import RunResult
from qstudio.core.summary import PALETTE, SQNR_BANDS, latency_series, sqnr_band

MAX_CHART_LAYERS = 40
INK = PALETTE["ink"]
MUTED = PALETTE["muted"]
GRID = "#e3e3e3"
FLOAT = PALETTE["float"]  # layers kept in float
GOOD = PALETTE["good"]  # the activation bar in the legend

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
_MONO_CHAR_W = 6.7  # px per character of 11px monospace, to size label columns


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
def _latency_series(result: RunResult) -> list[tuple[str, str, list]]:
    """The measured series (label, colour, stats) in legend order; a series with no figures is left out."""
    return [(s.label, s.colour, list(s.stats)) for s in latency_series(result) if s.stats]


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
    parts.append(f'<rect x="{lx}" y="9" width="14" height="12" fill="{GOOD}"/>')
    parts.append(f'<text x="{lx + 20}" y="19.5" fill="{INK}">activation SQNR (bar)</text>')
    lx += 175
    parts.append(f'<path d="M{lx + 6} 8 l6 7 l-6 7 l-6 -7 z" fill="{INK}"/>')
    parts.append(f'<text x="{lx + 18}" y="19.5" fill="{INK}">weight SQNR</text>')
    lx += 120
    for band in SQNR_BANDS:
        parts.append(f'<rect x="{lx}" y="9" width="12" height="12" fill="{band.colour}"/>')
        parts.append(f'<text x="{lx + 17}" y="19.5" fill="{MUTED}">{band.label}</text>')
        lx += 30 + len(band.label) * 6.4
    if skipped:
        parts.append(
            f'<rect x="{lx}" y="9" width="18" height="12" fill="none" stroke="{FLOAT}" stroke-dasharray="3 2"/>'
        )
        parts.append(f'<text x="{lx + 24}" y="19.5" fill="{MUTED}">kept in float</text>')
    # background zones, stripes, grid
    for band in SQNR_BANDS:
        lo, hi = max(band.low, 0.0), min(band.high, x_max)
        parts.append(
            f'<rect x="{x(lo):.1f}" y="{y0}" width="{x(hi) - x(lo):.1f}" height="{plot_h}" fill="{band.colour}" opacity="0.07"/>'
        )
    for i in range(1, n_rows, 2):
        parts.append(f'<rect x="0" y="{y0 + i * row_h}" width="{width}" height="{row_h}" fill="#000" opacity="0.035"/>')
    for v in range(0, int(x_max) + 1, 10):
        xx = x(v)
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0 - 4}" y2="{y1}" stroke="{GRID}"/>')
        parts.append(f'<text x="{xx:.1f}" y="{y0 - 9}" text-anchor="middle" fill="{MUTED}">{v}</text>')
    for band in SQNR_BANDS[1:]:  # a dashed line where each band above the lowest begins
        parts.append(
            f'<line x1="{x(band.low):.1f}" x2="{x(band.low):.1f}" y1="{y0}" y2="{y1}" stroke="{band.colour}" stroke-dasharray="4 3"/>'
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
                f'<rect x="{left}" y="{ry + 4}" width="{max(end - left, 1.5):.1f}" height="{row_h - 8}" fill="{sqnr_band(a)[1]}" rx="1">'
                f"<title>{_e(e.name)}: activation {fmt_db(a)} dB, weight {fmt_db(e.weight_sqnr_db)} dB</title></rect>"
            )
        else:
            parts.append(
                f'<text x="{left + 6}" y="{mid + 4:.1f}" fill="{MUTED}" font-size="11" font-style="italic">activation not captured</text>'
            )
        parts.append(
            f'<text x="{width - 8}" y="{mid + 4:.1f}" text-anchor="end" font-size="11.5" font-weight="600" '
            f'fill="{sqnr_band(a)[1]}">{fmt_db(a)}</text>'
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
            f'<rect x="{left}" y="{ry + 4}" width="{plot_w:.1f}" height="{row_h - 8}" fill="#fff" fill-opacity="0.6" stroke="{FLOAT}" stroke-dasharray="3 3"/>'
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


# --------------------------------------------------------------------------- search: Pareto chart
def pareto_chart_svg(result: object) -> str:
    """A search's trials: quality (y) against latency (x), the Pareto frontier, the budget line, the winner.

    ``result`` is a :class:`~qstudio.core.search.SearchResult`.  Trials that
    were not timed (pruned, failed) have no point; the caption counts them.
    """
    trials = [t for t in result.trials if t.state == "complete" and t.latency_ms and t.quality is not None]
    if not trials:
        return _empty_chart("No trial finished with a latency to plot.")
    front = set(result.pareto)
    floor = result.budget_floor
    xs = [t.latency_ms for t in trials]
    ys = [t.quality * 100 for t in trials] + ([floor * 100] if floor is not None else [])
    x_lo, x_hi = 0.0, max(xs) * 1.08
    y_lo, y_hi = min(ys), max(ys)
    pad = max((y_hi - y_lo) * 0.12, 0.25)
    y_lo, y_hi = y_lo - pad, min(y_hi + pad, 100.0 + pad)
    width, left, right, top_pad, plot_h, bottom = 940, 70, 24, 44, 300, 50
    height = top_pad + plot_h + bottom
    plot_w = width - left - right

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top_pad + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h

    metric = result.metric
    parts = [_svg_open(width, height, f"Search trials: {metric} against latency, with the Pareto frontier")]
    xstep = _nice_step(x_hi - x_lo)
    v = 0.0
    while v <= x_hi + 1e-9:
        parts.append(
            f'<line x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{top_pad}" y2="{top_pad + plot_h}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{px(v):.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" fill="{MUTED}">{_tick_label(v, xstep)}</text>'
        )
        v += xstep
    ystep = _nice_step(y_hi - y_lo)
    v = math.ceil(y_lo / ystep) * ystep
    while v <= y_hi + 1e-9:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 8}" y="{py(v) + 4:.1f}" text-anchor="end" fill="{MUTED}">{_tick_label(v, ystep)}</text>'
        )
        v += ystep
    if floor is not None and y_lo <= floor * 100 <= y_hi:
        yb = py(floor * 100)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{yb:.1f}" y2="{yb:.1f}" stroke="{PALETTE["poor"]}" '
            'stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{width - right - 4}" y="{yb - 5:.1f}" text-anchor="end" fill="{PALETTE["poor"]}">'
            f"budget: {result.max_drop:g} points below FP32</text>"
        )
    pts = sorted((result.trials[i] for i in front), key=lambda t: t.latency_ms or 0.0)
    if len(pts) > 1:
        path = " ".join(f"{px(t.latency_ms):.1f},{py(t.quality * 100):.1f}" for t in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{INK}" stroke-width="1.4"/>')
    for t in trials:
        colour = PALETTE["good"] if t.within_budget else MUTED
        x, y = px(t.latency_ms), py(t.quality * 100)
        tip = _e(
            f"trial {t.number}: {t.describe()}: {t.quality * 100:.2f}% {metric}, {t.latency_ms:.2f} ms, "
            f"{t.speedup or 0:.2f}x vs FP32 eager"
        )
        shape = (
            f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}">'
            if t.number == 0
            else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
        )
        close = "</rect>" if t.number == 0 else "</circle>"
        parts.append(f"{shape}<title>{tip}</title>{close}")
        if t is result.best:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="10" fill="none" stroke="{PALETTE["int8"]}" stroke-width="2.5"/>'
            )
            parts.append(
                f'<text x="{x + 13:.1f}" y="{y - 8:.1f}" fill="{INK}" font-weight="600">best: trial {t.number}</text>'
            )
    missing = len([t for t in result.trials if t.state != "complete"])
    caption = "latency of the deployed INT8 model, ms (the plain run's FP32 eager ms / the trial's speedup)"
    if missing:
        caption += f"; {missing} trial{'s' if missing != 1 else ''} not timed (pruned or failed)"
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" fill="{MUTED}">{_e(caption)}</text>'
    )
    cy = top_pad + plot_h / 2
    parts.append(
        f'<text x="18" y="{cy}" text-anchor="middle" fill="{INK}" transform="rotate(-90 18 {cy})">{_e(metric)} (%)</text>'
    )
    parts.append(
        f'<text x="{left}" y="24" fill="{MUTED}">square: the plain run · green: within budget · '
        "line: the Pareto frontier · ring: the winner</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
