"""A profile's traits: identify merges a patch into them (API.md §4)."""

from __future__ import annotations

from typing import Any


def merge_traits(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Shallow merge; a key whose value is ``null`` is removed."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
