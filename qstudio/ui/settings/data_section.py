"""The Data section: the calibration, evaluation and training (QAT) data pickers.

Each source is a :class:`~qstudio.ui.data_picker.DataPicker`; in dynamic mode
the calibration picker's heading reads "Sample inputs" (no calibration, the
inputs only measure per-layer errors), in QAT mode the training picker shows.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QGroupBox, QLabel

from qstudio.ui.data_picker import WARNING_STYLE, DataPicker
from qstudio.ui.settings import form


def build(panel: Any) -> QGroupBox:
    """``panel.calibPicker``, ``evalPicker``, ``trainPicker`` and ``trainNote``; the form is ``panel._data_form``."""
    panel.calibPicker = DataPicker("calibration", False)
    panel.calibPicker.setObjectName("calibPicker")
    panel.evalPicker = DataPicker("evaluation", True)
    panel.evalPicker.setObjectName("evalPicker")
    panel.trainPicker = DataPicker("training", True)
    panel.trainPicker.setObjectName("trainPicker")
    data_box, data_form = form.section("Data")
    titles: dict[DataPicker, QLabel] = {}
    for title, picker in (
        ("Calibration", panel.calibPicker),
        ("Evaluation", panel.evalPicker),
        ("Training (QAT)", panel.trainPicker),
    ):
        heading = QLabel(title, wordWrap=True)  # "Sample inputs (for the comparisons)" in dynamic mode
        heading.setStyleSheet("font-weight: 600;")
        data_form.addRow(heading)
        data_form.addRow(picker)
        titles[picker] = heading
    panel._data_titles = titles
    panel.trainNote = QLabel(
        "QAT needs labeled training data: choose a training source (the demo split is used only with demo calibration data).",
        objectName="trainNote",
        wordWrap=True,
    )
    panel.trainNote.setStyleSheet(WARNING_STYLE)
    data_form.addRow(panel.trainNote)
    panel._data_form = data_form
    return data_box
