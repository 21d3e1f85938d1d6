"""Canonical JSON (docs/api.md (errors)): what configuration checksums, idempotency comparison and
request hashes are computed over.

Form 2 (current): RFC 8785 (JCS) — object keys sorted by UTF-16 code units, no whitespace,
JCS string escaping — with numbers as exact decimals in plain notation (``50``, ``1.25``,
``0.0000001``; never ``5E+1``; ``-0`` is ``0``). msgspec's encoder escapes strings exactly as
JCS does (``"``, ``\\``, U+0000–U+001F with lowercase hex, nothing else), so only key order
(msgspec would sort by UTF-8) and numbers are done here.

Form 1 (before): keys sorted by code point, numbers through ``Decimal.normalize()`` (so
``50`` was written ``5E+1``). Hashes stored in form 1 keep matching their original requests:
every stored hash carries its form (migration 0006) and is recomputed in that form to
compare. Form 1 is also the form of ``distinct`` achievement tokens kept in profile state.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import cast

import msgspec

FORM = 2

_encoder = msgspec.json.Encoder()
_legacy_encoder = msgspec.json.Encoder(order="sorted", decimal_format="number")


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _number(value: Decimal) -> int | msgspec.Raw:
    if value == value.to_integral_value():
        return int(value)  # also -0 → 0
    return msgspec.Raw(format(value.normalize(), "f").encode())


_SCALAR = frozenset((str, int, bool, type(None)))


def _canonical(value: object) -> object:
    kind = type(value)  # the exact JSON types first: this runs for every event's hash
    if kind in _SCALAR:
        return value
    if kind is dict:
        mapping = cast("dict[str, object]", value)
        # ASCII keys sort the same by UTF-16 code units as by code points.
        ascii_keys = all(map(str.isascii, mapping))
        keys = sorted(mapping) if ascii_keys else sorted(mapping, key=_utf16)
        return {k: _canonical(mapping[k]) for k in keys}
    if kind is list:
        return [_canonical(v) for v in cast("list[object]", value)]
    if isinstance(value, Decimal):
        return _number(value)
    return _other(value)


def _other(value: object) -> object:
    """Subclasses of the JSON types, tuples and floats (not produced by our decoders)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):  # kept exact anyway
        return _number(Decimal(repr(value)))
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value, key=_utf16)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: object) -> bytes:
    """``value`` in canonical form 2."""
    return _encoder.encode(_canonical(value))


def _legacy(value: object) -> object:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | Decimal):
        number = Decimal(value)
        return Decimal(0) if number == 0 else number.normalize()
    if isinstance(value, float):
        return _legacy(Decimal(repr(value)))
    if isinstance(value, dict):
        return {k: _legacy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_legacy(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def legacy_canonical_json(value: object) -> bytes:
    """``value`` in canonical form 1 (see the module docstring)."""
    return _legacy_encoder.encode(_legacy(value))


def canonical_in(form: int, value: object) -> bytes:
    return canonical_json(value) if form == FORM else legacy_canonical_json(value)


def request_hash(*parts: object, form: int = FORM) -> bytes:
    """SHA-256 over the canonical JSON of ``parts`` (e.g. user_id, event, context)."""
    return hashlib.sha256(canonical_in(form, list(parts))).digest()


def checksum(body: object, form: int = FORM) -> str:
    """A configuration body's checksum: hex SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_in(form, body)).hexdigest()
