"""The Benchmark section: batch sizes to time, threads, warm-up and timed runs."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QGroupBox, QLineEdit

from qstudio.ui.settings import form


def build(panel: Any) -> QGroupBox:
    """``panel.benchBatchSizesEdit`` and the benchmark spin boxes in the Benchmark box."""
    panel.benchBatchSizesEdit = QLineEdit(objectName="benchBatchSizesEdit", placeholderText="1,8")
    panel.benchBatchSizesEdit.setToolTip("Batch sizes to time, comma separated")
    panel.benchThreadsSpin = form.spin(
        "benchThreadsSpin", 0, 1024, "CPU threads for the benchmark (default: PyTorch's choice)"
    )
    panel.benchThreadsSpin.setSpecialValueText("default")
    panel.benchWarmupSpin = form.spin("benchWarmupSpin", 0, 100000, "Untimed runs before measuring")
    panel.benchItersSpin = form.spin("benchItersSpin", 1, 100000, "Timed runs per batch size")
    bench_box, bench_form = form.section("Benchmark")
    bench_form.addRow("Batch sizes", panel.benchBatchSizesEdit)
    bench_form.addRow("Threads", panel.benchThreadsSpin)
    bench_form.addRow("Warm-up runs", panel.benchWarmupSpin)
    bench_form.addRow("Timed runs", panel.benchItersSpin)
    return bench_box
