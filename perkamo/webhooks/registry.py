"""Each Space's webhook endpoint state, cached for staging; forgotten on NOTIFY, and read
again at least every CACHE_RELOAD_SECONDS (a notification is a hint that may be missed)."""

from __future__ import annotations

from perkamo.settings import CACHE_RELOAD_SECONDS
from perkamo.webhooks.payloads import SpaceHook
from storage import Database
from storage import webhooks as store
from storage.cache import SharedCache


class WebhookRegistry:
    """Per-Space endpoint state, cached; forgotten on NOTIFY (endpoint changes)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: SharedCache[int, SpaceHook] = SharedCache(self._load)

    async def _load(self, space_id: int) -> SpaceHook:
        found = (await self._db.run(store.endpoints, [space_id])).get(space_id)
        if found is None:
            return SpaceHook(enabled=False, space={})
        space = {"slug": found.slug, "name": found.name, "environment": found.environment}
        return SpaceHook(enabled=found.enabled, space=space)

    async def get(self, space_id: int) -> SpaceHook:
        return await self._cache.get(space_id, max_age=CACHE_RELOAD_SECONDS)

    def forget(self) -> None:
        self._cache.forget()
