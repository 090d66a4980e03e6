"""Run > Search for the fastest within budget…: what the search may lose, how long it may take, where it may deploy.

The dialog only builds a :class:`~qstudio.core.search.SearchSettings`; the
window starts the search on the session's current recipe and model
(:meth:`qstudio.ui.controller.SessionController.search`).  Its widgets'
objectNames (``searchMaxDrop``, ``searchMetric``, ``searchTimeBudget``,
``searchTrials``, ``searchRuntimes``) are part of the testing surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from qstudio.core.search import SearchSettings

INTRO = (
    "Tries configurations of the current settings (mode, backend, observer, calibration size, which of the most "
    "sensitive layers stay float, the runtime) and keeps the fastest whose accuracy stays within the budget of "
    "FP32's. Each trial is a full run; Cancel keeps the best found so far."
)
METRIC_CHOICES = (
    (None, "auto: accuracy with labelled eval data, else agreement"),
    ("accuracy", "accuracy (needs labelled eval data)"),
    ("agreement", "agreement with FP32 (no labels needed)"),
)


def installed_runtimes() -> list[str]:
    """The runtimes besides TorchScript a trial may deploy to here (their packages are installed)."""
    from qstudio.core.runtimes import get_runtime

    found = []
    for name in ("onnx", "openvino"):
        try:
            if get_runtime(name).missing() is None:
                found.append(name)
        except Exception:  # a runtime that cannot even be asked is not offered
            continue
    return found


class SearchDialog(QDialog):
    """The search's settings; :meth:`settings` reads them once the user pressed Search."""

    def __init__(self, parent: QWidget | None = None, *, runtimes: list[str] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchDialog")
        self.setWindowTitle("Search for the fastest within budget")
        self.extra_runtimes = installed_runtimes() if runtimes is None else list(runtimes)
        v = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        intro.setObjectName("searchIntro")
        v.addWidget(intro)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.max_drop_box = QDoubleSpinBox(objectName="searchMaxDrop")
        self.max_drop_box.setRange(0.0, 100.0)
        self.max_drop_box.setDecimals(2)
        self.max_drop_box.setSingleStep(0.25)
        self.max_drop_box.setValue(1.0)
        self.max_drop_box.setSuffix(" points")
        self.max_drop_box.setToolTip("How many points of accuracy (or agreement) below FP32 the winner may lose")
        form.addRow("Accuracy budget:", self.max_drop_box)

        self.metric_combo = QComboBox(objectName="searchMetric")
        for data, text in METRIC_CHOICES:
            self.metric_combo.addItem(text, data)
        form.addRow("Measured as:", self.metric_combo)

        self.time_budget_box = QDoubleSpinBox(objectName="searchTimeBudget")
        self.time_budget_box.setRange(0.0, 24 * 60.0)
        self.time_budget_box.setDecimals(1)
        self.time_budget_box.setSingleStep(5.0)
        self.time_budget_box.setValue(0.0)
        self.time_budget_box.setSuffix(" min")
        self.time_budget_box.setSpecialValueText("no limit")
        self.time_budget_box.setToolTip("Stop after this long and keep the best found so far (0: no time limit)")
        form.addRow("Time limit:", self.time_budget_box)

        self.trials_box = QSpinBox(objectName="searchTrials")
        self.trials_box.setRange(1, 1000)
        self.trials_box.setValue(16)
        self.trials_box.setToolTip("How many configurations to try at most (the first is the settings as they are)")
        form.addRow("Trials:", self.trials_box)

        titles = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}
        self.runtimes_box = QCheckBox(objectName="searchRuntimes")
        if self.extra_runtimes:
            self.runtimes_box.setText(f"also try {' and '.join(titles.get(n, n) for n in self.extra_runtimes)}")
            self.runtimes_box.setChecked(True)
        else:
            self.runtimes_box.setText("TorchScript only (no other runtime is installed)")
            self.runtimes_box.setChecked(False)
            self.runtimes_box.setEnabled(False)
        self.runtimes_box.setToolTip("Trials may deploy to these runtimes as well as TorchScript")
        form.addRow("Runtimes:", self.runtimes_box)
        v.addLayout(form)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Search")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        v.addWidget(buttons)
        self.buttons = buttons
        self.resize(max(self.sizeHint().width(), 480), self.sizeHint().height())

    def settings(self) -> SearchSettings:
        """The settings as chosen (raises RecipeError on a value the engine refuses)."""
        from qstudio.core.search import SearchSettings

        minutes = self.time_budget_box.value()
        return SearchSettings(
            max_drop=float(self.max_drop_box.value()),
            metric=self.metric_combo.currentData(),
            time_budget=minutes * 60.0 if minutes > 0 else None,
            trials=int(self.trials_box.value()),
            runtimes=None if self.runtimes_box.isChecked() and self.extra_runtimes else [],
        )
