"""The Input section: the example input's shape and dtype (empty or Auto: what the loaded model declares)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QGroupBox, QLineEdit

from qstudio.ui.settings import form

INPUT_DTYPE_ITEMS = (("Auto (from the model)", None), ("float32", "float32"), ("int64 (token ids)", "int64"))
AUTO = "auto"  # combo data for "None" (None is not a reliable item data)


def build(panel: Any) -> QGroupBox:
    """``panel.inputShapeEdit`` and ``panel.inputDtypeCombo`` in the Input box."""
    panel.inputShapeEdit = QLineEdit(objectName="inputShapeEdit", placeholderText="from the model")
    panel.inputShapeEdit.setToolTip(
        "Example input shape, batch first, e.g. 1,3,224,224; empty: the shape the model declares"
    )
    panel.inputDtypeCombo = form.combo("inputDtypeCombo", [(t, AUTO if d is None else d) for t, d in INPUT_DTYPE_ITEMS])
    input_box, input_form = form.section("Input")
    input_form.addRow("Shape", panel.inputShapeEdit)
    input_form.addRow("Type", panel.inputDtypeCombo)
    return input_box


def show_automatic(panel: Any, loaded: Any) -> None:
    """An empty shape or dtype means automatic: say what automatic is for the loaded model, and where it comes from."""
    if loaded is None:
        panel.inputShapeEdit.setPlaceholderText("from the model")
        return
    shape = form.ints_text(loaded.input_shape) if loaded.input_shape else "unknown"
    panel.inputShapeEdit.setPlaceholderText(f"auto: {shape}")
    origin = f" ({loaded.input_origin})" if loaded.input_origin else ""
    panel.inputShapeEdit.setToolTip(
        f"Example input shape, batch first, e.g. 1,3,224,224. Empty: automatic, {shape}{origin}; "
        "real calibration data sets it from its own samples"
    )
    index = panel.inputDtypeCombo.findData(AUTO)
    if index >= 0:
        panel.inputDtypeCombo.setItemText(index, f"Auto ({loaded.input_dtype or 'float32'})")
