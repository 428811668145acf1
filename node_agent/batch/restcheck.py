"""Check REST bodies against the azure-batch SDK's own models (which keep unknown keys silently
and check nothing when built from a dict).

The SDK's models are generated from the Batch REST spec (azure-batch 15: API 2025-06-01,
Azure/azure-rest-api-specs specification/batch/data-plane/Azure.Batch/stable/2025-06-01/
BatchService.json): a field whose type is not Optional is in the spec's `required` list, an
enum-typed field takes the spec's enum values. `problems` reports, with dotted paths, the keys
that are not REST fields, required fields that are missing, enum values the service does not
know and values of the wrong JSON type.
"""

from __future__ import annotations

import datetime
import enum
import functools
import types
import typing
from typing import Any

from azure.batch import models as bm
from azure.batch._utils.model_base import Model  # the SDK's model base: holds the REST names
from azure.batch.models import _models


def unknown_fields(cls: type[Model], data: dict[str, Any], path: str = "") -> list[str]:
    """Dotted paths of the keys in `data` that are not REST fields of `cls`, recursively."""
    inst = cls(data)
    rest = {f._rest_name: attr for attr, f in inst._attr_to_rest_field.items()}
    bad = []
    for key, value in data.items():
        if key not in rest:
            bad.append(path + key)
            continue
        sub = getattr(inst, rest[key])
        pairs = list(zip(value, sub, strict=True)) if isinstance(value, list) else [(value, sub)]
        for raw, typed in pairs:
            if isinstance(raw, dict) and isinstance(typed, Model):
                bad += unknown_fields(type(typed), raw, f"{path}{key}.")
    return bad


@functools.cache
def _fields(cls: type[Model]) -> dict[str, tuple[str, Any, bool]]:
    """REST name -> (attribute, type without Optional, required) of an SDK model."""
    ns = {**vars(_models), "_models": bm, "_enums": bm}
    hints = typing.get_type_hints(cls, globalns=ns)
    out = {}
    for attr, field in cls({})._attr_to_rest_field.items():
        hint = hints.get(attr, Any)
        args = typing.get_args(hint)
        optional = _is_union(hint) and type(None) in args
        if optional:
            rest_args = tuple(a for a in args if a is not type(None))
            hint = rest_args[0] if len(rest_args) == 1 else typing.Union[rest_args]  # noqa: UP007
        out[field._rest_name] = (attr, hint, not optional)
    return out


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _enum_of(hint: Any) -> type[enum.Enum] | None:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if _is_union(hint):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                return arg
    return None


def _value_problems(hint: Any, value: Any, where: str) -> list[str]:
    if value is None:
        return [f"{where}: null"]
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        (item,) = typing.get_args(hint)
        return [p for i, v in enumerate(value) for p in _value_problems(item, v, f"{where}[{i}]")]
    if origin is dict:
        return [] if isinstance(value, dict) else [f"{where}: expected an object"]
    if isinstance(hint, type) and issubclass(hint, Model):
        if not isinstance(value, dict):
            return [f"{where}: expected an object ({hint.__name__})"]
        return problems(hint, value, where + ".")
    kind = _enum_of(hint)
    if kind is not None:
        known = [str(m.value) for m in kind]
        if not isinstance(value, str) or value.lower() not in {k.lower() for k in known}:
            return [f"{where}: '{value}' is not one of {', '.join(known)}"]
        return []
    expected: dict[Any, tuple[type, ...]] = {
        str: (str,),
        bool: (bool,),
        int: (int,),
        float: (int, float),
        datetime.timedelta: (str,),  # ISO 8601 duration, e.g. PT15M
        datetime.datetime: (str,),
    }
    want = expected.get(hint)
    if want is None:
        return []
    bad_bool = hint in (int, float) and isinstance(value, bool)
    if bad_bool or not isinstance(value, want):
        return [f"{where}: expected {hint.__name__}, got {type(value).__name__}"]
    return []


def problems(cls: type[Model], data: dict[str, Any], path: str = "") -> list[str]:
    """Everything in `data` the Batch REST spec (as the SDK's models carry it) refuses: unknown
    keys, missing required fields, unknown enum values, wrong JSON types; dotted paths."""
    fields = _fields(cls)
    out = [f"{path}{key}: not a field of {cls.__name__}" for key in data if key not in fields]
    for rest_name, (_attr, hint, required) in fields.items():
        if rest_name not in data:
            if required:
                out.append(f"{path}{rest_name}: required by {cls.__name__}")
            continue
        out += _value_problems(hint, data[rest_name], path + rest_name)
    return out
