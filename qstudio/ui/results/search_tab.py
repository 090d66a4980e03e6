"""The Search tab: a search's trials live, as a Pareto chart and a table, and the trial the user picks.

The chart (:class:`~qstudio.ui.charts.pareto_chart.ParetoChart`) and the
table show every trial of a :class:`~qstudio.core.search.SearchResult` as it
grows; selecting a trial (a click on its point or its row, or
:meth:`SearchTab.select_trial`) shows its configuration, figures and recipe,
and its run in the panel's cards and charts when the search kept its model.
"Use this one" makes that run the session's result (File > Export exports
it); a trial whose model was let go is replayed instead (its recipe becomes
the session's and runs).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.formatting import fmt_ms, fmt_ratio, fmt_seconds, headline
from qstudio.core.summary import CRITICAL, Notice
from qstudio.ui.charts.pareto_chart import ParetoChart, quality_pct
from qstudio.ui.results.summary_view import banner_html
from qstudio.ui.results.widgets import item, make_table

if TYPE_CHECKING:
    from qstudio.core.pipeline import RunResult
    from qstudio.core.search import SearchResult, SearchSettings, SearchTrial
    from qstudio.ui.controller import SessionController

SEARCH_COLUMNS = ["#", "configuration", "how chosen", "quality", "vs FP32", "ms", "speedup", "state"]
COLUMN_TIPS = [
    "Trial number (0 is the plain run: the settings as they are)",
    "What the trial quantized with and deployed to",
    "Why the search tried it: chosen first as a user would, or sampled (Optuna's TPE)",
    "Accuracy, or top-1 agreement with FP32, on the eval data",
    "Points above (+) or below (−) FP32",
    "INT8 latency, median ms per call at the smallest batch size",
    "FP32 eager over this INT8 model, timed interleaved in the trial's own run",
    "Within the budget or over it; pruned: far outside the budget, so not timed",
]
SUMMARY_LINES = 3  # the summary's height at most, in lines (2 in a short tab); more scrolls
WARNING_LINES = 2  # lines more the summary may take when the search has warnings (they come first, in red)
SHORT_TAB = 360  # a tab shorter than this (a 700 px screen) gives the summary 2 lines: the chart needs the room
CONFIG_WIDTH = 240  # the configuration column's width at most (the whole text is its tooltip)
EMPTY = (
    "No search yet. Run > Search for the fastest within budget… tries configurations of the current settings "
    "and keeps the fastest whose accuracy stays within the budget."
)

PICK = "Select a trial (its point in the chart or its row in Trials) to see its figures and recipe here."


def state_text(result: SearchResult, index: int, pareto: list[int] | None = None) -> str:
    """``"best · within budget · frontier"``, ``"over budget"``, ``"pruned"``, ``"failed"``."""
    t = result.trials[index]
    pareto = result.pareto if pareto is None else pareto
    if t.state != "complete":
        return t.state
    parts = ["best"] if result.best_index == index else []
    parts.append("within budget" if t.within_budget else "over budget")
    if index in pareto:
        parts.append("frontier")
    return " · ".join(parts)


def trial_row(result: SearchResult, index: int, pareto: list[int] | None = None) -> list[str]:
    """One table row: #, configuration, how chosen, quality, vs FP32, ms, speedup, state."""
    t = result.trials[index]
    quality = "—" if t.quality is None else f"{quality_pct(t):.2f}%"
    return [
        str(t.number),
        t.describe(),
        t.origin,
        quality,
        result.points_vs_fp32(t),
        fmt_ms(t.latency_ms),
        fmt_ratio(t.speedup),
        state_text(result, index, pareto),
    ]


class SearchTab(QWidget):
    """The search's summary, Pareto chart, trials table and the selected trial (figures, recipe, Use this one)."""

    trialSelected = Signal(int)  # index into the search's trials: the panel shows its run when one was kept

    def __init__(self, controller: SessionController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchTab")
        self.controller = controller
        self.result: SearchResult | None = None
        self.settings: SearchSettings | None = None
        self.finished = False
        self.selected: int | None = None
        self._busy = False
        self._warned = False  # the summary starts with warnings: it may take WARNING_LINES more

        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        v.setSpacing(4)
        # the summary takes up to SUMMARY_LINES lines; a longer one scrolls instead of pushing the chart off the tab
        self.summary = QLabel(EMPTY)
        self.summary.setObjectName("searchSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.summary_scroll = QScrollArea(
            objectName="searchSummaryScroll", widgetResizable=True, frameShape=QFrame.Shape.NoFrame
        )
        self.summary_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.summary_scroll.setWidget(self.summary)
        v.addWidget(self.summary_scroll)

        self.chart = ParetoChart()
        self.table = make_table(SEARCH_COLUMNS)
        self.table.setObjectName("searchTable")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for c, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.itemSelectionChanged.connect(self._on_table_selection)

        self.details = QLabel(PICK)
        self.details.setObjectName("trialDetails")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setContentsMargins(4, 4, 4, 4)
        details = QScrollArea(objectName="trialDetailsScroll", widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        details.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        details.setWidget(self.details)
        self.recipe_view = QPlainTextEdit()
        self.recipe_view.setObjectName("trialRecipe")
        self.recipe_view.setReadOnly(True)
        self.recipe_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.recipe_view.setPlaceholderText("The selected trial's recipe (TOML): qstudio run replays it.")
        self.recipe_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))

        # Trials | Selected trial | Recipe, with "Use this one" on the tab bar's row: no row of its own
        self.inner = QTabWidget()
        self.inner.setObjectName("searchDetailTabs")
        self.inner.setDocumentMode(True)
        self.inner.addTab(self.table, "Trials")
        self.inner.addTab(details, "Selected trial")
        self.inner.addTab(self.recipe_view, "Recipe")
        self.use_button = QPushButton("Use this one")
        self.use_button.setObjectName("useTrialButton")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_selected)
        self.inner.setCornerWidget(self.use_button, Qt.Corner.TopRightCorner)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("searchSplitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.chart)
        self.splitter.addWidget(self.inner)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([300, 200])  # proportions: the chart 3/5, the trials 2/5 (above their least heights)
        v.addWidget(self.splitter, 1)
        self._fit_summary()

        self.chart.trialClicked.connect(self.select_trial)

    # -- the search, live ------------------------------------------------------------
    def start(self, settings: SearchSettings) -> None:
        """A search started: forget the last one's trials."""
        self.settings, self.result, self.finished, self.selected = settings, None, False, None
        self.chart.clear_result()
        self.table.setRowCount(0)
        self.details.setText(PICK)
        self.recipe_view.setPlainText("")
        self._set_summary(f"Searching: the plain run first{self._limit_text()}…")
        self.summary.setToolTip("")
        self._refresh_button()

    def _limit_text(self) -> str:
        s = self.settings
        if s is None:
            return ""
        parts = []
        if s.trial_limit:
            parts.append(f"up to {s.trial_limit} trials")
        if s.time_budget:
            parts.append(f"at most {s.time_budget / 60:g} min")
        return f" ({', '.join(parts)}, budget {s.max_drop:g} points)" if parts else f" (budget {s.max_drop:g} points)"

    def _set_summary(self, text: str, warnings: Sequence[str] = ()) -> None:
        """``text``, after ``warnings``: each one's headline on a line, red and bold, read first (the whole in the tooltip)."""
        self._warned = bool(warnings)
        if warnings:
            loud = banner_html([Notice(CRITICAL, "search", headline(w)) for w in warnings])  # the results' banner's
            self.summary.setTextFormat(Qt.TextFormat.RichText)
            self.summary.setText("<br>".join([loud, html.escape(text, quote=False).replace("\n", "<br>")]))
        else:
            self.summary.setTextFormat(Qt.TextFormat.PlainText)
            self.summary.setText(text)
        self._fit_summary()

    def _fit_summary(self) -> None:
        """The summary's whole height up to SUMMARY_LINES lines (at least one); a longer one scrolls.

        Its whole text (and the search's notes) is also its tooltip.
        """
        width = self.summary_scroll.viewport().width() or self.width()
        lines = self.summary.fontMetrics().lineSpacing()
        needed = self.summary.heightForWidth(width) if width > 0 else lines
        most = SUMMARY_LINES if self.height() >= SHORT_TAB else SUMMARY_LINES - 1
        most = (most + (WARNING_LINES if self._warned else 0)) * lines
        self.summary_scroll.setFixedHeight(min(max(needed, lines), most))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_summary()

    def add_trial(self, trial: SearchTrial, result: SearchResult) -> None:
        """A trial finished: ``result`` is the search so far (a copy the worker no longer changes)."""
        del trial
        self.show_search(result, finished=False)

    def finish(self, result: SearchResult) -> None:
        """The search ended (all trials, the time limit, or Cancel): show it whole and select the best trial."""
        self.show_search(result, finished=True)
        pick = result.best_index if result.best_index is not None else result.closest_index
        if pick is not None:
            self.select_trial(pick)

    def fail(self, message: str) -> None:
        self.finished = True
        if self.result is None:
            self._set_summary(f"The search ended without a trial: {message}")
        else:
            self._set_summary(f"The search stopped: {message} The trials so far are kept below.")
        self._refresh_button()

    def show_search(self, result: SearchResult, *, finished: bool) -> None:
        self.result, self.finished = result, finished
        self.chart.set_search(result)
        self._fill_table(result)
        text = result.summary() if finished else self._live_summary(result)
        self._set_summary(text, result.warnings if finished else ())
        self.summary.setToolTip("\n\n".join([text, *result.warnings, *result.notes]))
        if self.selected is not None and self.selected < len(result.trials):
            self._show_selected(self.selected)
        self._refresh_button()

    def _live_summary(self, result: SearchResult) -> str:
        done = sum(t.state != "running" for t in result.trials)
        limit = self.settings.trial_limit if self.settings is not None else None
        head = f"Searching: {done}{f' of {limit}' if limit else ''} trials done"
        best = result.best
        if best is not None:
            return (
                f"{head}. Best so far: trial {best.number}, {best.describe()}: {quality_pct(best):.2f}% "
                f"{result.metric} ({result.points_vs_fp32(best)} points vs FP32), {fmt_ratio(best.speedup)}"
            )
        close = result.closest
        if close is not None:
            return (
                f"{head}. None within {result.max_drop:g} points of FP32 yet; the closest is trial {close.number} "
                f"({result.points_vs_fp32(close)} points)"
            )
        return f"{head}."

    def _fill_table(self, result: SearchResult) -> None:
        t = self.table
        t.blockSignals(True)
        t.horizontalHeaderItem(3).setText(result.metric)
        t.setRowCount(len(result.trials))
        bold = QFont()
        bold.setBold(True)
        pareto = result.pareto
        for r, trial in enumerate(result.trials):
            tip = "\n".join(x for x in (trial.describe(), trial.note) if x)
            for c, text in enumerate(trial_row(result, r, pareto)):
                cell = item(text)
                if c not in (1, 2, 7):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if r == result.best_index:
                    cell.setFont(bold)
                cell.setToolTip(tip)
                t.setItem(r, c, cell)
        header = t.horizontalHeader()
        want = max(header.sectionSizeHint(1), t.sizeHintForColumn(1))
        t.setColumnWidth(1, min(want, CONFIG_WIDTH))
        if self.selected is not None and self.selected < len(result.trials):
            t.selectRow(self.selected)
        t.blockSignals(False)

    # -- selection --------------------------------------------------------------------
    def select_trial(self, index: int) -> None:
        """Select trial ``index`` (what a click on its point or row does): figures, recipe, and its run if kept."""
        if self.result is None or not 0 <= index < len(self.result.trials):
            return
        self.selected = index
        t = self.table
        t.blockSignals(True)
        t.selectRow(index)
        t.blockSignals(False)
        self._show_selected(index)
        self._refresh_button()
        self.trialSelected.emit(index)

    def _on_table_selection(self) -> None:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        if rows:
            self.select_trial(rows[0])

    def selected_trial(self) -> SearchTrial | None:
        if self.result is None or self.selected is None or self.selected >= len(self.result.trials):
            return None
        return self.result.trials[self.selected]

    def result_for(self, trial: SearchTrial) -> RunResult | None:
        """The run to show or use for ``trial``: the winner's measured again when it is the best, else its own."""
        result = self.result
        if result is not None and result.best is trial and result.final is not None:
            return result.final
        return trial.result

    def _show_selected(self, index: int) -> None:
        assert self.result is not None
        result, trial = self.result, self.result.trials[index]
        self.chart.select(index)
        kept = self.result_for(trial) is not None
        quality = "—" if trial.quality is None else f"{quality_pct(trial):.2f}% {result.metric}"
        fp32 = "" if result.fp32_quality is None else f" (FP32 {100 * result.fp32_quality:.2f}%)"
        lines = [
            f"<b>trial {trial.number}</b> · {html.escape(trial.origin)} · {html.escape(state_text(result, index))}",
            html.escape(trial.describe()),
            f"{html.escape(quality)}, {result.points_vs_fp32(trial)} points vs FP32{fp32}, "
            f"budget {result.max_drop:g} · {fmt_ms(trial.latency_ms)} ms · {fmt_ratio(trial.speedup)} vs FP32 eager "
            f"· ran {fmt_seconds(trial.seconds)}",
        ]
        if trial.note:
            lines.append(f"<i>{html.escape(trial.note)}</i>")
        lines.append(
            "Its model was kept: Use this one makes it the session's result (File > Export INT8 model)."
            if kept
            else "Its model was not kept (only the best and the frontier's are): Replay this trial runs its recipe."
        )
        self.details.setText("<br>".join(lines))
        self.recipe_view.setPlainText(trial.recipe.to_toml())

    # -- Use this one / Replay -----------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._refresh_button()

    def _refresh_button(self) -> None:
        trial = self.selected_trial()
        kept = trial is not None and self.result_for(trial) is not None
        self.use_button.setText("Use this one" if kept or trial is None else "Replay this trial")
        self.use_button.setToolTip(
            "Make this trial's run the session's result: File > Export INT8 model exports it"
            if kept or trial is None
            else "Its model was not kept: make its recipe the session's and run it"
        )
        self.use_button.setEnabled(trial is not None and not self._busy and trial.state in ("complete", "pruned"))

    def use_selected(self) -> bool:
        """Use this one (or Replay this trial): what the button does."""
        trial = self.selected_trial()
        if trial is None:
            return False
        run = self.result_for(trial)
        if run is not None:
            return self.controller.use_trial(trial, run)
        return self.controller.replay_trial(trial)
