"""The recipe editor: mode, backend, observers, QAT, data, input and benchmark settings.

Every edit builds a new :class:`~qstudio.core.recipe.Recipe` from the widgets
(the recipe's own dataclasses validate it) and hands it to
:meth:`SessionController.update_recipe`.  An invalid entry is shown inline and
leaves the session's recipe as it was.  When the recipe or model changes
elsewhere, the widgets are refreshed from the session without re-emitting.
While a run is going the form is locked.
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
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.environment import available_backends, has_vnni
from qstudio.core.errors import RecipeError
from qstudio.core.recipe import BACKENDS, Recipe
from qstudio.ui.data_picker import WARNING_STYLE, DataPicker, fix_placeholder, make_hint

MODE_ITEMS = (
    ("PTQ (FX graph mode)", "fx"),
    ("PTQ (eager mode)", "eager"),
    ("QAT", "qat"),
    ("Dynamic", "dynamic"),
)
MODE_HINTS = {
    "fx": "Traces the model with torch.fx and places observers itself; handles residual + and torch.cat.",
    "eager": "Uses the model's own QuantStub/DeQuantStub, FloatFunctional and fuse_model() when it has them "
    "(torchvision's quantizable models); otherwise qstudio adds the stubs, and a plain residual + or torch.cat "
    "needs FX mode.",
    "qat": "Trains with fake quantization for a few epochs to win back accuracy; needs labeled training data.",
    "dynamic": "Linear/LSTM/GRU weights in int8, activations quantized on the fly; no calibration needed.",
}
BACKEND_TIPS = {
    "x86": "Recommended on x86 CPUs (picks fbgemm or oneDNN kernels per op)",
    "fbgemm": "The older x86 server backend",
    "qnnpack": "ARM and mobile CPUs",
    "onednn": "Intel oneDNN kernels",
}
OBSERVER_ITEMS = (("Histogram (default)", "histogram"), ("MinMax", "minmax"), ("Moving average", "moving_average"))
REDUCE_RANGE_ITEMS = (("Auto", "auto"), ("7-bit", "on"), ("8-bit", "off"))
DYNAMIC_DTYPE_ITEMS = (("qint8", "qint8"), ("float16", "float16"))
QAT_GRAPH_ITEMS = (("FX graph", "fx"), ("Eager", "eager"))
PROBLEM_STYLE = "border: 2px solid #c62828; border-radius: 3px;"  # a setting a run refused
INPUT_DTYPE_ITEMS = (("Auto (from the model)", None), ("float32", "float32"), ("int64 (token ids)", "int64"))
AUTO = "auto"  # combo data for "None" (None is not a reliable item data)
ERROR_STYLE = "color: #b00020; background: #fdecee; border: 1px solid #e8a0a8; border-radius: 3px; padding: 3px 5px;"
LOCK_STYLE = "color: palette(placeholder-text); font-style: italic;"


def parse_ints(text: str, what: str, example: str) -> list[int] | None:
    """``"1, 3,224,224"`` (or ``[1, 3, 224, 224]``, ``1x3x224x224``) -> ints; empty -> None."""
    cleaned = text.strip().strip("[]()").strip()
    if not cleaned:
        return None
    parts = [p.strip() for p in cleaned.replace("x", ",").replace("×", ",").split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise RecipeError(
            f"{what} {text.strip()!r} is not valid", f"write positive whole numbers separated by commas, e.g. {example}"
        )
    return values


def _ints_text(values: list[int] | None) -> str:
    return ",".join(str(v) for v in values) if values else ""


class _WheelGuard(QObject):
    """Scrolling the form must not change a combo or spin box the pointer passes over."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            event.ignore()  # ignored + filtered: Qt passes it on to the scroll area
            return True
        return super().eventFilter(obj, event)


class _CompactDoubleSpin(QDoubleSpinBox):
    """Shows 0.001, not 0.001000."""

    def textFromValue(self, value: float) -> str:
        text = super().textFromValue(value)
        point = self.locale().decimalPoint()
        return text.rstrip("0").rstrip(point) if point in text else text


class SettingsPanel(QWidget):
    """Edits ``controller.session.recipe``; see the module docstring."""

    def __init__(self, controller: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._refreshing = False
        self._shown: dict[QWidget, tuple[Any, Any]] = {}  # widget -> (value shown, recipe value it stands for)
        self._tips: dict[QWidget, str] = {}  # tool tips of widgets some modes do not use

        # -- mode ----------------------------------------------------------------
        self.modeCombo = _combo("modeCombo", MODE_ITEMS)
        self.modeHint = _hint("modeHint")
        mode_box, mode_form = _section("Mode")
        mode_form.addRow(self.modeCombo)
        mode_form.addRow(self.modeHint)

        # -- quantization ----------------------------------------------------------
        backends = available_backends()
        self.backendCombo = _combo("backendCombo", [(b, b) for b in backends])
        for i, name in enumerate(backends):
            self.backendCombo.setItemData(i, BACKEND_TIPS.get(name, ""), Qt.ItemDataRole.ToolTipRole)
        self.observerCombo = _combo("observerCombo", OBSERVER_ITEMS)
        self.observerCombo.setToolTip("How activation ranges are measured during calibration")
        self.perChannelCheck = QCheckBox("Per-channel weights", objectName="perChannelCheck")
        self.perChannelCheck.setToolTip("One scale per output channel: usually more accurate than one per tensor")
        self.symmetricCheck = QCheckBox("Symmetric activations", objectName="symmetricCheck")
        self.symmetricCheck.setToolTip(
            "Zero point fixed at the middle; asymmetric (the default) fits ReLU outputs better"
        )
        self.reduceRangeCombo = _combo("reduceRangeCombo", REDUCE_RANGE_ITEMS)
        vnni = "has" if has_vnni() else "has no"
        self.reduceRangeCombo.setToolTip(
            "Auto: 7-bit activations for static x86/fbgemm models (their depthwise-conv kernels overflow with 8 bits, "
            "even with VNNI), 8 bits for dynamic Linear/LSTM on CPUs with VNNI/AMX, 8 bits on onednn/qnnpack. "
            f"This CPU {vnni} VNNI/AMX."
        )
        self.dynamicDtypeCombo = _combo("dynamicDtypeCombo", DYNAMIC_DTYPE_ITEMS)
        self.dynamicDtypeCombo.setToolTip(
            "qint8: int8 weights, fastest; float16: half-precision weights, closest to FP32"
        )
        self.calibBatchesSpin = _spin(
            "calibBatchesSpin",
            1,
            10000,
            "Batches of calibration data fed through the observers; at most as many as the data holds "
            "(samples ÷ batch size): a run with fewer says so in the log",
        )
        self.batchSizeSpin = _spin("batchSizeSpin", 1, 4096, "Batch size for calibration and the per-layer comparison")
        quant_box, qform = _section("Quantization")
        qform.addRow("Backend", self.backendCombo)
        qform.addRow("Observer", self.observerCombo)
        qform.addRow("Activations", self.reduceRangeCombo)
        qform.addRow("Weights", self.dynamicDtypeCombo)
        qform.addRow("", _pair(self.perChannelCheck, self.symmetricCheck))
        qform.addRow("Calib. batches", self.calibBatchesSpin)
        qform.addRow("Batch size", self.batchSizeSpin)
        self._qform = qform

        # -- QAT -----------------------------------------------------------------------
        self.qatEpochsSpin = _spin("qatEpochsSpin", 1, 1000, "Training epochs with fake quantization")
        self.qatLrSpin = _CompactDoubleSpin(objectName="qatLrSpin", decimals=6, minimum=0.000001, maximum=10.0)
        self.qatLrSpin.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        self.qatLrSpin.setKeyboardTracking(False)
        self.qatLrSpin.setToolTip("Learning rate (SGD); QAT fine-tunes, so use about 1/10 of the original rate")
        self.qatBatchSizeSpin = _spin("qatBatchSizeSpin", 1, 4096, "Training batch size")
        self.qatGraphCombo = _combo("qatGraphCombo", QAT_GRAPH_ITEMS)
        self.qatGraphCombo.setToolTip("How fake-quant modules are inserted: FX tracing, or eager QuantStub/DeQuantStub")
        self.freezeBnSpin = _spin("freezeBnSpin", 0, 1000, "BatchNorm uses running statistics from this epoch on")
        self.freezeObserverSpin = _spin(
            "freezeObserverSpin", 0, 1000, "Observers stop updating scales from this epoch on"
        )
        self.qatBox, qat_form = _section("Quantization-aware training", "qatSection")
        qat_form.addRow("Epochs", self.qatEpochsSpin)
        qat_form.addRow("Learning rate", self.qatLrSpin)
        qat_form.addRow("Batch size", self.qatBatchSizeSpin)
        qat_form.addRow("Graph", self.qatGraphCombo)
        qat_form.addRow("Freeze BN at", self.freezeBnSpin)
        qat_form.addRow("Freeze observers", self.freezeObserverSpin)

        # -- data ----------------------------------------------------------------------
        self.calibPicker = DataPicker("calibration", False)
        self.calibPicker.setObjectName("calibPicker")
        self.evalPicker = DataPicker("evaluation", True)
        self.evalPicker.setObjectName("evalPicker")
        self.trainPicker = DataPicker("training", True)
        self.trainPicker.setObjectName("trainPicker")
        data_box, data_form = _section("Data")
        self._data_titles: dict[DataPicker, QLabel] = {}
        for title, picker in (
            ("Calibration", self.calibPicker),
            ("Evaluation", self.evalPicker),
            ("Training (QAT)", self.trainPicker),
        ):
            heading = QLabel(title, wordWrap=True)  # "Sample inputs (for the comparisons)" in dynamic mode
            heading.setStyleSheet("font-weight: 600;")
            data_form.addRow(heading)
            data_form.addRow(picker)
            self._data_titles[picker] = heading
        self.trainNote = QLabel(
            "QAT needs labeled training data: choose a training source (the demo split is used only with demo calibration data).",
            objectName="trainNote",
            wordWrap=True,
        )
        self.trainNote.setStyleSheet(WARNING_STYLE)
        data_form.addRow(self.trainNote)
        self._data_form = data_form

        # -- input -------------------------------------------------------------------
        self.inputShapeEdit = QLineEdit(objectName="inputShapeEdit", placeholderText="from the model")
        self.inputShapeEdit.setToolTip(
            "Example input shape, batch first, e.g. 1,3,224,224; empty: the shape the model declares"
        )
        self.inputDtypeCombo = _combo("inputDtypeCombo", [(t, AUTO if d is None else d) for t, d in INPUT_DTYPE_ITEMS])
        input_box, input_form = _section("Input")
        input_form.addRow("Shape", self.inputShapeEdit)
        input_form.addRow("Type", self.inputDtypeCombo)

        # -- benchmark ------------------------------------------------------------------
        self.benchBatchSizesEdit = QLineEdit(objectName="benchBatchSizesEdit", placeholderText="1,8")
        self.benchBatchSizesEdit.setToolTip("Batch sizes to time, comma separated")
        self.benchThreadsSpin = _spin(
            "benchThreadsSpin", 0, 1024, "CPU threads for the benchmark (default: PyTorch's choice)"
        )
        self.benchThreadsSpin.setSpecialValueText("default")
        self.benchWarmupSpin = _spin("benchWarmupSpin", 0, 100000, "Untimed runs before measuring")
        self.benchItersSpin = _spin("benchItersSpin", 1, 100000, "Timed runs per batch size")
        bench_box, bench_form = _section("Benchmark")
        bench_form.addRow("Batch sizes", self.benchBatchSizesEdit)
        bench_form.addRow("Threads", self.benchThreadsSpin)
        bench_form.addRow("Warm-up runs", self.benchWarmupSpin)
        bench_form.addRow("Timed runs", self.benchItersSpin)

        # -- assembly -------------------------------------------------------------------
        self.form = QWidget(objectName="settingsForm")
        column = QVBoxLayout(self.form)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(8)
        for box in (mode_box, quant_box, self.qatBox, data_box, input_box, bench_box):
            column.addWidget(box)
        column.addStretch(1)

        _align_labels(self.form)
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
        guard = _WheelGuard(self)
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
            _select(self.modeCombo, r.mode)
            self._select_backend(r.settings.backend)
            _select(self.observerCombo, r.settings.observer)
            self.perChannelCheck.setChecked(r.settings.per_channel)
            self.symmetricCheck.setChecked(r.settings.symmetric)
            _select(self.reduceRangeCombo, r.settings.reduce_range)
            _select(self.dynamicDtypeCombo, r.settings.dynamic_dtype)
            self._show(self.calibBatchesSpin, r.settings.calib_batches)
            self._show(self.batchSizeSpin, r.settings.batch_size)
            self._show(self.qatEpochsSpin, r.qat.epochs)
            self._show(self.qatLrSpin, r.qat.lr)
            self._show(self.qatBatchSizeSpin, r.qat.batch_size)
            _select(self.qatGraphCombo, r.qat.graph)
            self._show(self.freezeBnSpin, r.qat.freeze_bn_epoch)
            self._show(self.freezeObserverSpin, r.qat.freeze_observer_epoch)
            self.calibPicker.set_source(r.calib)
            self.evalPicker.set_source(r.eval)
            self.trainPicker.set_source(r.train)
            self.inputShapeEdit.setText(_ints_text(r.input_shape))
            self._show_automatic_input()
            _select(self.inputDtypeCombo, r.input_dtype or AUTO)
            self.benchBatchSizesEdit.setText(_ints_text(r.benchmark.batch_sizes))
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
        """An empty shape or dtype means automatic: say what automatic is for the loaded model, and where it comes from."""
        loaded = self.controller.session.loaded
        if loaded is None:
            self.inputShapeEdit.setPlaceholderText("from the model")
            return
        shape = _ints_text(loaded.input_shape) if loaded.input_shape else "unknown"
        self.inputShapeEdit.setPlaceholderText(f"auto: {shape}")
        origin = f" ({loaded.input_origin})" if loaded.input_origin else ""
        self.inputShapeEdit.setToolTip(
            f"Example input shape, batch first, e.g. 1,3,224,224. Empty: automatic, {shape}{origin}; "
            "real calibration data sets it from its own samples"
        )
        index = self.inputDtypeCombo.findData(AUTO)
        if index >= 0:
            self.inputDtypeCombo.setItemText(index, f"Auto ({loaded.input_dtype or 'float32'})")

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
        self.modeHint.setText(MODE_HINTS.get(mode, ""))
        self.qatBox.setVisible(mode == "qat")
        self._qform.setRowVisible(self.dynamicDtypeCombo, mode == "dynamic")
        self._data_form.setRowVisible(self.trainPicker, mode == "qat")
        self._data_form.setRowVisible(self._data_titles[self.trainPicker], mode == "qat")
        needs_train = mode == "qat" and self.trainPicker.kind() is None and self.calibPicker.kind() != "demo"
        self._data_form.setRowVisible(self.trainNote, needs_train)
        calib_title = self._data_titles[self.calibPicker]
        if mode == "dynamic":
            calib_title.setText("Sample inputs (for the comparisons)")
            calib_title.setToolTip("Dynamic quantization needs no calibration; these inputs measure per-layer errors")
        else:
            calib_title.setText("Calibration")
            calib_title.setToolTip("")
        unused = {
            self.observerCombo: mode in ("qat", "dynamic"),
            self.symmetricCheck: mode == "dynamic",
            self.calibBatchesSpin: mode in ("qat", "dynamic"),
        }
        why = {
            "qat": "QAT trains with its own moving-average observers",
            "dynamic": "dynamic quantization needs no calibration",
        }
        for widget, off in unused.items():
            widget.setEnabled(not off)
            label = self._qform.labelForField(widget)
            if isinstance(label, QLabel):
                label.setEnabled(not off)
            tip = self._tips.setdefault(widget, widget.toolTip())
            widget.setToolTip(f"Not used in this mode: {why[mode]}" if off else tip)

    def _select_backend(self, name: str) -> None:
        """Select ``name``; a recipe's backend this machine lacks is shown, marked, so it is not silently replaced."""
        for i in range(self.backendCombo.count() - 1, -1, -1):
            if self.backendCombo.itemData(i) not in available_backends():
                self.backendCombo.removeItem(i)
        if self.backendCombo.findData(name) < 0 and name in BACKENDS:
            self.backendCombo.addItem(f"{name} (not available here)", name)
        _select(self.backendCombo, name)

    def _show(self, spin: QSpinBox | QDoubleSpinBox, value: Any) -> None:
        spin.setValue(value)
        self._shown[spin] = (spin.value(), value)

    def _value(self, spin: QSpinBox | QDoubleSpinBox) -> Any:
        """The spin's value; the recipe's own value while the spin shows it unchanged (clamped or rounded)."""
        shown, original = self._shown.get(spin, (None, None))
        return original if shown is not None and spin.value() == shown else spin.value()


def _align_labels(root: QWidget) -> None:
    """One label column width for every form below ``root``, so fields line up across sections."""
    labels: list[QLabel] = []
    for form in root.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if item is not None and isinstance(item.widget(), QLabel):
                labels.append(item.widget())
    width = max((label.sizeHint().width() for label in labels), default=0)
    for label in labels:
        label.setMinimumWidth(width)
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _section(title: str, name: str = "") -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title, objectName=name or f"{title.lower()}Section")
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    form.setContentsMargins(8, 6, 8, 8)
    form.setVerticalSpacing(5)
    return box, form


def _combo(name: str, items: Any) -> QComboBox:
    combo = QComboBox(objectName=name)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)
    for text, data in items:
        combo.addItem(text, data)
    return combo


def _spin(name: str, low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox(objectName=name, minimum=low, maximum=high, toolTip=tip)
    spin.setKeyboardTracking(False)  # one recipe per finished number, not per keystroke
    return spin


def _hint(name: str) -> QLabel:
    return make_hint(QLabel(objectName=name, wordWrap=True))


def _pair(a: QWidget, b: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(a)
    layout.addWidget(b)
    return box


def _select(combo: QComboBox, data: Any) -> None:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
