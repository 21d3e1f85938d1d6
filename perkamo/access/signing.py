"""Request signing as the official SDKs do it (HMAC-SHA256 keyed with the API key)."""

from __future__ import annotations

import hashlib
import hmac

WINDOW_SECONDS = 300


def signature(key: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    message = f"v1.{timestamp}.{method.upper()}.{path}.{body_hash}"
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    key: str,
    timestamp: str,
    given: str,
    method: str,
    path: str,
    body: bytes,
    now: float,
) -> bool:
    """True when ``given`` is the right signature and ``timestamp`` is within the window."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        return False
    expected = signature(key, timestamp, method, path, body)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))
