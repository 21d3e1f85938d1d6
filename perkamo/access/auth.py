"""API-key authentication with a cache that PostgreSQL notifications keep honest.

A key record is cached after its first use. Any change to keys or Spaces (from the CLI or
another process) sends a notification that clears the cache, so a revocation takes effect
within the listener's poll interval (0.25 s). While the listener is disconnected, cached
records are trusted for at most one second; and a notification is only a hint: a record is
read again at least every CACHE_RELOAD_SECONDS whatever the listener says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import trio

from perkamo.access.keys import hash_key
from perkamo.errors import Code, PerkamoError
from perkamo.settings import CACHE_RELOAD_SECONDS
from storage import Database, StorageUnavailable
from storage.cache import SharedCache
from storage.spaces import KeyRecord, find_key_by_hash, mark_used

_UNTRUSTED_TTL = 1.0
_MAX_CACHED = 100_000


class Authenticator:
    def __init__(self, db: Database, listener_healthy: Callable[[], bool]) -> None:
        self._db = db
        self._listener_healthy = listener_healthy
        self._cache: SharedCache[bytes, KeyRecord | None] = SharedCache(
            self._find, max_entries=_MAX_CACHED
        )
        self._used: dict[str, datetime] = {}  # key id -> last use, not yet written

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
        max_age = CACHE_RELOAD_SECONDS if self._listener_healthy() else _UNTRUSTED_TTL
        record = await self._cache.get(hash_key(key), max_age=max_age)
        now = datetime.now(UTC)
        if record is None or (record.revoked_at is not None and record.revoked_at <= now):
            raise PerkamoError(Code.INVALID_API_KEY, "The API key is unknown or revoked.")
        self._used[record.id] = now
        return record, key

    async def run_usage_recorder(self, every: float = 60.0) -> None:
        """Write when each key was last used, at most once per ``every`` seconds."""
        while True:
            await trio.sleep(every)
            await self.record_usage()

    async def record_usage(self) -> None:
        used, self._used = self._used, {}
        if used:
            try:
                await self._db.run(mark_used, used)
            except StorageUnavailable:
                self._used = {**used, **self._used}  # kept for the next round
