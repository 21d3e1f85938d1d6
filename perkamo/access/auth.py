"""API-key authentication with a cache that PostgreSQL notifications keep honest.

A key record is cached after its first use. Any change to keys or Spaces (from the CLI or
another process) sends a notification that clears the cache, so a revocation takes effect
within the listener's poll interval (0.25 s). While the listener is disconnected, cached
records are trusted for at most one second.
"""

from __future__ import annotations

from collections.abc import Callable

from perkamo.access.keys import hash_key
from perkamo.errors import Code, PerkamoError
from storage import Database
from storage.cache import SharedCache
from storage.spaces import KeyRecord, find_key_by_hash

_UNTRUSTED_TTL = 1.0
_MAX_CACHED = 100_000


class Authenticator:
    def __init__(self, db: Database, listener_healthy: Callable[[], bool]) -> None:
        self._db = db
        self._listener_healthy = listener_healthy
        self._cache: SharedCache[bytes, KeyRecord | None] = SharedCache(
            self._find, max_entries=_MAX_CACHED
        )

    async def _find(self, digest: bytes) -> KeyRecord | None:
        return await self._db.run(find_key_by_hash, digest)

    def forget_all(self) -> None:
        self._cache.forget()

    async def authenticate(self, key: str | None) -> tuple[KeyRecord, str]:
        """Return the key's record (and the key, for signature checks).

        Raises Unauthorized: missing_api_key, or invalid_api_key for unknown/revoked keys.
        """
        if not key:
            raise PerkamoError(
                Code.MISSING_API_KEY, "Send your secret API key in the x-perkamo-api-key header."
            )
        max_age = None if self._listener_healthy() else _UNTRUSTED_TTL
        record = await self._cache.get(hash_key(key), max_age=max_age)
        if record is None or record.revoked_at is not None:
            raise PerkamoError(Code.INVALID_API_KEY, "The API key is unknown or revoked.")
        return record, key
