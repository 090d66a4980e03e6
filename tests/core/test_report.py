"""The HTML report, rendered from a real RunResult of a real quantization run (no mocks)."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from collections import OrderedDict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qstudio.core import report
from qstudio.core.compare import LayerError
from qstudio.core.errors import ExportError
from qstudio.core.loading import LoadedModel
from qstudio.core.pipeline import RunResult, run_recipe
from qstudio.core.progress import run
from qstudio.core.recipe import BenchmarkSettings, DataSource, ModelSource, Recipe

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SVG_LEAVES = {"rect", "line", "path", "circle", "polyline", "polygon"}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 8, 3, padding=1),
            stem_bn=nn.BatchNorm2d(8),
            stem_relu=nn.ReLU(),
            conv=nn.Conv2d(8, 16, 3, padding=1, stride=2),
            conv_bn=nn.BatchNorm2d(16),
            conv_relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(16, 10),
        )
    ).eval()


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    folder = tmp_path_factory.mktemp("report_data")
    calib = folder / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((32, 3, 32, 32), dtype=np.float32))
    loaded = LoadedModel(
        module=tiny_model(),
        source=ModelSource(spec="test"),
        kind="factory",
        name="tiny",
        scripted=False,
        warnings=[],
        input_shape=[1, 3, 32, 32],
        input_dtype="float32",
    )
    recipe = Recipe(
        mode="fx",
        calib=DataSource(kind="tensor", path=str(calib)),
        benchmark=BenchmarkSettings(batch_sizes=[1, 4], warmup=2, iters=5),
    )
    recipe.settings.calib_batches = 2
    recipe.settings.skip_worst = 1  # exercises the skipped-layer and before/after parts of the page
    return run(run_recipe(recipe, loaded))


@pytest.fixture(scope="module")
def page(result: RunResult) -> str:
    return report.render_report(result)


class Walker(HTMLParser):
    """Walk the page, checking every non-void element is closed in order, and collect what tests need."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self.by_id: dict[str, str] = {}
        self._capture: list[tuple[str, int, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        ident = dict(attrs).get("id")
        if ident:
            self._capture.append((ident, len(self.stack), []))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        while self._capture and self._capture[-1][1] == len(self.stack):
            ident, _, text = self._capture.pop()
            self.by_id[ident] = "".join(text)

    def handle_data(self, data: str) -> None:
        for _, _, text in self._capture:
            text.append(data)


def walk(html: str) -> Walker:
    w = Walker()
    w.feed(html)
    w.close()
    return w


# --------------------------------------------------------------------------- structure
def test_page_parses_and_every_element_is_closed(page: str) -> None:
    w = walk(page)
    assert w.errors == []
    assert w.stack == []
    assert page.startswith("<!DOCTYPE html>")
    assert w.tags.count("style") == 1
    assert "script" not in w.tags  # no JavaScript at all
    for section in ("headline", "summary", "latency", "layers", "coverage", "fusion", "environment", "recipe"):
        assert section in w.by_id, section


def test_page_has_both_inline_svg_charts(page: str, result: RunResult) -> None:
    w = walk(page)
    assert w.tags.count("svg") == 2
    latency = report.latency_chart_svg(result)
    layers = report.layer_chart_svg(result.layers, result.skipped)
    assert latency in page and layers in page
    for label in ("FP32 eager", "FP32 TorchScript (frozen)", "INT8", "batch 1", "batch 4", "latency per call (ms)"):
        assert label in latency
    for stat in [*result.fp32.latency, *result.fp32_deploy, *result.int8.latency]:
        assert f">{report.fmt_ms(stat.median_ms)}</text>" in latency  # labelled median
    for e in result.layers:
        assert f">{e.name}</text>" in layers
        assert f">{report.fmt_db(e.activation_sqnr_db)}</text>" in layers
    assert result.skipped, "skip_worst=1 keeps one layer in float"
    for name in result.skipped:
        assert name in layers and "kept in float" in layers


def test_title_mode_and_sections_follow_the_result(page: str, result: RunResult) -> None:
    w = walk(page)
    assert "qstudio report: tiny" in page
    assert "PTQ FX" in page
    assert result.recipe.to_toml().strip() in w.by_id["recipe"]
    for key, value in result.environment.items():
        assert f"<th>{key}</th><td>{value}</td>" in page
    assert "cpu_capability" in result.environment and "vnni" in result.environment
    for group in result.groups:
        assert " + ".join(f"<code>{m}</code>" for m in group) in page
    assert result.fusion_check is not None
    assert report.fmt_sci(result.fusion_check.max_abs_diff) in w.by_id["fusion"]
    for row in result.coverage.rows:
        assert f'<td>{row.type}</td><td class="n">{row.total}</td><td class="n">{row.quantized}</td>' in page


# --------------------------------------------------------------------------- figures
def test_headline_figures_are_the_results(page: str, result: RunResult) -> None:
    text = walk(page).by_id["headline"]
    assert text == report.headline(result)
    speed = result.speedup
    assert speed is not None
    m = re.search(r"INT8 is ([\d.]+)x (faster|slower) than FP32 eager", text)
    assert m, text
    shown = float(m.group(1))
    assert shown == pytest.approx(speed if m.group(2) == "faster" else 1 / speed, abs=0.051)
    assert f"{report.speed_phrase(speed)} than FP32 eager" in text
    vs_deploy = result.speedup_vs_deploy
    assert vs_deploy is not None
    assert f"({report.speed_phrase(vs_deploy)} vs frozen TorchScript FP32)" in text
    assert f"at batch {min(s.batch_size for s in result.int8.latency)}" in text
    ratio = result.fp32.size_mb / result.int8.size_mb
    assert report.size_phrase(ratio) in text
    # unlabeled data: agreement, not accuracy
    assert result.fp32.accuracy is None
    assert f"agree with FP32 on {100 * result.evaluation.agreement:.1f}% of {result.evaluation.samples} samples" in text
    assert "top-1" not in text
    summary = walk(page).by_id["summary"]
    assert f"{report.fmt_db(result.evaluation.output_sqnr_db)} dB" in summary
    assert report.fmt_ratio(speed) in summary


def test_labeled_result_headline_shows_accuracy(result: RunResult) -> None:
    ev = dataclasses.replace(result.evaluation, fp32_accuracy=0.912, int8_accuracy=0.909)
    labeled = dataclasses.replace(
        result,
        evaluation=ev,
        fp32=dataclasses.replace(result.fp32, accuracy=0.912),
        int8=dataclasses.replace(result.int8, accuracy=0.909),
    )
    text = walk(report.render_report(labeled)).by_id["headline"]
    assert text.endswith("top-1 91.2% → 90.9%.")


def test_missing_figures_are_left_out_not_invented(result: RunResult) -> None:
    bare = dataclasses.replace(result, fp32_deploy=[], fusion_check=None, groups=[], export=None, history=[])
    html = report.render_report(bare)
    assert walk(html).errors == []
    text = walk(html).by_id["headline"]
    assert "TorchScript" not in text
    assert "No FP32 TorchScript baseline was measured" in html
    assert "FP32 TorchScript (frozen)" not in report.latency_chart_svg(bare)
    unmeasured = dataclasses.replace(
        bare,
        fp32=dataclasses.replace(result.fp32, latency=[]),
        int8=dataclasses.replace(result.int8, latency=[]),
    )
    html = report.render_report(unmeasured)
    assert "No latency was measured" in html
    assert "faster" not in walk(html).by_id["headline"]


def test_sqnr_formatting_and_colour_classes() -> None:
    assert report.fmt_db(math.inf) == "∞"
    assert report.fmt_db(None) == "—"
    assert report.fmt_db(-math.inf) == "−∞"
    assert report.fmt_db(38.6157) == "38.6"
    assert [report.sqnr_class(v) for v in (12.0, 25.0, 35.0, math.inf, None)] == ["bad", "warn", "good", "good", "na"]
    layers = [LayerError(f"blocks.{i}.conv", "ConvReLU2d", 45.0, float(i)) for i in range(50)]
    layers.append(LayerError("exact", "Linear", math.inf, math.inf))
    layers.append(LayerError("no_act", "Linear", 40.0, None))
    svg = report.layer_chart_svg(layers, ["head"])
    assert "and 12 more layers" in svg
    assert ">blocks.0.conv</text>" in svg and ">blocks.39.conv</text>" in svg and ">blocks.40.conv</text>" not in svg
    assert "head" in svg and "kept in float" in svg
    small = report.layer_chart_svg([layers[-2]], [])
    assert ">∞</text>" in small


def test_layer_table_is_sorted_worst_first(page: str, result: RunResult) -> None:
    body = walk(page).by_id["layers"]
    positions = [body.index(e.name + e.type) for e in report.sorted_layers(result.layers)]
    assert positions == sorted(positions)
    assert "—" in report.render_report(dataclasses.replace(result, layers=[LayerError("x", "Linear", None, None)]))


# --------------------------------------------------------------------------- safety
def test_user_strings_are_escaped(result: RunResult) -> None:
    evil = '<script>alert("x")</script>'
    hostile = dataclasses.replace(
        result,
        model_name=evil,
        layers=[LayerError('<img src=x onerror="alert(1)">', "Conv2d", 30.0, 25.0)],
        skipped=["<b>skip</b>"],
        warnings=["<iframe>"],
        environment={"<k>": "<v>"},
    )
    html = report.render_report(hostile)
    w = walk(html)
    assert w.errors == []
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert w.by_id["headline"]  # still renders
    assert "<img" not in html and "<iframe" not in html and "<b>skip" not in html
    assert "script" not in w.tags and "img" not in w.tags and "iframe" not in w.tags
    assert "qstudio report: " + evil in html.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", '"')


def test_page_references_no_external_urls(page: str) -> None:
    w = walk(page)
    refs = [
        (tag, k, v or "") for tag, k, v in w.attrs if k in ("src", "href", "xlink:href", "action", "srcset", "poster")
    ]
    assert not [r for r in refs if re.match(r"\s*(https?:)?//", r[2], re.I)]
    assert "link" not in w.tags and "img" not in w.tags and "iframe" not in w.tags
    assert "@import" not in page and "url(" not in page


# --------------------------------------------------------------------------- warnings
def test_random_data_shows_a_loud_warning(result: RunResult) -> None:
    html = report.render_report(dataclasses.replace(result, random_data=True, warnings=[]))
    box = walk(html).by_id.get("warnings", "")
    assert "RANDOM DATA" in box and "do not describe real inputs" in box


def test_result_and_coverage_warnings_are_in_the_box(result: RunResult) -> None:
    cov = dataclasses.replace(result.coverage, warnings=["NOTHING WAS QUANTIZED: test"])
    html = report.render_report(dataclasses.replace(result, coverage=cov, warnings=["first warning"]))
    box = walk(html).by_id["warnings"]
    assert "first warning" in box and "NOTHING WAS QUANTIZED: test" in box
    # nothing to warn about: no warnings, no verdicts, real data and evaluation data of its own (the typed sources)
    quiet = dataclasses.replace(result, warnings=[], verdicts=[], random_data=False)
    quiet.recipe = dataclasses.replace(result.recipe, eval=result.recipe.calib)
    clean = report.render_report(quiet)
    assert 'id="warnings"' not in clean


# --------------------------------------------------------------------------- writing
def test_write_report_writes_the_page(tmp_path: Path, result: RunResult) -> None:
    out = report.write_report(result, tmp_path / "report.html")
    assert out == tmp_path / "report.html"
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and walk(html).errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_report_bad_locations_are_clear(tmp_path: Path, result: RunResult) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        report.write_report(result, tmp_path / "missing" / "report.html")
    with pytest.raises(ExportError, match="is a folder"):
        report.write_report(result, tmp_path)


def test_report_module_does_not_import_qt() -> None:
    code = (
        "import sys, qstudio.core.report\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'superqt', 'qtpy')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
