"""msgspec validation errors as (JSON path, message) pairs, for every boundary that reports
them (request bodies and configuration modules)."""

from __future__ import annotations

import re

import msgspec

_PATH = re.compile(r" - at `\$(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def describe(exc: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """``prefix`` joined with the path msgspec reports, and a short message; a missing or
    unknown field is reported at that field's own path."""
    text = str(exc)
    m = _PATH.search(text)
    path = prefix + (m.group(1) if m else "")
    message = text[: m.start()] if m else text
    if missing := _MISSING.search(message):
        return f"{path}.{missing.group(1)}", "is required"
    if unknown := _UNKNOWN.search(message):
        return f"{path}.{unknown.group(1)}", "unknown field"
    if message.startswith("Expected `str` matching regex"):
        return path, "contains characters that are not allowed here"
    if message.startswith("Expected `array` of length <= 0"):
        return path, "must be a JSON object"
    return path, message
