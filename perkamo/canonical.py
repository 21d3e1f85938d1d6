"""Canonical JSON: the form in which idempotency compares payloads and configuration
checksums are computed. Keys sorted, numbers as normalised decimals (``1`` equals ``1.0``)."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(order="sorted", decimal_format="number")


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        number = Decimal(value)
        if number == 0:
            return Decimal(0)
        return number.normalize()
    if isinstance(value, float):  # not produced by our decoders; kept exact anyway
        return _normalise(Decimal(repr(value)))
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    return _encoder.encode(_normalise(value))


def request_hash(*parts: Any) -> bytes:
    """SHA-256 over the canonical JSON of ``parts`` (e.g. user_id, event, context)."""
    return hashlib.sha256(canonical_json(list(parts))).digest()
