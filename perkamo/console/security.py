"""Operators' passwords, sessions, CSRF tokens, login throttling and the console's headers
(docs/operations.md (the console), "Operators and sessions")."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage import login_attempts
from storage.database import Conn

ROLES = ("admin", "viewer")
SESSION_COOKIE = "perkamo_console"
ABSOLUTE_LIFETIME = 12 * 3600.0  # seconds
IDLE_LIFETIME = 3600.0
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

# argon2id with the library's RFC 9106 "low memory" profile: 64 MiB, 3 passes, 4 lanes.
_hasher = PasswordHasher()
# Checked when the email is unknown, so that timing does not tell which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self';"
        " object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(15)


def new_session() -> tuple[str, bytes, str]:
    """(the cookie value, its stored hash, the session's CSRF token)."""
    token = secrets.token_urlsafe(32)
    return token, session_hash(token), secrets.token_urlsafe(32)


def session_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def same_origin(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """A state-changing request must come from the console's own origin: ``Origin`` (when
    sent) must name this host, and ``Sec-Fetch-Site`` (when sent) must be same-origin."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    if origin == "null" or host is None:
        return False
    return origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()


class LoginThrottle:
    """Failed logins per account and per client address: at most ``limit`` password checks
    per key within ``window`` seconds, then 429 until the window passes (a success clears
    the account's count). Counted in PostgreSQL before the password is checked
    (storage/login_attempts.py), so the limit holds across server processes and concurrent
    attempts; the calls take a connection (``Database.run``)."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window

    def attempt(self, conn: Conn, account: str, address: str) -> int:
        """Count this attempt; seconds to wait before another (0: check the password)."""
        wait = login_attempts.count_attempt(
            conn, [f"account:{account}", f"address:{address}"], self.limit, self.window
        )
        return math.ceil(wait) if wait > 0 else 0

    def succeeded(self, conn: Conn, account: str, address: str) -> None:
        login_attempts.forget(conn, f"account:{account}", f"address:{address}")


def seal(token: str, text: str) -> str:
    """``text`` (a new key, shown once) sealed with the session's cookie value, which the
    database never holds (only its SHA-256): the flash that carries it to the next page
    is unreadable from the database. A one-time pad from SHA-512(token, nonce)."""
    data = text.encode()
    if len(data) > 64:
        raise ValueError("sealed text is at most 64 bytes")
    nonce = secrets.token_bytes(16)
    pad = hashlib.sha512(token.encode() + b"\x00seal\x00" + nonce).digest()
    return (nonce + bytes(a ^ b for a, b in zip(data, pad, strict=False))).hex()


def unseal(token: str, sealed: str) -> str | None:
    try:
        raw = bytes.fromhex(sealed)
    except ValueError:
        return None
    nonce, data = raw[:16], raw[16:]
    pad = hashlib.sha512(token.encode() + b"\x00seal\x00" + nonce).digest()
    try:
        return bytes(a ^ b for a, b in zip(data, pad, strict=False)).decode()
    except UnicodeDecodeError:
        return None
