"""Numbers are values, not text (docs/api.md (conventions)): a decoded JSON value conformed to the
Struct it is about to be converted into.

msgspec converts a JSON string into a ``Decimal`` field (``"amount": "5"`` was applied as +5)
and refuses ``150.0`` for an ``int`` field (PHP's ``json_encode`` writes whole floats that
way). One walk over the value, directed by the Struct's type tree, fixes both wherever a
shape has such fields: a string where only a number may stand is refused, and a whole
decimal where an integer is expected becomes that integer. Pure; shapes without number
fields cost nothing (their plan is empty and the value is returned as it is).
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache

import msgspec
import msgspec.inspect as mi

from perkamo.program.json_walk import JsonObject

_INT_RANGE = 2**63  # beyond it an integer field refuses the value anyway (with its bound)


def conform(value: object, shape: object) -> object:
    """``value`` ready for ``msgspec.convert(value, shape)``. Raises msgspec.ValidationError
    (with the ``- at `$.path``` suffix msgspec uses) for a string where a number belongs."""
    info = _info(shape)
    if not _has_numbers(info):
        return value
    return _walk(value, info, "$")


def has_numbers(shape: object) -> bool:
    """Whether ``shape`` has a number field anywhere."""
    return _has_numbers(_info(shape))


@cache
def _info(shape: object) -> mi.Type:
    return mi.type_info(shape)


def _has_numbers(info: mi.Type, seen: frozenset[int] = frozenset()) -> bool:
    if isinstance(info, mi.IntType | mi.DecimalType | mi.FloatType):
        return True
    if isinstance(info, mi.Metadata):
        return _has_numbers(info.type, seen)
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _has_numbers(info.item_type, seen)
    if isinstance(info, mi.DictType):
        return _has_numbers(info.value_type, seen)
    if isinstance(info, mi.UnionType):
        return any(_has_numbers(t, seen) for t in info.types)
    if isinstance(info, mi.StructType):
        if id(info.cls) in seen:
            return False
        inner = seen | {id(info.cls)}
        return any(_has_numbers(f.type, inner) for f in info.fields)
    return False


def _number_kinds(info: mi.Type) -> tuple[bool, bool, bool]:
    """(an integer is accepted, a fraction is accepted, a string is accepted)."""
    if isinstance(info, mi.Metadata):
        return _number_kinds(info.type)
    if isinstance(info, mi.UnionType):
        kinds = [_number_kinds(t) for t in info.types]
        return any(k[0] for k in kinds), any(k[1] for k in kinds), any(k[2] for k in kinds)
    if isinstance(info, mi.IntType):
        return True, False, False
    if isinstance(info, mi.DecimalType | mi.FloatType):
        return True, True, False
    return False, False, isinstance(info, mi.StrType | mi.AnyType)


def _walk(value: object, info: mi.Type, path: str) -> object:
    if isinstance(info, mi.Metadata):
        return _walk(value, info.type, path)
    if isinstance(value, str | Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return _scalar(value, info, path)
    if isinstance(value, list):
        item = _item_type(info)
        if item is None:
            return value
        return [_walk(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _object(value, info, path)
    return value


def _scalar(value: str | Decimal | int, info: mi.Type, path: str) -> str | Decimal | int:
    integer, fraction, text = _number_kinds(info)
    if not (integer or fraction):
        return value
    if isinstance(value, str):
        if not text:
            raise msgspec.ValidationError(f"Expected `number`, got `str` - at `{path}`")
        return value
    if isinstance(value, Decimal) and integer and not fraction and _whole(value):
        return int(value)
    return value


def _whole(value: Decimal) -> bool:
    return value.is_finite() and value == value.to_integral_value() and abs(value) < _INT_RANGE


def _item_type(info: mi.Type) -> mi.Type | None:
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return info.item_type
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if (found := _item_type(t)) is not None:
                return found
    return None


def _object(value: JsonObject, info: mi.Type, path: str) -> JsonObject:
    struct = _struct_for(value, info)
    if struct is not None:
        fields = {f.encode_name: f.type for f in struct.fields}
        return {
            k: _walk(v, fields[k], f"{path}.{k}") if k in fields else v for k, v in value.items()
        }
    mapping = _dict_type(info)
    if mapping is None:
        return value
    return {k: _walk(v, mapping.value_type, f"{path}.{k}") for k, v in value.items()}


def _struct_for(value: JsonObject, info: mi.Type) -> mi.StructType | None:
    if isinstance(info, mi.Metadata):
        return _struct_for(value, info.type)
    if isinstance(info, mi.StructType):
        return info
    if isinstance(info, mi.UnionType):
        structs = [t for t in info.types if isinstance(t, mi.StructType)]
        for t in structs:  # a tagged union: the member its tag names
            if t.tag_field is not None and value.get(t.tag_field) == t.tag:
                return t
        untagged = [t for t in structs if t.tag_field is None]
        return untagged[0] if len(untagged) == 1 else None
    return None


def _dict_type(info: mi.Type) -> mi.DictType | None:
    if isinstance(info, mi.Metadata):
        return _dict_type(info.type)
    if isinstance(info, mi.DictType):
        return info
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if (found := _dict_type(t)) is not None:
                return found
    return None
