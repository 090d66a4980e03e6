"""The results side of the window: summary cards, warnings, charts and run history.

The panel shows :class:`~qstudio.core.pipeline.RunResult` objects the
controller's session already holds; it never runs or changes quantization
itself.  What a result means (headline figures, severities, warnings, colours)
comes from :func:`qstudio.core.summary.summarize`, the same summary the HTML
report and the CLI render.  It asks for changes through signals:
``layerClicked`` (select the layer in the model tree) and ``keepWorstInFloat``
(the window adds the names to the skip list and re-runs).

Its parts live in :mod:`qstudio.ui.results`: the cards and banner
(:mod:`~qstudio.ui.results.summary_view`) and one module per tab; the Search
tab (:mod:`~qstudio.ui.results.search_tab`) follows the controller's search
signals and shows a picked trial's run in the cards and charts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QLabel,
    QProxyStyle,
    QScrollArea,
    QStackedWidget,
    QStyle,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.summary import summarize
from qstudio.ui.results.history_tab import HISTORY_COLUMNS, comparison_html, history_row
from qstudio.ui.results.history_tab import HistoryTab as _HistoryTab
from qstudio.ui.results.latency_tab import LatencyTab as _LatencyTab
from qstudio.ui.results.layers_tab import LayersTab as _LayersTab
from qstudio.ui.results.runtimes_tab import RuntimesTab as _RuntimesTab
from qstudio.ui.results.search_tab import SearchTab as _SearchTab
from qstudio.ui.results.summary_view import (
    BANNER_TOP,
    CARD_NAMES,
    STYLE,
    CardWidget,
    banner_html,
    banner_text,
    card_name,
    result_warnings,
)
from qstudio.ui.results.training_tab import TrainingTab as _TrainingTab
from qstudio.ui.results.widgets import ElideLabel, FitLabel

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult
    from qstudio.core.progress import Progress
    from qstudio.core.search import SearchSettings
    from qstudio.ui.controller import SessionController

__all__ = [
    "CARD_NAMES",
    "EMPTY_TEXT",
    "HISTORY_COLUMNS",
    "TAB_HISTORY",
    "TAB_LATENCY",
    "TAB_LAYERS",
    "TAB_RUNTIMES",
    "TAB_SEARCH",
    "TAB_TRAINING",
    "ElideLabel",
    "FitLabel",
    "ResultsPanel",
    "banner_text",
    "comparison_html",
    "history_row",
    "result_warnings",
]

EMPTY_TEXT = "Run a quantization to see latency, per-layer error and accuracy here."
TAB_LATENCY, TAB_RUNTIMES, TAB_LAYERS, TAB_TRAINING, TAB_HISTORY, TAB_SEARCH = range(6)


class CompactTabStyle(QProxyStyle):
    """The application's style with less padding beside each tab's title, so the six tabs fit a 1024 px screen."""

    def pixelMetric(self, metric: QStyle.PixelMetric, option: Any = None, widget: Any = None) -> int:
        value = super().pixelMetric(metric, option, widget)
        if metric == QStyle.PixelMetric.PM_TabBarTabHSpace:
            return max(12, round(value * 0.6))
        return value


class ResultsPanel(QWidget):
    """Cards, warnings, Latency / Runtimes / Per-layer error / Training / History / Search tabs."""

    layerClicked = Signal(str)
    keepWorstInFloat = Signal(list)

    def __init__(self, controller: SessionController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsPanel")
        self.setStyleSheet(STYLE)
        self.controller = controller
        self.result: RunResult | None = None
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
        self.cards = {name: CardWidget(name) for name in CARD_NAMES}
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
        self.banner_scroll = QScrollArea(
            objectName="warningsScroll", widgetResizable=True, frameShape=QFrame.Shape.NoFrame
        )
        self.banner_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.banner_scroll.setWidget(self.banner)
        self.banner_scroll.hide()
        layout.addWidget(self.banner_scroll)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("resultsTabs")
        # the tab bar's own style, kept alive by the panel; the titles otherwise need ~50 px more than a 1024 px
        # window gives the panel, and Qt would hide some behind scroll arrows
        self._tab_style = CompactTabStyle(QApplication.style().name())
        self._tab_style.setParent(self)
        self.tabs.tabBar().setStyle(self._tab_style)
        layout.addWidget(self.tabs, 1)
        self.latency_tab = _LatencyTab()
        self.runtimes_tab = _RuntimesTab()
        self.layers_tab = _LayersTab()
        self.training_tab = _TrainingTab()
        self.history_tab = _HistoryTab(lambda: self.results)
        self.search_tab = _SearchTab(controller)
        for page, title in (
            (self.latency_tab, "Latency"),
            (self.runtimes_tab, "Runtimes"),
            (self.layers_tab, "Per-layer error"),
            (self.training_tab, "Training"),
            (self.history_tab, "History"),
            (self.search_tab, "Search"),
        ):
            self.tabs.addTab(page, title)
        # the tabs' widgets, by the names tests and the window use
        self.latency_chart, self.latency_table = self.latency_tab.chart, self.latency_tab.table
        self.latency_note = self.latency_tab.note
        self.layer_chart, self.layer_table = self.layers_tab.chart, self.layers_tab.table
        self.skip_spin, self.skip_button = self.layers_tab.skip_spin, self.layers_tab.skip_button
        self.skip_preview = self.layers_tab.skip_preview
        self.qat_curve, self.training_table = self.training_tab.curve, self.training_tab.table
        self.history_table, self.comparison = self.history_tab.table, self.history_tab.comparison
        self.pareto_chart, self.search_table = self.search_tab.chart, self.search_tab.table
        self.search_summary, self.use_trial_button = self.search_tab.summary, self.search_tab.use_button

        self.layers_tab.layerClicked.connect(self.layerClicked)
        self.layers_tab.keepWorstInFloat.connect(self.keepWorstInFloat)
        self.history_tab.runSelected.connect(lambda i: self.show_result(self.results[i]))
        self.search_tab.trialSelected.connect(self._on_trial_selected)
        controller.resultsChanged.connect(self._on_results_changed)
        controller.progress.connect(self._on_progress)
        controller.busyChanged.connect(self._on_busy)
        controller.searchStarted.connect(self._on_search_started)
        controller.searchTrial.connect(self.search_tab.add_trial)
        controller.searchFinished.connect(self.search_tab.finish)
        controller.searchFailed.connect(self.search_tab.fail)
        self._on_results_changed()

    # -- layout ---------------------------------------------------------------------------------
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
        needed = (
            self.banner.heightForWidth(width) if self.banner.hasHeightForWidth() else self.banner.sizeHint().height()
        )
        shown = 4 if self.height() >= 700 else 3 if self.height() >= 560 else 2
        most = BANNER_TOP + shown * lines  # whole lines; the rest scrolls
        self.banner_scroll.setFixedHeight(min(max(needed, lines + 14), most))

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._fit_cards(event.size().width())
        super().resizeEvent(event)
        self._fit_banner()

    # -- controller -----------------------------------------------------------------------------
    @property
    def results(self) -> list[RunResult]:
        return self.controller.session.results

    def _on_results_changed(self) -> None:
        results = self.results
        last = results[-1] if results else None
        if last is not None and self._live_training and self.qat_curve.points:
            self._curves[id(last)] = self.qat_curve.snapshot()
        self._live_training = False
        self.history_tab.fill()
        if last is None:
            self.result = None
            self.stack.setCurrentIndex(0)
            return
        self.show_result(last)
        self.history_tab.select_rows([len(results) - 1])

    def _on_progress(self, progress: Progress) -> None:
        if progress.stage != "train":
            return
        if progress.done == 0 or not self._live_training:
            self._live_training = True
            self.qat_curve.reset()
            self.stack.setCurrentIndex(1)
            self.tabs.setTabEnabled(TAB_TRAINING, True)
            self.tabs.setCurrentIndex(TAB_TRAINING)
        self.training_tab.add_progress(progress)

    def _on_busy(self, busy: bool) -> None:
        if busy:
            self._live_training = False
        self.layers_tab.set_busy(busy)
        self.search_tab.set_busy(busy)

    def _on_search_started(self, settings: SearchSettings) -> None:
        """A search started: the Search tab shows its trials as they finish."""
        self.search_tab.start(settings)
        self.stack.setCurrentIndex(1)
        self.tabs.setCurrentIndex(TAB_SEARCH)

    def _on_trial_selected(self, index: int) -> None:
        """A trial was picked in the Search tab: its run in the cards and charts, when the search kept it."""
        tab = self.search_tab
        trial = tab.selected_trial()
        run = tab.result_for(trial) if trial is not None else None
        if run is not None:
            self.show_result(run)
        del index

    # -- showing a result -----------------------------------------------------------------------
    def show_result(self, result: RunResult) -> None:
        """Show ``result`` in the cards, banner and charts (the History table is not changed)."""
        self.result = result
        summary = summarize(result)
        self.stack.setCurrentIndex(1)
        self.cards_box.show()
        for card in summary.cards:
            self.cards[card_name(card)].show_card(card)
        self._fit_cards(self.width())
        self.banner.setText(banner_html(summary.notices))
        self.banner.setVisible(bool(summary.notices))
        self.banner_scroll.setVisible(bool(summary.notices))
        self._fit_banner()
        self.latency_tab.show_result(result, summary)
        self.runtimes_tab.show_result(result)
        self.layers_tab.show_result(result)
        self._show_training(result)

    def _show_training(self, result: RunResult) -> None:
        has = bool(result.history)
        self.tabs.setTabEnabled(TAB_TRAINING, has or self._live_training)
        self.tabs.setTabToolTip(
            TAB_TRAINING, "" if has else "Only quantization-aware training runs (mode qat) have a training curve"
        )
        if not has and self.tabs.currentIndex() == TAB_TRAINING:
            self.tabs.setCurrentIndex(TAB_LATENCY)
        self.training_tab.show_history(result.history, self._curves.get(id(result)), self._live_training)

    def highlight_layer(self, name: str | None) -> None:
        """Outline ``name`` in the layer chart and select its table row (no signal emitted)."""
        self.layers_tab.highlight(name)

    def worst_layers(self, k: int | None = None) -> list[str]:
        """The k (default: the spin box's value) worst layers of the shown result."""
        return self.layers_tab.worst_layers(k)

    def selected_history_rows(self) -> list[int]:
        return self.history_tab.selected_rows()
