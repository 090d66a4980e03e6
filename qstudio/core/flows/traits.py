"""What each quantization mode needs and does: the one place the rest of qstudio asks about a mode.

The pipeline, the report, the summary and the window ask :func:`mode_traits`
("does this mode fuse?", "does it need training data?") instead of comparing
mode names, so a new flow declares its traits once, here or with
:func:`register_traits`, and every caller follows.  Each flow class carries
its traits as ``flow.traits``.

This module imports neither torch nor the flows' torch.ao machinery: the
window's settings panel asks it on every edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qstudio.core.recipe import Recipe

#: The settings a mode may read beyond backend, per-channel weights and skip (names as in the recipe).
SETTINGS = ("observer", "symmetric", "calib_batches", "dynamic_dtype", "qat")


@dataclass(frozen=True)
class ModeTraits:
    """What one quantization mode needs from the user and does with the model."""

    mode: str
    #: How the report and the window name it ("PTQ FX").
    label: str
    #: Applies fusion groups (Conv+BN+ReLU) before quantizing.
    fuses: bool
    #: Runs calibration batches through observers (PTQ).
    calibrates: bool
    #: Trains with fake quantization: needs labeled training data, and its time is training time.
    trains: bool
    #: Activation scales are fixed before the model runs, so the model's input must be float.  False for
    #: dynamic quantization: each INT8 kernel quantizes its (float) input on every call, and INT8 time includes it.
    static_activations: bool
    #: A suggested fusion group holding a layer kept in float is dropped rather than fused (FX).
    prunes_skipped_groups: bool
    #: The settings of :data:`SETTINGS` it reads; the others have no effect in this mode.
    settings: frozenset[str]
    #: The stages its run goes through, in order (the run's plan and progress bar).
    stages: tuple[str, ...]
    #: Why the settings it does not read have no effect (the window's tooltip), "" when it reads them all.
    unused_settings_note: str = ""

    def uses(self, setting: str) -> bool:
        """Whether ``setting`` (one of :data:`SETTINGS`) changes what this mode does."""
        if setting not in SETTINGS:
            raise KeyError(f"unknown setting {setting!r}; one of {', '.join(SETTINGS)}")
        return setting in self.settings

    @property
    def time_label(self) -> str:
        """What the time before converting is called: training, or calibration."""
        return "Training time" if self.trains else "Calibration time"

    def label_for(self, recipe: Recipe) -> str:
        """The label with the setting that tells its variants apart: "QAT (FX graph)", "dynamic (qint8)"."""
        if self.uses("qat"):
            return f"{self.label} ({'FX' if recipe.qat.graph == 'fx' else 'eager'} graph)"
        if self.uses("dynamic_dtype"):
            return f"{self.label} ({recipe.settings.dynamic_dtype})"
        return self.label


_PTQ_SETTINGS = frozenset({"observer", "symmetric", "calib_batches"})
_PTQ_STAGES = ("prepare", "calibrate", "convert")

_TRAITS: dict[str, ModeTraits] = {
    t.mode: t
    for t in (
        ModeTraits(
            "fx",
            "PTQ FX",
            fuses=True,
            calibrates=True,
            trains=False,
            static_activations=True,
            prunes_skipped_groups=True,
            settings=_PTQ_SETTINGS,
            stages=_PTQ_STAGES,
        ),
        ModeTraits(
            "eager",
            "PTQ eager",
            fuses=True,
            calibrates=True,
            trains=False,
            static_activations=True,
            prunes_skipped_groups=False,  # a skipped member of a group keeps the fused module in float instead
            settings=_PTQ_SETTINGS,
            stages=_PTQ_STAGES,
        ),
        ModeTraits(
            "qat",
            "QAT",
            fuses=True,
            calibrates=False,
            trains=True,
            static_activations=True,
            prunes_skipped_groups=False,
            settings=frozenset({"symmetric", "qat"}),
            stages=("prepare", "train", "convert"),
            unused_settings_note="QAT trains with its own moving-average observers",
        ),
        ModeTraits(
            "dynamic",
            "dynamic",
            fuses=False,
            calibrates=False,
            trains=False,
            static_activations=False,
            prunes_skipped_groups=False,
            settings=frozenset({"dynamic_dtype"}),
            stages=("quantize",),
            unused_settings_note="dynamic quantization needs no calibration",
        ),
    )
}


def mode_traits(mode: str) -> ModeTraits:
    """The traits of quantization mode ``mode`` ("fx", "eager", "qat", "dynamic" or a registered one)."""
    try:
        return _TRAITS[mode]
    except KeyError:
        raise KeyError(f"no quantization flow for mode {mode!r}; modes: {', '.join(_TRAITS)}") from None


def known_modes() -> tuple[str, ...]:
    return tuple(_TRAITS)


def register_traits(traits: ModeTraits) -> None:
    """Declare a new mode's traits (called by ``register_flow`` for a flow whose mode is new)."""
    _TRAITS[traits.mode] = traits


__all__ = ["SETTINGS", "ModeTraits", "known_modes", "mode_traits", "register_traits"]
