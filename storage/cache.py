"""Values loaded from storage by key and kept until told they changed.

The server caches what every request needs and rarely changes — key records, compiled
programs, webhook endpoints, the month's usage meters — and forgets them when PostgreSQL
notifies a change (from the CLI or another process). Two properties matter under load:

* Concurrent misses of one key share one load. Without that, a fresh server's first
  thousand profiles each queried the same meters and endpoint, queueing a thousand queries
  on a ten-connection pool: the first answers of a flood took over five seconds.
* A load that overlapped a forget is handed to its callers but not kept: it may have read
  the value from before the change the forget announced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedCache(Generic[K, V]):
    def __init__(self, load: Callable[[K], Awaitable[V]], *, max_entries: int | None = None):
        self._load = load
        self._max_entries = max_entries
        self._values: dict[K, tuple[V, float]] = {}  # value, trio time it was loaded
        self._loading: dict[K, trio.Event] = {}
        self._generation = 0
        self.loads = 0

    async def get(self, key: K, *, max_age: float | None = None) -> V:
        """The cached value (loaded no longer than ``max_age`` ago when given), or one
        fresh load shared with every concurrent caller."""
        while True:
            entry = self._values.get(key)
            if entry is not None and (max_age is None or trio.current_time() - entry[1] < max_age):
                return entry[0]
            loading = self._loading.get(key)
            if loading is None:
                break
            await loading.wait()  # then look again: kept, or forgotten meanwhile
        done = self._loading[key] = trio.Event()
        try:
            generation = self._generation
            value = await self._load(key)
            self.loads += 1
            if generation == self._generation:
                self.put(key, value)
            return value
        finally:
            del self._loading[key]
            done.set()

    def peek(self, key: K) -> V | None:
        entry = self._values.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V) -> None:
        if self._max_entries is not None and len(self._values) >= self._max_entries:
            self._values.clear()
        self._values[key] = (value, trio.current_time())

    def forget(self, key: K | None = None) -> None:
        """Drop one key (or all): the next ``get`` loads again."""
        self._generation += 1
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)
