"""One live stream (docs/api.md "The browser half", docs/architecture.md "Live streams"):
Server-Sent Events of a customer's profile.

The stream first subscribes — to the profile's actor here, or, when another member owns
the profile, to that member over the cluster link — and only then reads the committed
profile, so that no change can fall between the snapshot and the first change. It sends:

- ``event: profile`` with the client profile document (``null`` while none exists), ``id``
  its version — first, and again whenever the stream might have missed something: it fell
  behind (its queue overflowed), a change's version skips one, or the profile moved (a
  hand-over, an owner's death: it subscribes again where the profile is now);
- ``event: change`` per committed write, in commit order, ``id`` the new version;
- ``: keep-alive`` every 15 s; ``event: expired`` at the token's ``exp``; ``event:
  evicted`` when a newer stream of the same customer took its place.

It ends at once on a shutdown, and within a second when its browser key or minting server
key is revoked (the key notification makes every stream check).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import trio

from perkamo.access.streams import OpenStream
from perkamo.profiles.actor import ProfileKey
from perkamo.profiles.subscribers import Subscriber
from perkamo.runtime import Runtime

KEEP_ALIVE = 15.0
# Keys are re-checked at once on every key notification (a revocation); without one, every
# fourth keep-alive checks them anyway (cached records are read again every 30 s).
CHECK_EVERY = 4
OWNER_CHECK = 1.0  # with other members: how often a stream checks where its profile is
Snapshot = Callable[[], Awaitable[tuple[int, bytes]]]  # (version, profile document JSON)


def frame(event: str, data: bytes, event_id: int | None = None) -> bytes:
    head = b"" if event_id is None else b"id: %d\n" % event_id
    return head + b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Watch:
    """The subscription of one stream to one profile: here, or at the member owning it."""

    def __init__(self, runtime: Runtime, key: ProfileKey) -> None:
        self._runtime = runtime
        self.key = key
        self.subscriber = Subscriber()
        self._remote: tuple[str, int] | None = None
        self._wake: Callable[[], None] = lambda: None

    @property
    def owner(self) -> str | None:
        return None if self._remote is None else self._remote[0]

    def subscribe(self) -> None:
        """Subscribe where the profile is now (a fresh subscriber: nothing stale in it)."""
        self.close()
        self.subscriber = Subscriber()
        self._remote = self._runtime.cluster.subscribe(self.key, self.subscriber)
        if self._remote is None:
            self._runtime.profiles.subscribers.add(self.key, self.subscriber)

    def moved(self) -> bool:
        """Whether the profile is owned elsewhere than where this watches it."""
        if self.subscriber.ended:
            return True
        cluster = self._runtime.cluster
        return cluster.peers > 0 and cluster.owner_of(self.key) != self.owner

    def close(self) -> None:
        if self._remote is not None:
            self._runtime.cluster.unsubscribe(*self._remote)
            self._remote = None
        else:
            self._runtime.profiles.subscribers.remove(self.key, self.subscriber)


async def events(
    runtime: Runtime,
    stream: OpenStream,
    watch: Watch,
    snapshot: Snapshot,
    first: tuple[int, bytes],
    last_event_id: int | None,
    expires: int,
    still_valid: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """The stream's chunks, from its first snapshot (already read) to its end."""
    try:
        version, document = first
        sent = version
        if last_event_id != version:  # a reconnect that missed nothing skips the snapshot
            yield frame("profile", document, version)
        keep_alive = trio.current_time() + KEEP_ALIVE
        checked_owner = trio.current_time()
        keep_alives = 0
        while True:
            subscriber = watch.subscriber
            stream.wake = subscriber.poke
            now = trio.current_time()
            until = min(keep_alive, now + max(expires - datetime.now(UTC).timestamp(), 0))
            if runtime.cluster.peers > 0:
                until = min(until, checked_owner + OWNER_CHECK)
            with trio.move_on_at(until):
                await subscriber.wait()
            if stream.reason == "closing":
                return
            if stream.reason == "evicted":
                yield frame("evicted", b"{}")
                return
            if stream.reason == "recheck":
                stream.reason = None
                if not await still_valid():
                    return
            if datetime.now(UTC).timestamp() >= expires:
                yield frame("expired", b"{}")
                return
            resnapshot = subscriber.resnapshot
            moved = False  # re-subscribed elsewhere: a fresh snapshot whatever the version
            if trio.current_time() >= checked_owner + OWNER_CHECK or subscriber.ended:
                checked_owner = trio.current_time()
                if watch.moved():
                    watch.subscribe()
                    resnapshot = moved = True
            for change_version, change in subscriber.take():
                if resnapshot or change_version <= sent:
                    continue
                if change_version != sent + 1:  # a change went missing: the whole profile
                    resnapshot = True
                    continue
                yield frame("change", change, change_version)
                sent = change_version
            if resnapshot:
                version, document = await snapshot()
                if moved or version != sent or version == 0:
                    yield frame("profile", document, version)
                sent = max(sent, version)
            if trio.current_time() >= keep_alive:
                keep_alives += 1
                if keep_alives % CHECK_EVERY == 0 and not await still_valid():
                    return
                yield b": keep-alive\n\n"
                keep_alive = trio.current_time() + KEEP_ALIVE
    finally:
        watch.close()
        runtime.streams.close(stream)


def last_event_id(header: str | None, query: str | None) -> int | None:
    """The ``Last-Event-ID`` a reconnect sent (header, or ``?last_event_id=``: a new
    ``EventSource`` cannot send the header)."""
    for given in (header, query):
        if given is not None and given.strip().isdigit() and len(given.strip()) <= 18:
            return int(given.strip())
    return None
