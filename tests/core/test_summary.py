"""One summary of a run (qstudio.core.summary): the report, the window and the CLI say the same thing.

A real demo run on random data is summarized, then rendered by all three: one
RANDOM DATA notice each, one SQNR band at exactly 30 dB, one INT8 colour, and
"no evaluation data" known from the run's data, not from a sentence.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re

import pytest

from qstudio import console
from qstudio.core import report, summary
from qstudio.core.compare import LayerError
from qstudio.core.loading import LoadedModel
from qstudio.core.pipeline import RunResult, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, Recipe
from qstudio.core.summary import CRITICAL, PALETTE, WARNING, sqnr_band, summarize

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the window's charts, drawn offscreen in two tests


@pytest.fixture(scope="module")
def random_run(demo: LoadedModel) -> RunResult:
    """The demo model calibrated on random data with no evaluation data: both flagged by the engine."""
    recipe = Recipe(
        mode="fx", calib=DataSource(kind="random"), benchmark=BenchmarkSettings(batch_sizes=[1], warmup=2, iters=5)
    )
    recipe.settings.calib_batches = 1
    return run(run_recipe(recipe, demo))


def count(text: str, needle: str) -> int:
    return " ".join(text.split()).count(needle)


# --------------------------------------------------------------------------- one warning list
def test_random_data_run_has_one_random_data_notice_everywhere(random_run: RunResult, capsys) -> None:
    s = summarize(random_run)
    assert random_run.random_data and s.random_data
    assert [n.code for n in s.notices].count("random-data") == 1
    assert sum("RANDOM DATA" in n.text for n in s.notices) == 1
    # the report's warnings box (it used to add a second bullet of its own)
    html = report.render_report(random_run)
    box = html[html.index('id="warnings"') : html.index("</section>", html.index('id="warnings"'))]
    assert count(box, "RANDOM DATA") == 1
    # the CLI
    console.print_result(random_run, argparse.Namespace())
    assert count(capsys.readouterr().err, "RANDOM DATA") == 1
    # the window's banner
    pytest.importorskip("PySide6")
    from qstudio.ui.results_panel import banner_text

    assert count(banner_text(random_run), "RANDOM DATA") == 1


def test_notices_are_typed_said_once_and_loudest_first(random_run: RunResult) -> None:
    s = summarize(random_run)
    texts = [n.text for n in s.notices]
    assert len(texts) == len(set(texts))  # no duplicates
    assert set(random_run.warnings) | set(random_run.coverage.warnings) <= set(texts)  # nothing the run said is lost
    for v in random_run.verdicts:
        assert [(n.severity, n.code) for n in s.notices if n.text == v.text] == [(v.severity, v.code)]
    ranks = [summary.SEVERITIES.index(n.severity) for n in s.notices]
    assert ranks == sorted(ranks)  # critical first
    assert all(n.severity in summary.SEVERITIES and n.colour == PALETTE[n.severity] for n in s.notices)
    # the pipeline writes the same two sentences the summary says: deduplicated, not doubled
    assert summary.RANDOM_DATA_TEXT in random_run.warnings and summary.NO_EVAL_DATA_TEXT in random_run.warnings


def test_no_eval_data_is_a_typed_flag_not_a_sentence(random_run: RunResult) -> None:
    s = summarize(random_run)
    assert s.no_eval_data and s.has("no-eval-data")
    assert s.card("accuracy").severity == WARNING
    # without the sentence in the warnings, the run's data still says so
    silent = dataclasses.replace(random_run, warnings=[])
    assert summarize(silent).no_eval_data and summarize(silent).has("no-eval-data")
    # with the sentence but evaluation data of its own, it is not flagged: nothing matches the words
    evaluated = dataclasses.replace(random_run, random_data=False)
    evaluated.recipe = dataclasses.replace(random_run.recipe, eval=DataSource(kind="random"))
    e = summarize(evaluated)
    assert not e.no_eval_data and not e.has("no-eval-data")
    assert [n.code for n in e.notices if n.text == summary.NO_EVAL_DATA_TEXT] == ["run"]


def test_cards_and_headline_come_from_the_run(random_run: RunResult) -> None:
    s = summarize(random_run)
    assert [c.key for c in s.cards] == ["accuracy", "latency", "size", "coverage"]
    assert s.headline == report.headline(random_run)
    latency = s.card("latency")
    assert latency.title == f"Latency  batch {random_run.int8.latency[0].batch_size}"
    assert summary.fmt_ratio(random_run.speedup) in latency.detail
    assert (latency.severity == CRITICAL) == s.int8_slower
    assert s.int8_slower == (min(random_run.speedup, random_run.speedup_vs_deploy or math.inf) < 1)
    # the fastest FP32 path measured at that batch size, named in the card
    batch = random_run.int8.latency[0].batch_size
    fp32 = [("FP32 eager", random_run.fp32.latency_ms)]
    fp32 += [("frozen TorchScript FP32", st.median_ms) for st in random_run.fp32_deploy if st.batch_size == batch]
    assert s.fastest_fp32 == min(fp32, key=lambda kv: kv[1])
    assert s.fastest_fp32[0] in latency.tooltip
    html = report.render_report(random_run)
    for card in (*s.cards, *s.more_cards):
        assert f'<div class="card {card.severity}"' in html and f'<div class="v">{card.value}</div>' in html


# --------------------------------------------------------------------------- one set of bands
AT_THE_EDGES = [
    LayerError("at_30", "Conv2d", 45.0, 30.0),
    LayerError("below_30", "Conv2d", 45.0, 29.99),
    LayerError("at_20", "Conv2d", 45.0, 20.0),
    LayerError("below_20", "Conv2d", 45.0, 19.99),
]
EXPECTED_BANDS = {"at_30": "good", "below_30": "fair", "at_20": "fair", "below_20": "poor"}


def test_sqnr_bands_decide_30_db_once() -> None:
    assert [sqnr_band(e.activation_sqnr_db)[0] for e in AT_THE_EDGES] == list(EXPECTED_BANDS.values())
    assert sqnr_band(30.0) == ("good", PALETTE["good"])
    assert sqnr_band(math.inf)[0] == "good" and sqnr_band(-math.inf)[0] == "poor"
    assert sqnr_band(None)[0] == sqnr_band(math.nan)[0] == "unknown"


def test_a_layer_at_30_db_has_one_band_in_report_window_and_cli(random_run: RunResult, qapp, capsys) -> None:
    pytest.importorskip("PySide6")
    from qstudio.ui.charts import LayerErrorChart

    colours = {name: PALETTE[band] for name, band in EXPECTED_BANDS.items()}
    # the report: bar colour in the SVG, CSS class of the table cell
    svg = report.layer_chart_svg(AT_THE_EDGES, [])
    for name, colour in colours.items():
        assert re.search(rf'fill="{colour}" rx="1"><title>{name}: activation', svg), name
    html = report.render_report(dataclasses.replace(random_run, layers=AT_THE_EDGES))
    css = {"good": "good", "fair": "warn", "poor": "bad"}
    for e in AT_THE_EDGES:
        cell = f'<td class="n {css[EXPECTED_BANDS[e.name]]}">{summary.fmt_db(e.activation_sqnr_db)}</td>'
        assert cell in html, e.name
    # the window: the chart's brushes
    chart = LayerErrorChart()
    chart.set_layers(AT_THE_EDGES, [])
    assert [b.color().name() for b in chart.bars._brushes] == [colours[e.name] for e in AT_THE_EDGES]
    chart.deleteLater()
    # the CLI: the worst-layers table names the band
    console.print_layers(AT_THE_EDGES)
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("│")}
    for name, band in EXPECTED_BANDS.items():
        assert rows[name].split("│")[-2].strip() == band, rows[name]


# --------------------------------------------------------------------------- one palette
def test_int8_and_fp32_colours_are_the_same_in_report_and_window(random_run: RunResult, qapp) -> None:
    pytest.importorskip("PySide6")
    import pyqtgraph as pg

    from qstudio.ui.charts import LatencyChart

    svg = report.latency_chart_svg(random_run)
    chart = LatencyChart()
    chart.set_result(random_run)
    window = {bar.name(): pg.mkBrush(bar.opts["brush"]).color().name() for bar in chart.bars}
    for key, label in summary.LATENCY_SERIES:
        drawn = re.findall(rf'fill="(#[0-9a-f]{{6}})"><title>{re.escape(label)}, batch', svg)
        assert drawn and set(drawn) == {PALETTE[key]}, label
        assert window[label] == PALETTE[key], label
    assert PALETTE["int8"] == "#e07a1f"  # orange in both (the window's INT8 was teal)
    chart.deleteLater()
