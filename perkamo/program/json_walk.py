"""Every value inside a JSON document with the path it is at — the one walk behind the
checks that report a path (U+0000 in a request body, numeric settings in a module)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

# A JSON object as this code base decodes it: keys are strings, numbers exact (int, or
# Decimal for a fraction or an exponent; never a binary float), values any JSON.
JsonObject: TypeAlias = dict[str, Any]


def walk(value: object, path: str = "") -> Iterator[tuple[str, str | None, object]]:
    """``(path, key, value)`` for ``value`` and everything inside it, depth first in document
    order. ``key`` is the object key the value sits under (None at the top and in lists);
    paths read ``a.b[2].c`` (prefixed with ``path``)."""
    yield path, None, value
    yield from _inside(value, path)


def _inside(value: object, path: str) -> Iterator[tuple[str, str | None, object]]:
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            yield here, key, item
            yield from _inside(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            here = f"{path}[{index}]"
            yield here, None, item
            yield from _inside(item, here)
