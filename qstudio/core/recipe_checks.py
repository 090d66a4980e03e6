"""Checking a recipe table read from TOML: key names, value types, sections built with the key named in errors."""

from __future__ import annotations

import dataclasses
from typing import Any

from qstudio.core.errors import RecipeError

_SCALARS: dict[str, Any] = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "None": lambda v: v is None,
}


def _type_ok(value: Any, annotation: str) -> bool:
    """Does ``value`` (from TOML) fit a field annotated like ``list[float] | None``?"""
    for option in (a.strip() for a in annotation.split("|")):
        if option.startswith("list["):
            if isinstance(value, list) and all(_type_ok(v, option[len("list[") : -1]) for v in value):
                return True
        elif option in _SCALARS:
            if _SCALARS[option](value):
                return True
        else:
            return True  # a nested section: checked by its own class
    return False


def _check_types(kind: type, section: str, values: dict[str, Any]) -> None:
    annotations = {f.name: str(f.type) for f in dataclasses.fields(kind)}
    for key, value in values.items():
        ann = annotations.get(key)
        if ann is not None and not _type_ok(value, ann):
            where = f"{section}.{key}" if section else key
            raise RecipeError(f"{where} = {value!r} has the wrong type", f"write a value of type {ann}")


def _build(kind: type, section: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise RecipeError(f"[{section}] must be a table", f"write it as a [{section}] section")
    names = {f.name for f in dataclasses.fields(kind)}
    for key in value:
        if key not in names:
            raise RecipeError(
                f"unknown key {section}.{key}",
                f"remove it; [{section}] accepts {', '.join(sorted(names))}",
            )
    _check_types(kind, section, value)
    try:
        return kind(**value)
    except RecipeError as exc:
        # name the section the user wrote (data sections share one class)
        problem = exc.problem.replace("data.", f"{section}.")
        raise RecipeError(problem, exc.fix) from None
    except TypeError as exc:
        raise RecipeError(f"[{section}] has an invalid value: {exc}", "check the key's type") from None


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave unset keys out."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value
