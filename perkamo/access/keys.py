"""API keys: generation, hashing, scopes.

A key is ``sk_<environment>_<40 base62 characters>`` (about 238 random bits). Only its
SHA-256 is stored: with that much entropy a slow hash buys nothing, and lookup stays one
index probe. The display prefix (first 12 characters) identifies a key in listings.
"""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

SCOPES = (
    "events:write", "profile:read", "rewards:redeem", "admin:config", "admin:support",
    "browser:tokens",
)  # fmt: skip
SCOPE_ALIASES = {"customer:read": "profile:read"}


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generate_key(environment: str) -> str:
    return f"sk_{environment}_{random_token(40)}"


def new_key_id() -> str:
    return "key_" + random_token(16)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def display_prefix(key: str) -> str:
    return key[:12]


def normalise_scopes(scopes: list[str]) -> list[str]:
    """Resolve aliases and check names; raises ValueError for an unknown scope."""
    result: list[str] = []
    for scope in scopes:
        scope = SCOPE_ALIASES.get(scope, scope)
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
        if scope not in result:
            result.append(scope)
    return result
