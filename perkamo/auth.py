"""API-key authentication with a cache that PostgreSQL notifications keep honest.

A key record is cached after its first use. Any change to keys or Spaces (from the CLI or
another process) sends a notification that clears the cache, so a revocation takes effect
within the listener's poll interval (0.25 s). While the listener is disconnected, cached
records are trusted for at most one second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from storage import Database
from storage.spaces import KeyRecord, find_key_by_hash

from .errors import Unauthorized
from .keys import hash_key

_UNTRUSTED_TTL = 1.0
_MAX_CACHED = 100_000


class Authenticator:
    def __init__(self, db: Database, listener_healthy: Callable[[], bool]) -> None:
        self._db = db
        self._listener_healthy = listener_healthy
        self._cache: dict[bytes, tuple[KeyRecord | None, float]] = {}
        self._generation = 0  # bumped on every reset, so an in-flight lookup is not cached

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def authenticate(self, key: str | None) -> tuple[KeyRecord, str]:
        """Return the key's record (and the key, for signature checks).

        Raises Unauthorized: missing_api_key, or invalid_api_key for unknown/revoked keys.
        """
        if not key:
            raise Unauthorized(
                "Send your secret API key in the x-perkamo-api-key header.",
                code="missing_api_key",
            )
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and (self._listener_healthy() or now - cached[1] < _UNTRUSTED_TTL):
            record = cached[0]
        else:
            generation = self._generation
            record = await self._db.run(find_key_by_hash, digest)
            if generation == self._generation:
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
                self._cache[digest] = (record, now)
        if record is None or record.revoked_at is not None:
            raise Unauthorized("The API key is unknown or revoked.", code="invalid_api_key")
        return record, key
