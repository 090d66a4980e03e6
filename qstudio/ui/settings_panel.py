"""The recipe editor: mode, backend, observers, QAT, data, input and benchmark settings.

Every edit builds a new :class:`~qstudio.core.recipe.Recipe` from the widgets
(the recipe's own dataclasses validate it) and hands it to
:meth:`SessionController.update_recipe`.  An invalid entry is shown inline and
leaves the session's recipe as it was.  When the recipe or model changes
elsewhere, the widgets are refreshed from the session without re-emitting.
While a run is going the form is locked.

The form's sections are built in :mod:`qstudio.ui.settings`, one module per
section (mode, quantization, QAT, data, input, benchmark); this panel puts
them together and reads and shows the recipe.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.errors import RecipeError
from qstudio.core.flows import mode_traits
from qstudio.core.recipe import Recipe
from qstudio.ui.data_picker import fix_placeholder
from qstudio.ui.settings import (
    benchmark_section,
    data_section,
    input_section,
    mode_section,
    qat_section,
    quantization_section,
)
from qstudio.ui.settings.form import WheelGuard, align_labels, ints_text, parse_ints, select
from qstudio.ui.settings.input_section import AUTO, INPUT_DTYPE_ITEMS
from qstudio.ui.settings.mode_section import MODE_HINTS, MODE_ITEMS
from qstudio.ui.settings.qat_section import QAT_GRAPH_ITEMS
from qstudio.ui.settings.quantization_section import (
    BACKEND_TIPS,
    DYNAMIC_DTYPE_ITEMS,
    OBSERVER_ITEMS,
    REDUCE_RANGE_ITEMS,
)

__all__ = [
    "AUTO",
    "BACKEND_TIPS",
    "DYNAMIC_DTYPE_ITEMS",
    "ERROR_STYLE",
    "INPUT_DTYPE_ITEMS",
    "LOCK_STYLE",
    "MODE_HINTS",
    "MODE_ITEMS",
    "OBSERVER_ITEMS",
    "PROBLEM_STYLE",
    "QAT_GRAPH_ITEMS",
    "REDUCE_RANGE_ITEMS",
    "SettingsPanel",
    "parse_ints",
]

PROBLEM_STYLE = "border: 2px solid #c62828; border-radius: 3px;"  # a setting a run refused
ERROR_STYLE = "color: #b00020; background: #fdecee; border: 1px solid #e8a0a8; border-radius: 3px; padding: 3px 5px;"
LOCK_STYLE = "color: palette(placeholder-text); font-style: italic;"


class SettingsPanel(QWidget):
    """Edits ``controller.session.recipe``; see the module docstring."""

    def __init__(self, controller: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._refreshing = False
        self._shown: dict[QWidget, tuple[Any, Any]] = {}  # widget -> (value shown, recipe value it stands for)
        self._tips: dict[QWidget, str] = {}  # tool tips of widgets some modes do not use

        # the form's sections, top to bottom (qstudio.ui.settings): each makes its widgets as attributes of self
        mode_box = mode_section.build(self)
        quant_box = quantization_section.build(self)
        qat_box = qat_section.build(self)
        data_box = data_section.build(self)
        input_box = input_section.build(self)
        bench_box = benchmark_section.build(self)

        # -- assembly -------------------------------------------------------------------
        self.form = QWidget(objectName="settingsForm")
        column = QVBoxLayout(self.form)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(8)
        for box in (mode_box, quant_box, qat_box, data_box, input_box, bench_box):
            column.addWidget(box)
        column.addStretch(1)

        align_labels(self.form)
        for edit in self.form.findChildren(QLineEdit):
            fix_placeholder(edit)

        self.scroll = QScrollArea(objectName="settingsScroll", widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.form)
        # the panel is never narrower than the form (see minimumSizeHint): a splitter squeezing it would cut
        # every label and field mid-word, since the form does not scroll sideways
        self.form.installEventFilter(self)

        self.errorLabel = QLabel(objectName="settingsError", wordWrap=True)
        self.errorLabel.setStyleSheet(ERROR_STYLE)
        self.errorLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errorLabel.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.errorLabel.hide()
        self.lockLabel = QLabel("Settings are locked while a run is going.", objectName="settingsLocked")
        self.lockLabel.setStyleSheet(LOCK_STYLE)
        self.lockLabel.setContentsMargins(8, 2, 8, 2)
        self.lockLabel.hide()

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        outer.addWidget(self.lockLabel)
        outer.addWidget(self.errorLabel)
        outer.addWidget(self.scroll, 1)

        # -- signals ----------------------------------------------------------------------
        guard = WheelGuard(self)
        for w in self.form.findChildren(QWidget):
            if isinstance(w, (QComboBox, QAbstractSpinBox)):
                w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
                w.installEventFilter(guard)
        combos = (
            self.modeCombo,
            self.backendCombo,
            self.observerCombo,
            self.reduceRangeCombo,
            self.dynamicDtypeCombo,
            self.qatGraphCombo,
            self.inputDtypeCombo,
        )
        spins = (
            self.calibBatchesSpin,
            self.batchSizeSpin,
            self.qatEpochsSpin,
            self.qatLrSpin,
            self.qatBatchSizeSpin,
            self.freezeBnSpin,
            self.freezeObserverSpin,
            self.benchThreadsSpin,
            self.benchWarmupSpin,
            self.benchItersSpin,
        )
        for combo in combos:
            combo.currentIndexChanged.connect(self._apply)
        for spin in spins:
            spin.valueChanged.connect(self._apply)
        for check in (self.perChannelCheck, self.symmetricCheck):
            check.toggled.connect(self._apply)
        for edit in (self.inputShapeEdit, self.benchBatchSizesEdit):
            edit.editingFinished.connect(self._apply)
        for picker in (self.calibPicker, self.evalPicker, self.trainPicker):
            picker.changed.connect(self._apply)
        controller.recipeChanged.connect(self.refresh)
        controller.modelChanged.connect(self.refresh)
        controller.busyChanged.connect(self.set_busy)
        if hasattr(controller, "settingProblem"):
            controller.settingProblem.connect(self.show_problem)

        self.refresh()
        self.set_busy(bool(getattr(controller, "busy", False)))

    # -- layout ------------------------------------------------------------------------
    def minimumSizeHint(self) -> QSize:
        """At least the form's own minimum width plus the vertical scroll bar beside it."""
        hint = super().minimumSizeHint()
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        width = self.form.minimumSizeHint().width() + bar + 2 * self.scroll.frameWidth()
        return QSize(max(hint.width(), width), hint.height())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.form and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # rows shown or hidden (a mode change): the splitter re-reads the minimum width
        return super().eventFilter(obj, event)

    # -- public ------------------------------------------------------------------------
    def recipe_from_widgets(self) -> Recipe:
        """A new, validated Recipe: the session's recipe with every field shown here replaced."""
        base = self.controller.session.recipe
        mode = self.modeCombo.currentData()
        settings = dataclasses.replace(
            base.settings,
            backend=self.backendCombo.currentData() or base.settings.backend,
            observer=self.observerCombo.currentData(),
            per_channel=self.perChannelCheck.isChecked(),
            symmetric=self.symmetricCheck.isChecked(),
            reduce_range=self.reduceRangeCombo.currentData(),
            dynamic_dtype=self.dynamicDtypeCombo.currentData(),
            calib_batches=self._value(self.calibBatchesSpin),
            batch_size=self._value(self.batchSizeSpin),
        )
        qat = dataclasses.replace(
            base.qat,
            epochs=self._value(self.qatEpochsSpin),
            lr=self._value(self.qatLrSpin),
            batch_size=self._value(self.qatBatchSizeSpin),
            graph=self.qatGraphCombo.currentData(),
            freeze_bn_epoch=self._value(self.freezeBnSpin),
            freeze_observer_epoch=self._value(self.freezeObserverSpin),
        )
        batch_sizes = parse_ints(self.benchBatchSizesEdit.text(), "benchmark batch sizes", "1,8")
        if batch_sizes is None:
            raise RecipeError("benchmark batch sizes are empty", "give at least one batch size, e.g. 1,8")
        benchmark = dataclasses.replace(
            base.benchmark,
            batch_sizes=batch_sizes,
            threads=self._value(self.benchThreadsSpin) or None,
            warmup=self._value(self.benchWarmupSpin),
            iters=self._value(self.benchItersSpin),
        )
        dtype = self.inputDtypeCombo.currentData()
        return dataclasses.replace(
            base,
            mode=mode,
            input_shape=parse_ints(self.inputShapeEdit.text(), "input shape", "1,3,224,224"),
            input_dtype=None if dtype == AUTO else dtype,
            settings=settings,
            qat=qat,
            calib=self.calibPicker.source(),
            eval=self.evalPicker.source(),
            train=self.trainPicker.source(),
            benchmark=benchmark,
        )

    def refresh(self) -> None:
        """Show the session's recipe; emits nothing and clears any shown error."""
        r = self.controller.session.recipe
        self._refreshing = True
        blocked = [
            w
            for w in self.form.findChildren(QWidget)
            if isinstance(w, (QComboBox, QAbstractSpinBox, QCheckBox, QLineEdit))
        ]
        previous = [w.blockSignals(True) for w in blocked]
        try:
            select(self.modeCombo, r.mode)
            quantization_section.select_backend(self, r.settings.backend)
            select(self.observerCombo, r.settings.observer)
            self.perChannelCheck.setChecked(r.settings.per_channel)
            self.symmetricCheck.setChecked(r.settings.symmetric)
            select(self.reduceRangeCombo, r.settings.reduce_range)
            select(self.dynamicDtypeCombo, r.settings.dynamic_dtype)
            self._show(self.calibBatchesSpin, r.settings.calib_batches)
            self._show(self.batchSizeSpin, r.settings.batch_size)
            self._show(self.qatEpochsSpin, r.qat.epochs)
            self._show(self.qatLrSpin, r.qat.lr)
            self._show(self.qatBatchSizeSpin, r.qat.batch_size)
            select(self.qatGraphCombo, r.qat.graph)
            self._show(self.freezeBnSpin, r.qat.freeze_bn_epoch)
            self._show(self.freezeObserverSpin, r.qat.freeze_observer_epoch)
            self.calibPicker.set_source(r.calib)
            self.evalPicker.set_source(r.eval)
            self.trainPicker.set_source(r.train)
            self.inputShapeEdit.setText(ints_text(r.input_shape))
            self._show_automatic_input()
            select(self.inputDtypeCombo, r.input_dtype or AUTO)
            self.benchBatchSizesEdit.setText(ints_text(r.benchmark.batch_sizes))
            self._show(self.benchThreadsSpin, r.benchmark.threads or 0)
            self._show(self.benchWarmupSpin, r.benchmark.warmup)
            self._show(self.benchItersSpin, r.benchmark.iters)
        finally:
            for w, was in zip(blocked, previous, strict=True):
                w.blockSignals(was)
            self._refreshing = False
        self._set_error("")
        self._clear_marks()
        self._sync_visibility()

    def set_busy(self, busy: bool) -> None:
        """Lock the form while a run is going (the run uses a snapshot; edits would be misleading)."""
        self.form.setEnabled(not busy)
        self.lockLabel.setVisible(busy)

    def error_text(self) -> str:
        return self.errorLabel.text() if not self.errorLabel.isHidden() else ""

    def problem_widget(self, key: str) -> QWidget | None:
        """The widget that edits recipe key ``key`` (as carried by an engine error), if any."""
        return {
            "calib": self.calibPicker,
            "eval": self.evalPicker,
            "train": self.trainPicker,
            "input_shape": self.inputShapeEdit,
            "input_dtype": self.inputDtypeCombo,
        }.get(key)

    def show_problem(self, key: str, message: str) -> None:
        """A run refused a setting: say so under the form and mark that setting until it is edited."""
        self._set_error(message)
        self._clear_marks()
        widget = self.problem_widget(key)
        if widget is None:
            return
        widget.setProperty("problem", True)
        widget.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # a plain QWidget draws no border otherwise
        widget.setStyleSheet(f"#{widget.objectName()} {{ {PROBLEM_STYLE} }}")  # the frame only, not its children
        widget.setToolTip(message)
        self._marked = widget
        self.scroll.ensureWidgetVisible(widget)

    def _clear_marks(self) -> None:
        widget = getattr(self, "_marked", None)
        if widget is not None:
            widget.setProperty("problem", False)
            widget.setStyleSheet("")
            widget.setToolTip(self._tips.get(widget, ""))
            self._marked = None

    def _show_automatic_input(self) -> None:
        """An empty shape or dtype means automatic: say what automatic is for the loaded model."""
        input_section.show_automatic(self, self.controller.session.loaded)

    # -- internals ----------------------------------------------------------------------
    def _apply(self) -> None:
        if self._refreshing:
            return
        self._sync_visibility()
        try:
            recipe = self.recipe_from_widgets()
        except RecipeError as exc:
            self._set_error(str(exc))
            return
        self._set_error("")
        self._clear_marks()
        if recipe != self.controller.session.recipe:
            self.controller.update_recipe(recipe)

    def _set_error(self, text: str) -> None:
        self.errorLabel.setText(text[:1].upper() + text[1:])
        self.errorLabel.setVisible(bool(text))

    def _sync_visibility(self) -> None:
        mode = self.modeCombo.currentData()
        traits = mode_traits(mode)
        self.modeHint.setText(MODE_HINTS.get(mode, ""))
        self.qatBox.setVisible(traits.uses("qat"))
        self._qform.setRowVisible(self.dynamicDtypeCombo, traits.uses("dynamic_dtype"))
        self._data_form.setRowVisible(self.trainPicker, traits.trains)
        self._data_form.setRowVisible(self._data_titles[self.trainPicker], traits.trains)
        needs_train = traits.trains and self.trainPicker.kind() is None and self.calibPicker.kind() != "demo"
        self._data_form.setRowVisible(self.trainNote, needs_train)
        calib_title = self._data_titles[self.calibPicker]
        if not traits.static_activations:  # no activation ranges to measure: the data only feeds the comparisons
            calib_title.setText("Sample inputs (for the comparisons)")
            calib_title.setToolTip("Dynamic quantization needs no calibration; these inputs measure per-layer errors")
        else:
            calib_title.setText("Calibration")
            calib_title.setToolTip("")
        unused = {
            self.observerCombo: not traits.uses("observer"),
            self.symmetricCheck: not traits.uses("symmetric"),
            self.calibBatchesSpin: not traits.uses("calib_batches"),
        }
        for widget, off in unused.items():
            widget.setEnabled(not off)
            label = self._qform.labelForField(widget)
            if isinstance(label, QLabel):
                label.setEnabled(not off)
            tip = self._tips.setdefault(widget, widget.toolTip())
            widget.setToolTip(f"Not used in this mode: {traits.unused_settings_note}" if off else tip)

    def _show(self, spin: QSpinBox | QDoubleSpinBox, value: Any) -> None:
        spin.setValue(value)
        self._shown[spin] = (spin.value(), value)

    def _value(self, spin: QSpinBox | QDoubleSpinBox) -> Any:
        """The spin's value; the recipe's own value while the spin shows it unchanged (clamped or rounded)."""
        shown, original = self._shown.get(spin, (None, None))
        return original if shown is not None and spin.value() == shown else spin.value()
