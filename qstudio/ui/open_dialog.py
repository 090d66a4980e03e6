"""Choosing a model to open: a weights file with its factory, a factory alone, or a torchvision architecture.

Only the choosing: whether the chosen file would run code, and asking about
it before anything is loaded, is :mod:`qstudio.ui.trust_prompt`'s job.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from qstudio.core.recipe import ModelSource

MODEL_FILTER = "Models (*.pt *.pth *.bin *.safetensors *.py *.ts *.ptl *.jit);;All files (*)"
WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors"}


def torchvision_names() -> list[str]:
    import torchvision

    models = torchvision.models
    # classification models, then their quantization-ready twins (own QuantStub/DeQuantStub and fuse_model(),
    # built float: the flow of PyTorch's eager-mode tutorials)
    return sorted(models.list_models(module=models)) + sorted(models.list_models(module=models.quantization))


class OpenModelDialog(QDialog):
    """A model file and, for a state_dict, the factory that builds its module."""

    def __init__(self, parent: QWidget | None = None, start: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.setObjectName("openModelDialog")
        self.resize(620, 180)
        form = QFormLayout(self)
        self.path = QLineEdit(start)
        self.path.setObjectName("modelPathEdit")
        self.path.setPlaceholderText("weights.pt, model.safetensors, model.py:build, traced.pt …")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_model)
        row = QHBoxLayout()
        row.addWidget(self.path)
        row.addWidget(browse)
        form.addRow("Model", row)
        self.factory = QLineEdit()
        self.factory.setObjectName("factoryEdit")
        self.factory.setPlaceholderText("model.py:build (needed for a state_dict or .safetensors file)")
        browse_f = QPushButton("Browse…")
        browse_f.clicked.connect(self._browse_factory)
        row2 = QHBoxLayout()
        row2.addWidget(self.factory)
        row2.addWidget(browse_f)
        form.addRow("Factory", row2)
        hint = QLabel(
            "Pickled modules and TorchScript files can run code when opened; qstudio asks before trusting one."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #666;")
        form.addRow(hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "", MODEL_FILTER)
        if not path:
            return
        if path.endswith(".py"):
            func, ok = QInputDialog.getText(
                self, "Factory function", f"Function in {Path(path).name} that builds the model:", text="build"
            )
            if not ok or not func:
                return
            path = f"{path}:{func}"
        self.path.setText(path)

    def _browse_factory(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Factory module", "", "Python (*.py)")
        if not path:
            return
        func, ok = QInputDialog.getText(
            self, "Factory function", f"Function in {Path(path).name} that builds the model:", text="build"
        )
        if ok and func:
            self.factory.setText(f"{path}:{func}")

    def source(self) -> ModelSource:
        return ModelSource(spec=self.path.text().strip(), factory=self.factory.text().strip() or None)


def pick_torchvision(parent: QWidget) -> ModelSource | None:
    names = torchvision_names()
    dialog = QInputDialog(parent)
    dialog.setObjectName("torchvisionDialog")  # tests pick a name with setTextValue(...) and accept()
    dialog.setWindowTitle("torchvision architecture")
    dialog.setLabelText("Architecture (random weights; nothing is downloaded):")
    dialog.setComboBoxItems(names)
    dialog.setComboBoxEditable(False)
    dialog.setTextValue("resnet18" if "resnet18" in names else names[0])
    if not dialog.exec():
        return None
    name = dialog.textValue()
    return ModelSource(f"torchvision:{name}") if name in names else None


def combo_index(combo: QComboBox, data: str) -> int:
    return max(0, combo.findData(data))
