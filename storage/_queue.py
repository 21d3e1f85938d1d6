"""A queue with one consumer that takes everything waiting at once.

The loader and the writer each serve many profile actors: an actor puts its request without
waiting (a deque append) and waits on its own future; the consumer wakes once per batch, not
once per request. The queue is unbounded here because the actor system bounds the work it
holds (docs/api.md "Admission"): each queued request belongs to one admitted message.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class BatchQueue(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = trio.Event()
        self._closed = False

    def put(self, item: T) -> None:
        """Queue ``item``; raises trio.ClosedResourceError once closed."""
        if self._closed:
            raise trio.ClosedResourceError("the queue is closed")
        self._items.append(item)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Accept nothing more; the consumer gets what is queued, then an empty batch."""
        self._closed = True
        self._ready.set()

    async def take(self, limit: int) -> list[T]:
        """Up to ``limit`` queued items, waiting for the first; empty when closed and
        drained."""
        while not self._items:
            if self._closed:
                return []
            await self._ready.wait()
            self._ready = trio.Event()
        n = min(limit, len(self._items))
        return [self._items.popleft() for _ in range(n)]
