"""Check REST bodies against the azure-batch SDK's own models (which keep unknown keys silently)."""

from __future__ import annotations

from typing import Any

from azure.batch._utils.model_base import Model  # the SDK's model base: holds the REST names


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
