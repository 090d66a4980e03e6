"""The HTML report: one self-contained page a stakeholder can read, print or mail.

Everything on the page comes from a :class:`~qstudio.core.pipeline.RunResult`
and what :func:`qstudio.core.summary.summarize` makes of it (headline, cards,
notices, colours, SQNR bands): this module only renders.  A figure the run
did not produce (no FP32 TorchScript baseline, no labels, no QAT) is shown as
"—" or its section is left out.  Charts are inline SVG
(:mod:`qstudio.core.report_charts`), so the page needs no network, no scripts
and no Qt.  Module names, paths and the model name come from user files, so
the template is autoescaped and every string placed in SVG is escaped too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from qstudio.core.errors import ExportError
from qstudio.core.fileio import atomic_write_bytes
from qstudio.core.flows import mode_traits
from qstudio.core.formatting import (
    fmt_db,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    fmt_sci,
    fmt_seconds,
    fmt_size,
)
from qstudio.core.latency_figures import runtime_batch_sizes, runtime_rows
from qstudio.core.pipeline import RunResult
from qstudio.core.report_charts import MAX_CHART_LAYERS, latency_chart_svg, layer_chart_svg, sorted_layers
from qstudio.core.summary import PALETTE, headline, mode_label, size_phrase, speed_phrase, sqnr_band, summarize

__all__ = [
    "MAX_CHART_LAYERS",
    "TEMPLATE_DIR",
    "TEMPLATE_NAME",
    "breakable",
    "fmt_db",
    "fmt_ms",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "fmt_sci",
    "fmt_seconds",
    "fmt_size",
    "headline",
    "latency_chart_svg",
    "layer_chart_svg",
    "mode_label",
    "render_report",
    "size_phrase",
    "sorted_layers",
    "speed_phrase",
    "sqnr_class",
    "write_report",
    "write_search_report",
]

TEMPLATE_NAME = "report.html.j2"
TEMPLATE_DIR = Path(__file__).parent / "templates"

#: The CSS class of each SQNR band (the template colours ``good``, ``warn`` and ``bad`` with the band's colour).
_BAND_CLASS = {"poor": "bad", "fair": "warn", "good": "good"}


def breakable(name: object) -> Markup:
    """Escape a module name and let the browser wrap it after dots, not mid-word."""
    return Markup("<wbr>").join(escape(part) for part in _split_keep_dots(str(name)))


def _split_keep_dots(name: str) -> list[str]:
    parts = name.split(".")
    return [p + "." for p in parts[:-1]] + parts[-1:]


def sqnr_class(v: float | None) -> str:
    """CSS class for an SQNR figure, by :func:`~qstudio.core.summary.sqnr_band`: bad, warn, good, or na (no figure)."""
    return _BAND_CLASS.get(sqnr_band(v)[0], "na")


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
        lines=lambda text: str(text).split("\n"),
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
    context: dict[str, Any] = {
        "r": result,
        "s": summarize(result),
        "model_name": result.model_name,
        "generated": generated.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "mode": mode_label(result),
        "latency_svg": Markup(latency_chart_svg(result)),
        "layer_svg": Markup(layer_chart_svg(result.layers, result.skipped)),
        "layers": sorted_layers(result.layers),
        "kept": result.coverage.kept_float,
        "environment": [(str(k), "" if v is None else str(v)) for k, v in result.environment.items()],
        "recipe_toml": _recipe_toml(result),
        "palette": PALETTE,
        "traits": mode_traits(result.recipe.mode),
        "runtimes": runtime_rows(result),
        "runtime_sizes": runtime_batch_sizes(result),
        "runtimes_labelled": any(f.accuracy is not None for f in result.runtimes),
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


SEARCH_TEMPLATE_NAME = "search_report.html.j2"


def render_search_report(result: Any, *, generated: datetime | None = None) -> str:
    """A search's page: the summary, the Pareto chart, every trial, the winner's recipe (a SearchResult)."""
    from qstudio.core.report_charts import pareto_chart_svg

    generated = generated or datetime.now().astimezone()
    final = result.final
    final_line = plain_line = ""
    if result.remeasured and final is not None and final.speedup_vs_fp32_best and final.deployed is not None:
        q = final.deployed.accuracy if result.metric == "accuracy" else final.deployed.agreement
        final_line = (
            f"{result.metric} {fmt_pct(q)}, {fmt_ratio(final.speedup_vs_fp32_best)} vs "
            f"{final.fp32_best.label} (the fastest FP32 runtime measured), {fmt_ratio(final.speedup)} vs FP32 eager"
        )
    best, plain = result.best, result.plain
    if best is not None and plain is not None and best is not plain and best.speedup and plain.speedup:
        plain_line = (
            f"The plain run ({plain.describe()}) reached {fmt_pct(plain.quality)} at {fmt_ratio(plain.speedup)}"
            f" ({'within' if plain.within_budget else 'outside'} the budget); the winner runs at "
            f"{fmt_ratio(best.speedup / plain.speedup)} its speed."
        )
    drops = [c if (c := result.points_vs_fp32(t)) == "—" else f"{c} pt" for t in result.trials]
    recipe = final.recipe if final is not None else (best.recipe if best is not None else None)
    context = {
        "s": result,
        "generated": generated.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "done": len(result.trials),
        "stopped": {"trials": "all trials done", "time": "time budget reached", "cancelled": "cancelled"}.get(
            result.stopped, result.stopped
        ),
        "final_line": final_line,
        "final_data": "hold-out data" if result.holdout is not None else "the evaluation data (no hold-out data given)",
        "plain_line": plain_line,
        "pareto_svg": Markup(pareto_chart_svg(result)),
        "front": set(result.pareto),
        "drops": drops,
        "recipe_toml": recipe.to_toml() if recipe is not None else "",
        "palette": PALETTE,
    }
    return _environment().get_template(SEARCH_TEMPLATE_NAME).render(**context)


def write_search_report(result: Any, path: str | Path) -> Path:
    """Render a search's report and write it atomically (see :func:`write_report`)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder", "give a file name for the report, e.g. search.html")
    atomic_write_bytes(path, render_search_report(result).encode("utf-8"), "report")
    return path
