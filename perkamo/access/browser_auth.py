"""Who a browser call is (docs/api.md "The browser half"): its token verified, its browser key and
the server key that minted it both alive, and what it may do — the browser key's capabilities
intersected with the minting key's scopes (``read`` and ``stream`` need ``profile:read``, ``events``
needs ``events:write``).

Browser keys and API keys are cached like the server's own key records and forgotten on the
same notification, so a revocation reaches every member within a second; while the
listener is disconnected nothing cached is trusted for longer than a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from perkamo.access import tokens
from perkamo.access.browser_keys import origin_allowed
from perkamo.access.keys import hash_key
from perkamo.access.tokens import Claims, KeyRing
from perkamo.settings import CACHE_RELOAD_SECONDS
from storage import Database
from storage import browser_keys as store
from storage.browser_keys import BrowserKeyRecord
from storage.cache import SharedCache
from storage.spaces import KeyRecord, get_key

_UNTRUSTED_TTL = 1.0
_MAX_CACHED = 100_000


@dataclass(frozen=True, slots=True)
class BrowserCaller:
    """A verified browser call."""

    claims: Claims
    key: BrowserKeyRecord
    may_read: bool
    may_events: bool
    may_stream: bool

    @property
    def user_id(self) -> str:
        return self.claims.sub

    @property
    def space_id(self) -> int:
        return self.key.space_id


def _live(revoked_at: datetime | None) -> bool:
    return revoked_at is None or revoked_at > datetime.now(UTC)


class BrowserAccess:
    def __init__(self, db: Database, ring: KeyRing, listener_healthy: Callable[[], bool]) -> None:
        self._db = db
        self.ring = ring
        self._healthy = listener_healthy
        self._by_hash: SharedCache[bytes, BrowserKeyRecord | None] = SharedCache(
            self._find_hash, max_entries=_MAX_CACHED
        )
        self._by_id: SharedCache[str, BrowserKeyRecord | None] = SharedCache(
            self._find_id, max_entries=_MAX_CACHED
        )
        self._api_keys: SharedCache[str, KeyRecord | None] = SharedCache(
            self._find_api_key, max_entries=_MAX_CACHED
        )
        self._origins: SharedCache[str, frozenset[str]] = SharedCache(self._load_origins)
        self.on_forget: Callable[[], None] = lambda: None  # open streams check their keys

    async def _find_hash(self, digest: bytes) -> BrowserKeyRecord | None:
        return await self._db.run(store.find_by_hash, digest)

    async def _find_id(self, key_id: str) -> BrowserKeyRecord | None:
        return await self._db.run(store.get, key_id)

    async def _find_api_key(self, key_id: str) -> KeyRecord | None:
        return await self._db.run(get_key, key_id)

    async def _load_origins(self, _: str) -> frozenset[str]:
        return frozenset(await self._db.run(store.live_origins))

    def forget_all(self) -> None:
        """Keys or Spaces changed elsewhere (the auth notification)."""
        for cache in (self._by_hash, self._by_id, self._api_keys, self._origins):
            cache.forget()
        self.ring.forget()
        self.on_forget()

    def _max_age(self) -> float:
        return CACHE_RELOAD_SECONDS if self._healthy() else _UNTRUSTED_TTL

    async def browser_key(self, secret: str) -> BrowserKeyRecord | None:
        """A live browser key by its secret (None: unknown or revoked)."""
        record = await self._by_hash.get(hash_key(secret), max_age=self._max_age())
        return record if record is not None and _live(record.revoked_at) else None

    async def api_key(self, key_id: str) -> KeyRecord | None:
        """A server key's record by id (cached): the Space's limits, for a browser event."""
        return await self._api_keys.get(key_id, max_age=self._max_age())

    async def authenticate(self, token: str, header_key: str | None) -> BrowserCaller:
        """Raises 401 ``invalid_token`` unless the token verifies and both its browser key
        and its minting server key are alive (and ``header_key``, when sent, is the
        token's browser key)."""
        claims, environment = await tokens.verify(self.ring, token)
        caller = await self._caller(claims, environment)
        if caller is None:
            raise tokens.invalid()
        if header_key is not None:
            named = await self._by_hash.get(hash_key(header_key), max_age=self._max_age())
            if named is None or named.id != claims.bk:
                raise tokens.invalid("x-perkamo-browser-key is not the token's browser key.")
        return caller

    async def still_valid(self, caller: BrowserCaller) -> bool:
        """Whether a stream's token is still backed by live keys (checked every second)."""
        return await self._caller(caller.claims, caller.key.space_environment) is not None

    async def _caller(self, claims: Claims, environment: str) -> BrowserCaller | None:
        max_age = self._max_age()
        key = await self._by_id.get(claims.bk, max_age=max_age)
        if key is None or not _live(key.revoked_at):
            return None
        if key.space_slug != claims.space or key.space_environment != environment:
            return None
        minted_by = await self._api_keys.get(claims.ak, max_age=max_age)
        if minted_by is None or not _live(minted_by.revoked_at):
            return None
        if minted_by.space_id != key.space_id:
            return None
        capable = key.capabilities
        readable = "profile:read" in minted_by.scopes
        return BrowserCaller(
            claims,
            key,
            may_read=bool(capable.get("read")) and readable,
            may_events=bool(capable.get("events")) and "events:write" in minted_by.scopes,
            may_stream=bool(capable.get("stream")) and readable,
        )

    async def origin_known(self, origin: str) -> bool:
        """A preflight carries no token: whether some live browser key allows ``origin``."""
        origins = await self._origins.get("all", max_age=self._max_age())
        return origin_allowed(list(origins), origin)
