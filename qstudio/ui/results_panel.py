"""The results side of the window: summary cards, warnings, charts and run history.

The panel shows :class:`~qstudio.core.pipeline.RunResult` objects the
controller's session already holds; it never runs or changes quantization
itself.  It asks for changes through signals: ``layerClicked`` (select the
layer in the model tree) and ``keepWorstInFloat`` (the window adds the names
to the skip list and re-runs).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from qstudio.core import compare
from qstudio.ui.charts import LatencyChart, LayerErrorChart, QatCurve, format_db, format_ms

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult
    from qstudio.core.progress import Progress
    from qstudio.ui.controller import SessionController

EMPTY_TEXT = "Run a quantization to see latency, per-layer error and accuracy here."
CARD_NAMES = ("accuracyCard", "latencyCard", "sizeCard", "coverageCard")
TAB_LATENCY, TAB_LAYERS, TAB_TRAINING, TAB_HISTORY = range(4)

_STYLE = """
QFrame[card="true"] { background: #f7f8fa; border: 1px solid #d9dce1; border-radius: 6px; }
QFrame[card="true"][warn="true"] { background: #fff6e0; border: 1px solid #e0a400; }
QFrame[card="true"] QLabel { background: transparent; border: none; }
QLabel[role="cardTitle"] { color: #555; font-size: 9pt; }
QLabel[role="cardValue"] { color: #111; }
QLabel[role="cardDetail"] { color: #444; font-size: 9pt; }
QLabel#warningsBanner { background: #fff3cd; color: #5c4400; border: 1px solid #e0a400; border-radius: 4px; padding: 6px; }
QScrollArea#warningsScroll, QScrollArea#warningsScroll > QWidget > QWidget { background: transparent; }
QLabel#emptyState { color: #666; font-size: 12pt; }
"""
_BANNER_TOP = 7  # the banner's border and padding above its first line (see _STYLE)


# -- figures as text ----------------------------------------------------------------
def pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def ratio(v: float | None) -> str:
    return f"{v:.2f}x" if v is not None else "—"


@dataclass
class CardText:
    title: str
    value: str
    detail: str
    warn: bool = False


def smallest_batch_median(stats: list[Any]) -> float | None:
    return min(stats, key=lambda s: s.batch_size).median_ms if stats else None


def accuracy_card(result: RunResult) -> CardText:
    ev = result.evaluation
    fp, q = result.fp32.accuracy, result.int8.accuracy
    warn = result.random_data or any("No evaluation data" in w for w in result.warnings)
    if fp is not None and q is not None:
        delta = (q - fp) * 100
        return CardText(
            "Accuracy  FP32 → INT8", f"{pct(fp)} → {pct(q)}", f"{delta:+.1f} pts\nagreement {pct(ev.agreement)}", warn
        )
    return CardText(
        "Agreement with FP32",
        pct(ev.agreement),
        f"cosine {ev.cosine:.4f}\noutput SQNR {format_db(ev.output_sqnr_db)} dB",
        warn,
    )


def latency_card(result: RunResult) -> CardText:
    a, b = result.fp32.latency_ms, result.int8.latency_ms
    if a is None or b is None:
        return CardText("Latency", "—", "not measured", True)
    batch = min(s.batch_size for s in result.int8.latency)
    speed, deploy = result.speedup, result.speedup_vs_deploy
    detail = f"{ratio(speed)} vs FP32 eager\nvs TorchScript FP32 {ratio(deploy) if deploy is not None else 'n/a'}"
    warn = (speed is not None and speed < 1) or (deploy is not None and deploy < 1)
    return CardText(f"Latency  batch {batch}", f"{format_ms(a)} → {format_ms(b)} ms", detail, warn)


def size_card(result: RunResult) -> CardText:
    a, b = result.fp32.size_mb, result.int8.size_mb
    smaller = a / b if b else None
    return CardText(
        "Size", f"{a:.2f} → {b:.2f} MB", f"{ratio(smaller)} smaller", bool(smaller is not None and smaller < 1)
    )


def coverage_card(result: RunResult) -> CardText:
    cov = result.coverage
    q, total = len(cov.quantized_layers), len(cov.quantized_layers) + len(cov.float_layers)
    kept = len(result.skipped)
    detail = f"{len(cov.float_layers)} still float" if cov.float_layers else "every weighted layer is INT8"
    if kept:
        detail += f"\n{kept} kept in float on purpose"
    return CardText("Coverage", f"{q} of {total} layers INT8", detail, bool(cov.warnings))


def summary_cards(result: RunResult) -> dict[str, CardText]:
    """The four cards' texts, keyed by objectName."""
    return {
        "accuracyCard": accuracy_card(result),
        "latencyCard": latency_card(result),
        "sizeCard": size_card(result),
        "coverageCard": coverage_card(result),
    }


def result_warnings(result: RunResult) -> list[str]:
    """Everything the banner lists: the run's warnings (coverage ones included), no duplicates."""
    out: list[str] = []
    if result.random_data and not any("RANDOM DATA" in w for w in result.warnings):
        out.append("RANDOM DATA was used: accuracy, agreement and per-layer figures do not describe real inputs.")
    for w in [*result.warnings, *result.coverage.warnings]:
        if w not in out:
            out.append(w)
    return out


def banner_text(result: RunResult, warnings: list[str]) -> str:
    """The banner's text: plain, or rich text with the critical verdicts (slowdown, collapse ...) first, red and bold."""
    severity = {v.text: v.severity for v in getattr(result, "verdicts", None) or ()}
    critical = [w for w in warnings if severity.get(w) == "critical"]
    if not critical:
        return "⚠ " + "\n⚠ ".join(warnings) if warnings else ""
    loud = [f'<b style="color:#b00020">⚠ {html.escape(w, quote=False)}</b>' for w in critical]
    rest = [f"⚠ {html.escape(w, quote=False)}" for w in warnings if w not in critical]
    return "<br>".join(loud + rest)


def history_row(index: int, result: RunResult) -> list[str]:
    """One History-table row: #, mode, backend, accuracy/agreement, INT8 ms, speedup, size, skipped."""
    q = result.int8.accuracy
    acc = pct(q) if q is not None else f"agree {pct(result.evaluation.agreement)}"
    ms = result.int8.latency_ms
    return [
        str(index + 1),
        result.recipe.mode,
        result.recipe.settings.backend,
        acc,
        format_ms(ms) if ms is not None else "—",
        ratio(result.speedup),
        f"{result.int8.size_mb:.2f}",
        str(len(result.skipped)),
    ]


HISTORY_COLUMNS = ["#", "mode", "backend", "accuracy / agreement", "INT8 ms", "speedup", "size MB", "skipped"]


def comparison_html(a: RunResult, ia: int, b: RunResult, ib: int) -> str:
    """A side-by-side table of two runs."""

    def acc(r: RunResult) -> str:
        return pct(r.int8.accuracy) if r.int8.accuracy is not None else "—"

    def ms(r: RunResult) -> str:
        return f"{format_ms(r.int8.latency_ms)} ms" if r.int8.latency_ms is not None else "—"

    def cov(r: RunResult) -> str:
        return f"{len(r.coverage.quantized_layers)} / {len(r.coverage.quantized_layers) + len(r.coverage.float_layers)}"

    rows = [
        ("mode", a.recipe.mode, b.recipe.mode),
        ("backend", a.recipe.settings.backend, b.recipe.settings.backend),
        ("INT8 accuracy", acc(a), acc(b)),
        ("agreement", pct(a.evaluation.agreement), pct(b.evaluation.agreement)),
        ("output SQNR", f"{format_db(a.evaluation.output_sqnr_db)} dB", f"{format_db(b.evaluation.output_sqnr_db)} dB"),
        ("INT8 latency", ms(a), ms(b)),
        ("speedup vs eager", ratio(a.speedup), ratio(b.speedup)),
        ("vs TorchScript FP32", ratio(a.speedup_vs_deploy), ratio(b.speedup_vs_deploy)),
        ("INT8 size", f"{a.int8.size_mb:.2f} MB", f"{b.int8.size_mb:.2f} MB"),
        ("layers INT8", cov(a), cov(b)),
        ("kept in float", ", ".join(a.skipped) or "none", ", ".join(b.skipped) or "none"),
        ("random data", "yes" if a.random_data else "no", "yes" if b.random_data else "no"),
    ]
    cells = "".join(
        f"<tr><td style='color:#555;padding-right:12px'>{html.escape(k)}</td>"
        f"<td style='padding-right:16px'>{html.escape(x)}</td><td>{html.escape(y)}</td></tr>"
        for k, x, y in rows
    )
    head = f"<tr><th></th><th align='left'>run #{ia + 1}</th><th align='left'>run #{ib + 1}</th></tr>"
    return f"<table cellspacing='0' cellpadding='2'>{head}{cells}</table>"


class _SortItem(QTableWidgetItem):
    """A cell that shows text but sorts by a number."""

    def __init__(self, text: str, key: float) -> None:
        super().__init__(text)
        self.key = key
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _SortItem):
            return self.key < other.key
        return super().__lt__(other)


def _sort_key(db: float | None) -> float:
    if db is None or math.isnan(db):
        return math.inf
    return db


def _table(columns: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(22)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setHighlightSections(False)
    return t


def _item(text: str) -> QTableWidgetItem:
    return QTableWidgetItem(text)


def _header_tips(table: QTableWidget, tips: list[str]) -> None:
    for c, tip in enumerate(tips):
        item = table.horizontalHeaderItem(c)
        if item is not None and tip:
            item.setToolTip(tip)


def _fit_table_width(table: QTableWidget) -> None:
    """The table is never narrower than its columns need (headers included), so no header is cut."""
    header = table.horizontalHeader()
    need = sum(
        max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
        for c in range(table.columnCount())
        if not header.isSectionHidden(c)
    )
    table.setMinimumWidth(need + 2 * table.frameWidth() + 2)


# -- labels that fit --------------------------------------------------------------------------
class FitLabel(QLabel):
    """One line of figures that is never cut: its font shrinks to fit the width.

    From ``largest`` down to ``smallest`` points; only below that (a width
    smaller than the minimum size hint, which a layout never gives) is the
    text elided, with the full text in the tooltip.  :meth:`full_text` is what
    was set.
    """

    def __init__(self, largest: float = 13.0, smallest: float = 9.5, bold: bool = True) -> None:
        super().__init__()
        self._full = ""
        self._largest, self._smallest, self._bold = largest, smallest, bold
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        super().setFont(self._font(largest))

    def _font(self, points: float) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(points)
        font.setBold(self._bold)
        return font

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self.updateGeometry()
        self._fit()

    def _width_at(self, points: float) -> int:
        return QFontMetrics(self._font(points)).horizontalAdvance(self._full) + 2

    def sizeHint(self) -> QSize:
        m = self.contentsMargins()
        return QSize(self._width_at(self._largest) + m.left() + m.right(), QFontMetrics(self._font(self._largest)).height())

    def minimumSizeHint(self) -> QSize:
        m = self.contentsMargins()
        return QSize(self._width_at(self._smallest) + m.left() + m.right(), QFontMetrics(self._font(self._largest)).height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        room = self.contentsRect().width()
        points = self._largest
        while points > self._smallest and self._width_at(points) > room:
            points -= 0.5
        font = self._font(points)
        text = self._full
        if self._width_at(points) > room:
            text = QFontMetrics(font).elidedText(self._full, Qt.TextElideMode.ElideRight, max(room - 2, 0))
        if font != self.font():
            super().setFont(font)
        super().setText(text)
        self.setToolTip(self._full if text != self._full else "")


class ElideLabel(QLabel):
    """Text whose lines are elided (…) when the label is narrower than they are; the full text is then its tooltip.

    It never widens its parent: the minimum width is a few characters.
    """

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self._full = ""
        self.setText(text)

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self.updateGeometry()
        self._fit()

    def sizeHint(self) -> QSize:
        fm, m = self.fontMetrics(), self.contentsMargins()
        lines = self._full.split("\n")
        width = max((fm.horizontalAdvance(line) for line in lines), default=0) + 2
        return QSize(width + m.left() + m.right(), fm.lineSpacing() * len(lines) + m.top() + m.bottom())

    def minimumSizeHint(self) -> QSize:
        hint = self.sizeHint()
        return QSize(min(hint.width(), self.fontMetrics().horizontalAdvance("Mmmm…")), hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        room, fm = self.contentsRect().width(), self.fontMetrics()
        lines = [fm.elidedText(line, Qt.TextElideMode.ElideRight, room) if room > 0 else line for line in self._full.split("\n")]
        text = "\n".join(lines)
        super().setText(text)
        self.setToolTip(self._full if text != self._full and self._full else "")


# -- the panel ---------------------------------------------------------------------------
class _Card(QFrame):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self.setProperty("card", True)
        self.setProperty("warn", False)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(1)
        # the figure is never cut (its font shrinks to fit); title and detail are elided, the card's tooltip has them
        self.title = ElideLabel(" ")
        self.value = FitLabel()
        self.value.setText("—")
        self.detail = ElideLabel("\n")  # always two lines, so every card (and every result) has the same height
        for label, role in ((self.title, "cardTitle"), (self.value, "cardValue"), (self.detail, "cardDetail")):
            label.setProperty("role", role)
            label.setObjectName(f"{name}{role[4:]}")  # accuracyCardTitle, accuracyCardValue, accuracyCardDetail
            layout.addWidget(label)

    def show_text(self, text: CardText) -> None:
        self.title.setText(text.title)
        self.value.setText(text.value)
        self.detail.setText(text.detail if "\n" in text.detail else text.detail + "\n")
        self.setToolTip(f"{text.title}\n{text.value}\n{text.detail}")
        if self.property("warn") != text.warn:
            self.setProperty("warn", text.warn)
            self.style().unpolish(self)
            self.style().polish(self)


class ResultsPanel(QWidget):
    """Cards, warnings, Latency / Per-layer error / Training / History tabs."""

    layerClicked = Signal(str)
    keepWorstInFloat = Signal(list)

    def __init__(self, controller: SessionController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsPanel")
        self.setStyleSheet(_STYLE)
        self.controller = controller
        self.result: RunResult | None = None
        self._busy = False
        self._live_training = False
        self._curves: dict[int, dict[str, Any]] = {}  # id(result) -> live QAT curve captured during its run

        self.stack = QStackedWidget(self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setContentsMargins(24, 0, 24, 0)
        self.stack.addWidget(self.empty)

        content = QWidget()
        self.stack.addWidget(content)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)

        self.cards_box = QWidget()
        self.card_grid = QGridLayout(self.cards_box)
        self.card_grid.setContentsMargins(0, 0, 0, 0)
        self.card_grid.setSpacing(6)
        self.cards = {name: _Card(name) for name in CARD_NAMES}
        self._card_columns = 0
        self._arrange_cards(4)
        layout.addWidget(self.cards_box)
        self.cards_box.hide()  # until there is a result (a first QAT run shows its live curve before that)
        # the panel is never narrower than two cards side by side; wider, resizeEvent puts all four in a row
        self.cards_box.setMinimumWidth(self._two_column_width())

        self.banner = QLabel()
        self.banner.setObjectName("warningsBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        # many warnings scroll inside a few lines' height instead of pushing the charts off the panel
        self.banner_scroll = QScrollArea(objectName="warningsScroll", widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.banner_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.banner_scroll.setWidget(self.banner)
        self.banner_scroll.hide()
        layout.addWidget(self.banner_scroll)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("resultsTabs")
        layout.addWidget(self.tabs, 1)
        self._build_latency_tab()
        self._build_layers_tab()
        self._build_training_tab()
        self._build_history_tab()

        controller.resultsChanged.connect(self._on_results_changed)
        controller.progress.connect(self._on_progress)
        controller.busyChanged.connect(self._on_busy)
        self._on_results_changed()

    # -- construction ----------------------------------------------------------------
    def _build_latency_tab(self) -> None:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(4, 4, 4, 4)
        self.latency_chart = LatencyChart()
        v.addWidget(self.latency_chart, 1)
        self.latency_table = _table(["batch", "FP32", "FP32 TS", "INT8", "speedup", "vs TS"])  # ms; the tooltips say what
        _header_tips(
            self.latency_table,
            [
                "Batch size",
                "FP32 eager: median ms per call",
                "FP32 frozen TorchScript: median ms per call",
                "INT8: median ms per call",
                "INT8 speedup over FP32 eager",
                "INT8 speedup over FP32 frozen TorchScript",
            ],
        )
        self.latency_table.setObjectName("latencyTable")
        header = self.latency_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # never narrower than a header
        header.setStretchLastSection(True)
        self.latency_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.latency_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.latency_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        _fit_table_width(self.latency_table)
        v.addWidget(self.latency_table)
        self.latency_note = QLabel()
        self.latency_note.setObjectName("latencyNote")
        self.latency_note.setStyleSheet("color: #666;")
        self.latency_note.setWordWrap(True)
        v.addWidget(self.latency_note)
        self.tabs.addTab(page, "Latency")

    def _build_layers_tab(self) -> None:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(4, 4, 4, 4)
        split = QSplitter(Qt.Orientation.Vertical)
        self.layer_chart = LayerErrorChart()
        self.layer_chart.layerClicked.connect(self._on_chart_layer)
        split.addWidget(self.layer_chart)
        self.layer_table = _table(["#", "layer", "type", "weight dB", "act. dB"])  # SQNR; short headers leave room for names
        self.layer_table.setObjectName("layerTable")
        self.layer_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        _header_tips(self.layer_table, ["Rank, worst first", "Layer", "Module type", "Weight SQNR (dB)", "Activation SQNR (dB)"])
        self.layer_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long names keep their ends; the tooltip has all
        header = self.layer_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the names get what the others leave
        header.setMinimumSectionSize(header.fontMetrics().horizontalAdvance("layer") + 16)  # its header stays whole
        self.layer_table.setMinimumHeight(56)  # the header and a row: the chart above keeps its height in a short window
        self.layer_table.itemSelectionChanged.connect(self._on_layer_row)
        split.addWidget(self.layer_table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        v.addWidget(split, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("k"))
        self.skip_spin = QSpinBox()
        self.skip_spin.setObjectName("skipWorstSpin")
        self.skip_spin.setRange(1, 1)
        self.skip_spin.setToolTip("How many of the worst layers (lowest SQNR) to keep in float")
        row.addWidget(self.skip_spin)
        self.skip_button = QPushButton("Keep worst k in float")
        self.skip_button.setObjectName("skipWorstButton")
        self.skip_button.setToolTip("Add the k worst layers to the skip list and run again")
        self.skip_button.clicked.connect(self._on_keep_worst)
        row.addWidget(self.skip_button)
        self.skip_preview = ElideLabel()
        self.skip_preview.setStyleSheet("color: #555;")
        row.addWidget(self.skip_preview, 1)
        self.skip_spin.valueChanged.connect(self._update_skip_preview)
        v.addLayout(row)
        self.tabs.addTab(page, "Per-layer error")

    def _build_training_tab(self) -> None:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(4, 4, 4, 4)
        self.qat_curve = QatCurve()
        v.addWidget(self.qat_curve, 1)
        self.training_table = _table(["epoch", "loss", "train acc.", "eval acc."])
        _header_tips(self.training_table, ["", "Mean training loss", "Training accuracy", "Evaluation accuracy"])
        self.training_table.setObjectName("trainingTable")
        header = self.training_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.training_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        _fit_table_width(self.training_table)
        v.addWidget(self.training_table)
        self.tabs.addTab(page, "Training")

    def _build_history_tab(self) -> None:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(4, 4, 4, 4)
        self.history_table = _table(HISTORY_COLUMNS)
        self.history_table.setObjectName("historyTable")
        self.history_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.history_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.history_table.itemSelectionChanged.connect(self._on_history_selection)
        v.addWidget(self.history_table, 1)
        self.comparison = QLabel(
            "Select a run to show its charts; select two (Ctrl+click) to compare them side by side."
        )
        self.comparison.setObjectName("historyComparison")
        self.comparison.setWordWrap(True)
        self.comparison.setTextFormat(Qt.TextFormat.RichText)
        self.comparison.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.comparison.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        v.addWidget(self.comparison, 1)
        self.tabs.addTab(page, "History")

    def _arrange_cards(self, columns: int) -> None:
        """Cards in one row of four, or two rows of two when the panel is narrow."""
        if columns == self._card_columns:
            return
        self._card_columns = columns
        for card in self.cards.values():
            self.card_grid.removeWidget(card)
        for i, card in enumerate(self.cards.values()):
            self.card_grid.addWidget(card, i // columns, i % columns)
        for c in range(4):
            self.card_grid.setColumnStretch(c, 1 if c < columns else 0)

    def _two_column_width(self) -> int:
        """The narrowest the cards can be, two by two, with every figure whole (at its smallest font)."""
        widest = max(card.minimumSizeHint().width() for card in self.cards.values())
        return 2 * widest + self.card_grid.spacing()

    def _fit_cards(self, width: int) -> None:
        """Four in a row when each gets its figure at full size, else two by two."""
        need = 4 * max(card.sizeHint().width() for card in self.cards.values()) + 3 * self.card_grid.spacing() + 12
        self._arrange_cards(4 if width >= need else 2)
        self.cards_box.setMinimumWidth(self._two_column_width())

    def _fit_banner(self) -> None:
        """The warnings take their height up to two to four lines, as the panel's height allows; more scroll."""
        if self.banner.isHidden():
            return
        width = self.banner_scroll.viewport().width() or self.width()
        lines = self.banner.fontMetrics().lineSpacing()
        needed = self.banner.heightForWidth(width) if self.banner.hasHeightForWidth() else self.banner.sizeHint().height()
        shown = 4 if self.height() >= 700 else 3 if self.height() >= 560 else 2
        most = _BANNER_TOP + shown * lines  # whole lines; the rest scrolls
        self.banner_scroll.setFixedHeight(min(max(needed, lines + 14), most))

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._fit_cards(event.size().width())
        super().resizeEvent(event)
        self._fit_banner()

    # -- controller ---------------------------------------------------------------------
    @property
    def results(self) -> list[RunResult]:
        return self.controller.session.results

    def _on_results_changed(self) -> None:
        results = self.results
        last = results[-1] if results else None
        if last is not None and self._live_training and self.qat_curve.points:
            self._curves[id(last)] = self.qat_curve.snapshot()
        self._live_training = False
        self._fill_history()
        if last is None:
            self.result = None
            self.stack.setCurrentIndex(0)
            return
        self.show_result(last)
        self._select_history_rows([len(results) - 1])

    def _on_progress(self, progress: Progress) -> None:
        if progress.stage != "train":
            return
        if progress.done == 0 or not self._live_training:
            self._live_training = True
            self.qat_curve.reset()
            self.stack.setCurrentIndex(1)
            self.tabs.setTabEnabled(TAB_TRAINING, True)
            self.tabs.setCurrentIndex(TAB_TRAINING)
        if self.qat_curve.add_progress(progress) and progress.metrics and "epoch" in progress.metrics:
            self._fill_training_table([(i + 1, e[1], e[2], e[3]) for i, e in enumerate(self.qat_curve.epochs)])

    def _on_busy(self, busy: bool) -> None:
        self._busy = busy
        if busy:
            self._live_training = False
        self._update_skip_controls()

    # -- showing a result -------------------------------------------------------------------
    def show_result(self, result: RunResult) -> None:
        """Show ``result`` in the cards, banner and charts (the History table is not changed)."""
        self.result = result
        self.stack.setCurrentIndex(1)
        self.cards_box.show()
        for name, text in summary_cards(result).items():
            self.cards[name].show_text(text)
        self._fit_cards(self.width())
        warnings = result_warnings(result)
        self.banner.setText(banner_text(result, warnings))
        self.banner.setVisible(bool(warnings))
        self.banner_scroll.setVisible(bool(warnings))
        self._fit_banner()
        self.latency_chart.set_result(result)
        self._fill_latency_table(result)
        self.layer_chart.set_result(result)
        self._fill_layer_table(result)
        self._show_training(result)
        self._update_skip_controls()

    def highlight_layer(self, name: str | None) -> None:
        """Outline ``name`` in the layer chart and select its table row (no signal emitted)."""
        self.layer_chart.highlight(name)
        self._select_layer_row(name)

    def _fill_latency_table(self, result: RunResult) -> None:
        series = LatencyChart.series_of(result)
        by_batch = [{s.batch_size: s for s in stats} for stats in series]
        sizes = sorted({b for d in by_batch for b in d})
        t = self.latency_table
        t.setRowCount(len(sizes))

        def cell(s: Any) -> str:
            return format_ms(s.median_ms) if s is not None else "—"

        for r, b in enumerate(sizes):
            eager, deploy, int8 = (d.get(b) for d in by_batch)
            vs_eager = ratio(eager.median_ms / int8.median_ms) if eager and int8 and int8.median_ms else "—"
            vs_deploy = ratio(deploy.median_ms / int8.median_ms) if deploy and int8 and int8.median_ms else "—"
            for c, (text, stat) in enumerate(
                [(str(b), None), (cell(eager), eager), (cell(deploy), deploy), (cell(int8), int8), (vs_eager, None), (vs_deploy, None)]
            ):
                item = _item(text)
                if stat is not None:  # the short header keeps the table readable; p90 and the full label on hover
                    item.setToolTip(f"{stat.label}, batch {b}: median {format_ms(stat.median_ms)}, p90 {format_ms(stat.p90_ms)}")
                t.setItem(r, c, item)
        header = t.horizontalHeader().sizeHint().height()
        t.setFixedHeight(header + 22 * len(sizes) + 2 * t.frameWidth())
        _fit_table_width(t)
        any_stat = next((s for stats in series for s in stats), None)
        if any_stat is not None:
            # two short lines under the chart (it needs the height); the whole story on hover
            note = (
                f"Median ms of {any_stat.iters} calls per bar, whisker p90, {any_stat.threads} thread(s); "
                "TS = frozen TorchScript. Compare within this run (hover for why)."
            )
            why = (
                "TS = frozen TorchScript, PyTorch's fastest FP32 path. Timed in the window's worker thread, which "
                "reads slower than a terminal run on small CPUs: compare bars within this run, and take deployment "
                "figures from `qstudio quantize` (docs/performance.md)."
            )
            if not result.fp32_deploy:
                note += " No FP32 TorchScript baseline for this model."
                why += " The FP32 TorchScript baseline could not be built for this model."
            self.latency_note.setText(note)
            self.latency_note.setToolTip(why)

    def _fill_layer_table(self, result: RunResult) -> None:
        t = self.layer_table
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(len(result.layers))
        for r, e in enumerate(result.layers):
            rank = _SortItem(str(r + 1), r)
            name = _item(e.name)
            name.setData(Qt.ItemDataRole.UserRole, e.name)
            name.setToolTip(e.name)
            t.setItem(r, 0, rank)
            t.setItem(r, 1, name)
            t.setItem(r, 2, _item(e.type))
            t.setItem(r, 3, _SortItem(format_db(e.weight_sqnr_db), _sort_key(e.weight_sqnr_db)))
            t.setItem(r, 4, _SortItem(format_db(e.activation_sqnr_db), _sort_key(e.activation_sqnr_db)))
        t.setSortingEnabled(True)
        t.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        t.blockSignals(False)
        self._select_layer_row(self.layer_chart.selected)

    def _show_training(self, result: RunResult) -> None:
        has = bool(result.history)
        self.tabs.setTabEnabled(TAB_TRAINING, has or self._live_training)
        self.tabs.setTabToolTip(
            TAB_TRAINING, "" if has else "Only quantization-aware training runs (mode qat) have a training curve"
        )
        if not has and self.tabs.currentIndex() == TAB_TRAINING:
            self.tabs.setCurrentIndex(TAB_LATENCY)
        snap = self._curves.get(id(result))
        if snap is not None:
            self.qat_curve.restore(snap)
        elif has:
            self.qat_curve.set_history(result.history)
        elif not self._live_training:
            self.qat_curve.reset()
        self._fill_training_table([(h.epoch, h.loss, h.train_accuracy, h.eval_accuracy) for h in result.history])

    def _fill_training_table(self, rows: list[tuple[float, float, float, float | None]]) -> None:
        """Epoch, loss, train accuracy, eval accuracy; sized to its rows (at most 5 visible)."""
        t = self.training_table
        t.setRowCount(len(rows))
        for r, (epoch, loss, train_acc, eval_acc) in enumerate(rows):
            values = [str(int(epoch)), f"{loss:.4f}", pct(train_acc), pct(eval_acc) if eval_acc is not None else "—"]
            for c, text in enumerate(values):
                t.setItem(r, c, _item(text))
        header = t.horizontalHeader().sizeHint().height()
        t.setFixedHeight(header + 22 * min(max(len(rows), 1), 5) + 2 * t.frameWidth())
        _fit_table_width(t)

    # -- per-layer interaction ------------------------------------------------------------------
    def _on_chart_layer(self, name: str) -> None:
        self._select_layer_row(name)
        self.layerClicked.emit(name)

    def _on_layer_row(self) -> None:
        rows = self.layer_table.selectionModel().selectedRows(1)
        if not rows:
            return
        name = rows[0].data(Qt.ItemDataRole.UserRole)
        self.layer_chart.highlight(name)
        self.layerClicked.emit(name)

    def _select_layer_row(self, name: str | None) -> None:
        t = self.layer_table
        t.blockSignals(True)
        t.clearSelection()
        for r in range(t.rowCount()):
            item = t.item(r, 1)
            if name is not None and item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                t.selectRow(r)
                t.scrollToItem(item)
                break
        t.blockSignals(False)

    def worst_layers(self, k: int | None = None) -> list[str]:
        """The k (default: the spin box's value) worst layers of the shown result."""
        if self.result is None:
            return []
        return compare.worst_layers(self.result.layers, self.skip_spin.value() if k is None else k)

    def _on_keep_worst(self) -> None:
        names = self.worst_layers()
        if names:
            self.keepWorstInFloat.emit(names)

    def _update_skip_controls(self) -> None:
        n = len(self.result.layers) if self.result is not None else 0
        self.skip_spin.setRange(1, max(1, n))
        self.skip_spin.setEnabled(n > 0)
        self.skip_button.setEnabled(n > 0 and not self._busy)
        self.skip_button.setToolTip(
            "Wait for the current run to finish"
            if self._busy
            else "Add the k worst layers to the skip list and run again"
        )
        self._update_skip_preview()

    def _update_skip_preview(self) -> None:
        names = self.worst_layers()
        text = ", ".join(names[:4]) + (f" … (+{len(names) - 4})" if len(names) > 4 else "")
        self.skip_preview.setText(text)
        self.skip_preview.setToolTip("\n".join(names))

    # -- history ---------------------------------------------------------------------------------
    def _fill_history(self) -> None:
        t = self.history_table
        t.blockSignals(True)
        t.setRowCount(len(self.results))
        for r, result in enumerate(self.results):
            for c, text in enumerate(history_row(r, result)):
                item = _item(text)
                if c != 1 and c != 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if result.random_data or result.coverage.warnings:
                    item.setToolTip("; ".join(result_warnings(result)))
                t.setItem(r, c, item)
        t.blockSignals(False)

    def _select_history_rows(self, rows: list[int]) -> None:
        t = self.history_table
        t.blockSignals(True)
        t.clearSelection()
        model, sel = t.model(), t.selectionModel()
        for r in rows:
            sel.select(model.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        t.blockSignals(False)
        self._show_comparison(rows)

    def selected_history_rows(self) -> list[int]:
        return sorted(i.row() for i in self.history_table.selectionModel().selectedRows())

    def _on_history_selection(self) -> None:
        rows = self.selected_history_rows()
        if rows:
            current = self.history_table.currentRow()
            self.show_result(self.results[current if current in rows else rows[-1]])
        self._show_comparison(rows)

    def _show_comparison(self, rows: list[int]) -> None:
        if len(rows) == 2:
            a, b = rows
            self.comparison.setText(comparison_html(self.results[a], a, self.results[b], b))
        elif len(rows) > 2:
            self.comparison.setText("Select exactly two runs to compare them side by side.")
        else:
            self.comparison.setText(
                "Select a run to show its charts; select two (Ctrl+click) to compare them side by side."
            )
