"""The Quantization section: backend, observer, weight/activation options, calibration batches and batch size."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QGroupBox

from qstudio.core.environment import available_backends, has_vnni
from qstudio.core.recipe import BACKENDS
from qstudio.ui.settings import form

BACKEND_TIPS = {
    "x86": "Recommended on x86 CPUs (picks fbgemm or oneDNN kernels per op)",
    "fbgemm": "The older x86 server backend",
    "qnnpack": "ARM and mobile CPUs",
    "onednn": "Intel oneDNN kernels",
}
OBSERVER_ITEMS = (("Histogram (default)", "histogram"), ("MinMax", "minmax"), ("Moving average", "moving_average"))
REDUCE_RANGE_ITEMS = (("Auto", "auto"), ("7-bit", "on"), ("8-bit", "off"))
DYNAMIC_DTYPE_ITEMS = (("qint8", "qint8"), ("float16", "float16"))


def build(panel: Any) -> QGroupBox:
    """The backend, observer and calibration widgets on ``panel``; its form is ``panel._qform`` (rows hide per mode)."""
    backends = available_backends()
    panel.backendCombo = form.combo("backendCombo", [(b, b) for b in backends])
    for i, name in enumerate(backends):
        panel.backendCombo.setItemData(i, BACKEND_TIPS.get(name, ""), Qt.ItemDataRole.ToolTipRole)
    panel.observerCombo = form.combo("observerCombo", OBSERVER_ITEMS)
    panel.observerCombo.setToolTip("How activation ranges are measured during calibration")
    panel.perChannelCheck = QCheckBox("Per-channel weights", objectName="perChannelCheck")
    panel.perChannelCheck.setToolTip("One scale per output channel: usually more accurate than one per tensor")
    panel.symmetricCheck = QCheckBox("Symmetric activations", objectName="symmetricCheck")
    panel.symmetricCheck.setToolTip("Zero point fixed at the middle; asymmetric (the default) fits ReLU outputs better")
    panel.reduceRangeCombo = form.combo("reduceRangeCombo", REDUCE_RANGE_ITEMS)
    vnni = "has" if has_vnni() else "has no"
    panel.reduceRangeCombo.setToolTip(
        "Auto: 7-bit activations for static x86/fbgemm models (their depthwise-conv kernels overflow with 8 bits, "
        "even with VNNI), 8 bits for dynamic Linear/LSTM on CPUs with VNNI/AMX, 8 bits on onednn/qnnpack. "
        f"This CPU {vnni} VNNI/AMX."
    )
    panel.dynamicDtypeCombo = form.combo("dynamicDtypeCombo", DYNAMIC_DTYPE_ITEMS)
    panel.dynamicDtypeCombo.setToolTip("qint8: int8 weights, fastest; float16: half-precision weights, closest to FP32")
    panel.calibBatchesSpin = form.spin(
        "calibBatchesSpin",
        1,
        10000,
        "Batches of calibration data fed through the observers; at most as many as the data holds "
        "(samples ÷ batch size): a run with fewer says so in the log",
    )
    panel.batchSizeSpin = form.spin("batchSizeSpin", 1, 4096, "Batch size for calibration and the per-layer comparison")
    quant_box, qform = form.section("Quantization")
    qform.addRow("Backend", panel.backendCombo)
    qform.addRow("Observer", panel.observerCombo)
    qform.addRow("Activations", panel.reduceRangeCombo)
    qform.addRow("Weights", panel.dynamicDtypeCombo)
    qform.addRow("", form.pair(panel.perChannelCheck, panel.symmetricCheck))
    qform.addRow("Calib. batches", panel.calibBatchesSpin)
    qform.addRow("Batch size", panel.batchSizeSpin)
    panel._qform = qform
    return quant_box


def select_backend(panel: Any, name: str) -> None:
    """Select ``name``; a recipe's backend this machine lacks is shown, marked, so it is not silently replaced."""
    for i in range(panel.backendCombo.count() - 1, -1, -1):
        if panel.backendCombo.itemData(i) not in available_backends():
            panel.backendCombo.removeItem(i)
    if panel.backendCombo.findData(name) < 0 and name in BACKENDS:
        panel.backendCombo.addItem(f"{name} (not available here)", name)
    form.select(panel.backendCombo, name)
