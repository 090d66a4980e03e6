"""The QAT section (shown in QAT mode only): epochs, learning rate, batch size, graph and freeze epochs."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QAbstractSpinBox, QGroupBox

from qstudio.ui.settings import form

QAT_GRAPH_ITEMS = (("FX graph", "fx"), ("Eager", "eager"))


def build(panel: Any) -> QGroupBox:
    """The training widgets on ``panel``; the box is ``panel.qatBox``."""
    panel.qatEpochsSpin = form.spin("qatEpochsSpin", 1, 1000, "Training epochs with fake quantization")
    panel.qatLrSpin = form.CompactDoubleSpin(objectName="qatLrSpin", decimals=6, minimum=0.000001, maximum=10.0)
    panel.qatLrSpin.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
    panel.qatLrSpin.setKeyboardTracking(False)
    panel.qatLrSpin.setToolTip("Learning rate (SGD); QAT fine-tunes, so use about 1/10 of the original rate")
    panel.qatBatchSizeSpin = form.spin("qatBatchSizeSpin", 1, 4096, "Training batch size")
    panel.qatGraphCombo = form.combo("qatGraphCombo", QAT_GRAPH_ITEMS)
    panel.qatGraphCombo.setToolTip("How fake-quant modules are inserted: FX tracing, or eager QuantStub/DeQuantStub")
    panel.freezeBnSpin = form.spin("freezeBnSpin", 0, 1000, "BatchNorm uses running statistics from this epoch on")
    panel.freezeObserverSpin = form.spin(
        "freezeObserverSpin", 0, 1000, "Observers stop updating scales from this epoch on"
    )
    panel.qatBox, qat_form = form.section("Quantization-aware training", "qatSection")
    qat_form.addRow("Epochs", panel.qatEpochsSpin)
    qat_form.addRow("Learning rate", panel.qatLrSpin)
    qat_form.addRow("Batch size", panel.qatBatchSizeSpin)
    qat_form.addRow("Graph", panel.qatGraphCombo)
    qat_form.addRow("Freeze BN at", panel.freezeBnSpin)
    qat_form.addRow("Freeze observers", panel.freezeObserverSpin)
    return panel.qatBox
