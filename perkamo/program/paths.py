"""Dot paths into an event's ``context`` and the profile's ``traits``; conditions on them.

Comparisons are strict by JSON type: a boolean never equals a number, numbers compare as
decimals, strings by code point; a missing path is false for every operator except
``not_exists``, ``ne`` and ``not_in``; ``null`` counts as present.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final, TypeAlias, TypeVar, cast

MISSING: Final = object()

_Number: TypeAlias = int | Decimal | float  # what _kind calls "number" (never a bool)
_Ordered = TypeVar("_Ordered", Decimal, str)

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "exists",
    "not_exists",
    "contains",
)


def lookup(scope: Mapping[str, object], path: str) -> object:
    """``scope`` is ``{"context": {...}, "traits": {...}}``; numeric segments index lists."""
    value: object = scope
    for segment in path.split("."):
        if isinstance(value, dict):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def json_equal(a: object, b: object) -> bool:
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "number":
        return Decimal(cast(_Number, a)) == Decimal(cast(_Number, b))
    if kind == "list":
        xs, ys = cast("list[object]", a), cast("list[object]", b)
        return len(xs) == len(ys) and all(json_equal(x, y) for x, y in zip(xs, ys, strict=True))
    if kind == "object":
        ma, mb = cast("Mapping[str, object]", a), cast("Mapping[str, object]", b)
        return ma.keys() == mb.keys() and all(json_equal(ma[k], mb[k]) for k in ma)
    return bool(a == b)


def _ordered(a: object, b: object, op: str) -> bool:
    kind = _kind(a)
    if kind != _kind(b) or kind not in ("number", "string"):
        return False
    if kind == "number":
        return _compared(Decimal(cast(_Number, a)), Decimal(cast(_Number, b)), op)
    return _compared(cast(str, a), cast(str, b), op)


def _compared(x: _Ordered, y: _Ordered, op: str) -> bool:
    if op == "gt":
        return bool(x > y)
    if op == "gte":
        return bool(x >= y)
    if op == "lt":
        return bool(x < y)
    return bool(x <= y)


def holds(value: object, op: str, expected: object) -> bool:
    """Whether ``value`` (MISSING when the path is absent) satisfies ``op expected``."""
    if op == "exists":
        return value is not MISSING
    if op == "not_exists":
        return value is MISSING
    if value is MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return json_equal(value, expected)
    if op == "ne":
        return not json_equal(value, expected)
    if op in ("gt", "gte", "lt", "lte"):
        return _ordered(value, expected, op)
    if op == "in":
        return isinstance(expected, list) and any(json_equal(value, e) for e in expected)
    if op == "not_in":
        return isinstance(expected, list) and not any(json_equal(value, e) for e in expected)
    if op == "contains":
        if isinstance(value, str):
            return isinstance(expected, str) and expected in value
        if isinstance(value, list):
            return any(json_equal(item, expected) for item in value)
        return False
    raise ValueError(f"unknown operator {op!r}")
