"""The Mode section: PTQ (FX or eager), QAT or dynamic quantization, with a line on what each does."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QGroupBox

from qstudio.ui.settings import form

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


def build(panel: Any) -> QGroupBox:
    """``panel.modeCombo`` and ``panel.modeHint`` in the Mode box."""
    panel.modeCombo = form.combo("modeCombo", MODE_ITEMS)
    panel.modeHint = form.hint("modeHint")
    mode_box, mode_form = form.section("Mode")
    mode_form.addRow(panel.modeCombo)
    mode_form.addRow(panel.modeHint)
    return mode_box
