"""A profile's traits: identify merges a patch into them (docs/api.md (events and profiles))."""

from __future__ import annotations

from perkamo.program.json_walk import JsonObject


def merge_traits(current: JsonObject, patch: JsonObject) -> JsonObject:
    """Shallow merge; a key whose value is ``null`` is removed."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
