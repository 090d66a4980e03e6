"""The user's module names inside a quantized model's: the prefix a flow adds and the float islands it keeps.

A flow may put a prefix before the user's module names (eager's
``QuantWrapper`` adds ``module.``, dynamic's ``NoFastPath`` ``model.``) and
keeps a module the user kept in float under :data:`ISLAND_ATTR` of its float
island.  Messages and per-layer results speak the user's names
(:func:`qstudio.core.flows.base.module_for` goes the other way).
"""

from __future__ import annotations

#: Attribute under which eager mode keeps a skipped module between a DeQuantStub and a QuantStub.
ISLAND_ATTR = "float_module"


def user_name(name: str, prefix: str = "") -> str:
    """The user's name for module ``name`` of a model whose flow put ``prefix`` before the user's names."""
    if prefix and name.startswith(prefix):
        name = name[len(prefix) :]
    return ".".join(part for part in name.split(".") if part != ISLAND_ATTR)


__all__ = ["ISLAND_ATTR", "user_name"]
