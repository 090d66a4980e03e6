"""Form helpers the settings sections share: section boxes, combos, spin boxes, label alignment, number lists."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qstudio.core.errors import RecipeError
from qstudio.options import parse_int_list, split_list
from qstudio.ui.data_picker import make_hint


def parse_ints(text: str, what: str, example: str) -> list[int] | None:
    """``"1, 3,224,224"`` (or ``[1, 3, 224, 224]``, ``1x3x224x224``) -> ints; empty -> None (the syntax: qstudio.options)."""
    if not split_list(text):
        return None
    try:
        return parse_int_list(text, positive=True)
    except ValueError:
        raise RecipeError(
            f"{what} {text.strip()!r} is not valid", f"write positive whole numbers separated by commas, e.g. {example}"
        ) from None


def ints_text(values: list[int] | None) -> str:
    return ",".join(str(v) for v in values) if values else ""


class WheelGuard(QObject):
    """Scrolling the form must not change a combo or spin box the pointer passes over."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            event.ignore()  # ignored + filtered: Qt passes it on to the scroll area
            return True
        return super().eventFilter(obj, event)


class CompactDoubleSpin(QDoubleSpinBox):
    """Shows 0.001, not 0.001000."""

    def textFromValue(self, value: float) -> str:
        text = super().textFromValue(value)
        point = self.locale().decimalPoint()
        return text.rstrip("0").rstrip(point) if point in text else text


def align_labels(root: QWidget) -> None:
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


def section(title: str, name: str = "") -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title, objectName=name or f"{title.lower()}Section")
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    form.setContentsMargins(8, 6, 8, 8)
    form.setVerticalSpacing(5)
    return box, form


def combo(name: str, items: Any) -> QComboBox:
    combo = QComboBox(objectName=name)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)
    for text, data in items:
        combo.addItem(text, data)
    return combo


def spin(name: str, low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox(objectName=name, minimum=low, maximum=high, toolTip=tip)
    spin.setKeyboardTracking(False)  # one recipe per finished number, not per keystroke
    return spin


def hint(name: str) -> QLabel:
    return make_hint(QLabel(objectName=name, wordWrap=True))


def pair(a: QWidget, b: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(a)
    layout.addWidget(b)
    return box


def select(combo: QComboBox, data: Any) -> None:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
