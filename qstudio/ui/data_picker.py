"""Choose one data source (calibration, evaluation or training) for the recipe.

A :class:`DataPicker` edits one :class:`~qstudio.core.recipe.DataSource`: the
kind (the demo digits, an image folder, a tensor file, random data), the path,
a labels file for tensors, and image preprocessing for folders.  It reads no
data itself; the engine loads and checks it when a run starts.

Files are chosen with ``QFileDialog``'s static functions, looked up at call
time (tests replace them).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from qstudio.core.errors import RecipeError
from qstudio.core.recipe import DataSource
from qstudio.options import parse_float_list, split_list

NONE = "none"  # the combo's data for "no source" (None is not a reliable item data)
RANDOM_WARNING = "Random data: accuracy, agreement and per-layer figures will not describe real inputs"
DEFAULT_MEAN = "0.485,0.456,0.406"
DEFAULT_STD = "0.229,0.224,0.225"
TENSOR_FILTER = "Tensor files (*.npy *.pt *.pth);;All files (*)"
WARNING_STYLE = "color: #8a5a00; background: #fff4d6; border: 1px solid #e0b040; border-radius: 3px; padding: 3px 5px;"

# demo split used for each role; DataSource.split names
_SPLITS = {"calibration": "calib", "evaluation": "eval", "training": "train"}
_NONE_TEXT = {
    "evaluation": "Automatic",
    "training": "None (demo train split)",
}
_NONE_TIP = {
    "evaluation": "Agreement and accuracy are measured on the calibration data; "
    "with the demo digits, on the demo's evaluation split.",
    "training": "When calibrating on the demo digits, QAT trains on the demo's training split; "
    "other calibration data needs labeled training data here.",
}


def parse_floats(text: str, what: str) -> list[float] | None:
    """``"0.485, 0.456,0.406"`` -> floats; empty -> None; anything else -> RecipeError (the syntax: qstudio.options)."""
    if not split_list(text):
        return None
    try:
        return parse_float_list(text)
    except ValueError:
        raise RecipeError(
            f"{what} {text.strip().strip('[]()').strip()!r} is not a list of numbers",
            "write numbers separated by commas, e.g. 0.485,0.456,0.406",
        ) from None


class DataPicker(QWidget):
    """Edits one data source.  ``source()`` builds it (or raises RecipeError); ``changed`` fires on every user edit."""

    changed = Signal()

    def __init__(self, role: str, allow_none: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.allow_none = allow_none
        self._split = _SPLITS.get(role, "calib")
        self._limit: int | None = None  # not editable here; kept from the recipe
        self._paths: dict[str, str] = {}  # remembered per kind: a folder is not a tensor file
        self._labels: str = ""
        self._kind_before: str = "demo"  # combo data before the user's last pick
        self._setting = False

        self.kindCombo = QComboBox(objectName="kindCombo")
        self.kindCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kindCombo.setMinimumContentsLength(12)
        self.kindCombo.addItem("Demo digits", "demo")
        self.kindCombo.addItem("Image folder…", "folder")
        self.kindCombo.addItem("Tensor file (.npy/.pt)…", "tensor")
        self.kindCombo.addItem("Random (not meaningful)", "random")
        self.kindCombo.setItemData(
            0, "The digits set shipped with qstudio (for the demo model)", Qt.ItemDataRole.ToolTipRole
        )
        self.kindCombo.setItemData(
            1, "A folder of images; one sub-folder per class gives labels", Qt.ItemDataRole.ToolTipRole
        )
        self.kindCombo.setItemData(
            2, "A .npy or .pt tensor, samples first; labels from a second file", Qt.ItemDataRole.ToolTipRole
        )
        self.kindCombo.setItemData(
            3,
            "Random inputs of the model's shape: the run works, the figures mean nothing",
            Qt.ItemDataRole.ToolTipRole,
        )
        if allow_none:
            self.kindCombo.addItem(_NONE_TEXT.get(role, "None (use calibration data)"), NONE)
            if role == "evaluation":
                self.kindCombo.setItemData(
                    self.kindCombo.count() - 1,
                    "The demo's held-out eval split when calibrating on the demo, otherwise the calibration data",
                    Qt.ItemDataRole.ToolTipRole,
                )
            self.kindCombo.setItemData(self.kindCombo.count() - 1, _NONE_TIP.get(role, ""), Qt.ItemDataRole.ToolTipRole)

        self.pathEdit = QLineEdit(objectName="pathEdit", readOnly=True)
        self.pathEdit.setPlaceholderText("nothing chosen")
        self.browseButton = QPushButton("Browse…", objectName="browseButton")
        path_row = _row(self.pathEdit, self.browseButton)

        self.labelsEdit = QLineEdit(objectName="labelsEdit", readOnly=True)
        self.labelsEdit.setPlaceholderText("none")
        self.labelsButton = QPushButton("Browse…", objectName="labelsButton")
        self.labelsClear = QToolButton(
            objectName="labelsClear", text="✕", toolTip="Forget the labels file", autoRaise=True
        )
        labels_row = _row(self.labelsEdit, self.labelsButton, self.labelsClear)

        self.resizeSpin = _size_spin("resizeSpin", "Shorter side is resized to this many pixels (off: keep the size)")
        self.cropSpin = _size_spin("cropSpin", "Centre crop to a square of this many pixels (off: no crop)")
        size_row = _row(self.resizeSpin, QLabel("crop"), self.cropSpin, stretch=True)

        self.meanEdit = QLineEdit(objectName="meanEdit", placeholderText=DEFAULT_MEAN)
        self.stdEdit = QLineEdit(objectName="stdEdit", placeholderText=DEFAULT_STD)
        for edit in (self.meanEdit, self.stdEdit, self.pathEdit, self.labelsEdit):
            fix_placeholder(edit)
        for edit in (self.meanEdit, self.stdEdit):
            edit.setToolTip("Per-channel values, comma separated; empty: ImageNet values (none for grayscale)")
        self.grayscaleCheck = QCheckBox("Grayscale (1 channel)", objectName="grayscaleCheck")

        self.warningLabel = QLabel("⚠ " + RANDOM_WARNING, objectName="randomWarning", wordWrap=True)
        self.warningLabel.setStyleSheet(WARNING_STYLE)
        self.warningLabel.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.folderHint = QLabel("Labels come from class sub-folders.", objectName="folderHint", wordWrap=True)
        make_hint(self.folderHint)

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.addRow("Source", self.kindCombo)
        form.addRow("Path", path_row)
        form.addRow("Labels", labels_row)
        form.addRow("Resize", size_row)
        form.addRow("Mean", self.meanEdit)
        form.addRow("Std", self.stdEdit)
        form.addRow("", self.grayscaleCheck)
        form.addRow(self.folderHint)
        form.addRow(self.warningLabel)
        self._form = form
        self._path_row, self._labels_row = path_row, labels_row
        self._folder_rows: list[QWidget] = [size_row, self.meanEdit, self.stdEdit, self.grayscaleCheck, self.folderHint]
        labels_label = form.labelForField(labels_row)
        if isinstance(labels_label, QLabel):
            labels_label.setToolTip("Labels (.npy/.pt, optional): integer class per sample, for accuracy")
        self.labelsEdit.setToolTip("Labels (.npy/.pt, optional): integer class per sample, for accuracy")

        self.kindCombo.currentIndexChanged.connect(self._on_kind_changed)
        self.kindCombo.activated.connect(self._on_kind_activated)
        self.browseButton.clicked.connect(self.browse)
        self.labelsButton.clicked.connect(self.browse_labels)
        self.labelsClear.clicked.connect(self._clear_labels)
        for spin in (self.resizeSpin, self.cropSpin):
            spin.valueChanged.connect(self._edited)
        for edit in (self.meanEdit, self.stdEdit):
            edit.editingFinished.connect(self._edited)
        self.grayscaleCheck.toggled.connect(self._edited)
        self._sync()

    # -- public ------------------------------------------------------------------
    def kind(self) -> str | None:
        """The chosen DataSource kind, or None for the 'None' entry."""
        data = self.kindCombo.currentData()
        return None if data == NONE else data

    def source(self) -> DataSource | None:
        """The source the widgets describe; RecipeError names what is missing or wrong."""
        kind = self.kind()
        if kind is None:
            return None
        what = f"{self.role} data"
        if kind == "demo":
            return self._build(kind="demo", split=self._split, limit=self._limit)
        if kind == "random":
            return self._build(kind="random", split=self._split, limit=self._limit)
        path = self._paths.get(kind, "")
        if kind == "folder":
            if not path:
                raise RecipeError(f"{what}: no image folder is chosen", "press Browse… next to Path and pick a folder")
            mean = parse_floats(self.meanEdit.text(), f"{what} mean")
            std = parse_floats(self.stdEdit.text(), f"{what} std")
            if (mean is None) != (std is None):
                raise RecipeError(
                    f"{what}: mean and std must be given together", "fill in both, or clear both for the defaults"
                )
            if mean is not None and std is not None and len(mean) != len(std):
                raise RecipeError(
                    f"{what}: mean has {len(mean)} values but std has {len(std)}", "give one value per channel in both"
                )
            return self._build(
                kind="folder",
                path=path,
                split=self._split,
                limit=self._limit,
                resize=self.resizeSpin.value() or None,
                crop=self.cropSpin.value() or None,
                mean=mean,
                std=std,
                grayscale=self.grayscaleCheck.isChecked(),
            )
        if not path:
            raise RecipeError(
                f"{what}: no tensor file is chosen", "press Browse… next to Path and pick a .npy or .pt file"
            )
        return self._build(kind="tensor", path=path, labels=self._labels or None, split=self._split, limit=self._limit)

    def set_source(self, source: DataSource | None) -> None:
        """Show ``source`` (None: the 'None' entry, or the demo if this picker has none); emits nothing."""
        self._setting = True
        try:
            if source is None:
                kind = None if self.allow_none else "demo"
                self._limit = None
            else:
                kind = source.kind
                self._limit = source.limit
                if source.kind == "demo":
                    self._split = source.split
                if source.kind in ("folder", "tensor") and source.path:
                    self._paths[source.kind] = source.path
                if source.kind == "tensor":
                    self._labels = source.labels or ""
                if source.kind == "folder":
                    self.resizeSpin.setValue(source.resize or 0)
                    self.cropSpin.setValue(source.crop or 0)
                    self.meanEdit.setText(_floats_text(source.mean))
                    self.stdEdit.setText(_floats_text(source.std))
                    self.grayscaleCheck.setChecked(source.grayscale)
            index = self.kindCombo.findData(NONE if kind is None else kind)
            self.kindCombo.setCurrentIndex(max(index, 0))
            self._kind_before = self.kindCombo.currentData()
        finally:
            self._setting = False
        self._sync()

    def browse(self) -> bool:
        """Ask for the folder or file of the current kind; True if one was chosen."""
        kind = self.kind()
        start = self._paths.get(kind or "", "")
        title = f"Choose {self.role} data"
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, title, start)
        elif kind == "tensor":
            path, _ = QFileDialog.getOpenFileName(self, title, start, TENSOR_FILTER)
        else:
            return False
        if not path:
            return False
        self._paths[kind] = str(path)
        self._sync()
        self.changed.emit()
        return True

    def browse_labels(self) -> bool:
        start = self._labels or self._paths.get("tensor", "")
        path, _ = QFileDialog.getOpenFileName(self, f"Choose {self.role} labels", start, TENSOR_FILTER)
        if not path:
            return False
        self._labels = str(path)
        self._sync()
        self.changed.emit()
        return True

    # -- internals -----------------------------------------------------------------
    def _build(self, **kwargs: object) -> DataSource:
        try:
            return DataSource(**kwargs)  # type: ignore[arg-type]
        except RecipeError as exc:
            raise RecipeError(f"{self.role} data: {exc.problem}", exc.fix) from None

    def _clear_labels(self) -> None:
        if self._labels:
            self._labels = ""
            self._sync()
            self.changed.emit()

    def _on_kind_changed(self) -> None:
        self._sync()
        if not self._setting:
            self.changed.emit()

    def _on_kind_activated(self) -> None:
        """The user picked a kind: a folder or file kind without a path opens the dialog at once."""
        kind = self.kind()
        if kind in ("folder", "tensor") and not self._paths.get(kind) and not self.browse():
            # cancelled: go back to what was there, rather than leave a source that cannot run
            index = self.kindCombo.findData(self._kind_before)
            if index >= 0 and index != self.kindCombo.currentIndex():
                self.kindCombo.setCurrentIndex(index)
        self._kind_before = self.kindCombo.currentData()

    def _edited(self) -> None:
        if not self._setting:
            self.changed.emit()

    def _sync(self) -> None:
        """Show the rows the current kind uses, and the chosen paths."""
        kind = self.kind()
        path = self._paths.get(kind or "", "")
        self.pathEdit.setText(path)
        self.pathEdit.setToolTip(path)
        self.pathEdit.setCursorPosition(len(path))  # the file name is the informative end
        self.labelsEdit.setText(self._labels)
        self.labelsEdit.setToolTip(self._labels)
        self.labelsEdit.setCursorPosition(len(self._labels))
        self.labelsClear.setEnabled(bool(self._labels))
        self._form.setRowVisible(self._path_row, kind in ("folder", "tensor"))
        self._form.setRowVisible(self._labels_row, kind == "tensor")
        for row in self._folder_rows:
            self._form.setRowVisible(row, kind == "folder")
        self._form.setRowVisible(self.warningLabel, kind == "random")


def make_hint(label: QLabel) -> QLabel:
    """Grey explanatory text that still greys out (not darkens) when its form is disabled."""
    palette = label.palette()
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        palette.setColor(group, QPalette.ColorRole.WindowText, palette.color(group, QPalette.ColorRole.PlaceholderText))
    label.setPalette(palette)
    return label


def fix_placeholder(edit: QLineEdit) -> QLineEdit:
    """Keep placeholder text lighter than real text when the edit is disabled (some styles darken it)."""
    palette = edit.palette()
    disabled = QPalette.ColorGroup.Disabled
    palette.setColor(disabled, QPalette.ColorRole.PlaceholderText, palette.color(disabled, QPalette.ColorRole.Midlight))
    edit.setPalette(palette)
    return edit


def _row(*widgets: QWidget, stretch: bool = False) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    for w in widgets:
        layout.addWidget(w)
    if stretch:
        layout.addStretch(1)
    return box


def _size_spin(name: str, tip: str) -> QSpinBox:
    spin = QSpinBox(objectName=name, minimum=0, maximum=8192, singleStep=16, toolTip=tip)
    spin.setSpecialValueText("off")
    spin.setSuffix(" px")
    spin.setKeyboardTracking(False)
    return spin


def _floats_text(values: list[float] | None) -> str:
    return ",".join(f"{v:g}" for v in values) if values else ""
