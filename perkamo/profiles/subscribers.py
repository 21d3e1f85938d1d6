"""Who watches a profile live (docs/api.md "Live streams"): every open stream of a profile —
a browser's connection here, or another member's on behalf of its own — is a
:class:`Subscriber` of that profile's key.

After a unit of writes commits, the profile's actor hands each subscriber every change it
just committed (``publish``), in commit order and never before the commit, without waiting
for any of them: each subscriber has a bounded queue, and one that falls behind has it
cleared and is told to send a fresh snapshot instead (``resnapshot``). A slow browser so
never slows the actor, the writer or another stream. A watched profile stays resident (the
actor system's pins), and when its shard moves to another member its subscribers are told
to subscribe again there (``end_matching``).

A change is encoded once, whatever the number of subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol

import msgspec
import trio

from perkamo.profiles.answers import LevelProgress, Settled, level_progress
from perkamo.profiles.commands import Written
from perkamo.profiles.staging import Applied
from perkamo.program import Program
from perkamo.program.amounts import wallet_state
from perkamo.program.levels import level_state
from perkamo.program.outcome import Delta, Unlocked

ProfileKey = tuple[int, str]
QUEUE = 64  # changes a subscriber may have waiting before it is told to resnapshot


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One committed write as a stream's ``event: change`` carries it."""

    type: str
    transaction_id: str | None
    event: str | None = None  # events only
    source: str  # "server", or "client" for a browser-sent event
    delta: list[Delta]
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    version: int
    # What settling at the write's time released and expired, when it did (points
    # released from pending or expired move ``wallet_state`` beside ``delta``).
    settled: Settled | None = None


class _Parts(msgspec.Struct):  # what a logged write's answer contributes to its change
    delta: list[Delta] = []
    unlocked: list[Unlocked] = []
    leveled_up: bool = False
    settled: Settled | None = None


_parts = msgspec.json.Decoder(_Parts, float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


def change_of(applied: Applied, program: Program) -> bytes:
    """The change document of one committed write (JSON)."""
    command = applied.command
    answer = applied.answer
    parts = _parts.decode(answer.body) if isinstance(answer, Written) else _Parts()
    settled = parts.settled
    if settled is not None and not (settled.released or settled.expired or settled.unlocked):
        settled = None
    state = applied.state
    event = getattr(command, "event", None)
    return _encoder.encode(
        Change(
            type=command.change or command.__struct_config__.tag,  # type: ignore[arg-type]
            transaction_id=command.transaction_id,
            event=event if isinstance(event, str) else None,
            source=command.source,
            delta=parts.delta,
            # A tick's answer has settling's alone; an event's includes it already.
            unlocked=parts.unlocked or (settled.unlocked if settled else []),
            leveled_up=parts.leveled_up or bool(settled and settled.leveled_up),
            wallet_state=wallet_state(state, program),
            level=level_progress(level_state(state, program)),
            version=applied.version,
            settled=settled,
        )
    )


class Watcher(Protocol):
    """Anything a profile's changes are handed to: a stream's :class:`Subscriber`, or
    another member's subscription (sent over the cluster link)."""

    def offer(self, version: int, change: bytes) -> None: ...

    def overflow(self) -> None: ...

    def end(self) -> None: ...


class Subscriber:
    """One stream's view of a profile's changes: a bounded queue of (version, change JSON),
    and two flags its stream acts on — ``resnapshot`` (it fell behind: send a fresh
    profile) and ``ended`` (the profile moved or the link to its owner broke: subscribe
    again)."""

    __slots__ = ("_capacity", "_items", "_wake", "ended", "poked", "resnapshot")

    def __init__(self, capacity: int = QUEUE) -> None:
        self._capacity = capacity
        self._items: list[tuple[int, bytes]] = []
        self._wake = trio.Event()
        self.resnapshot = False
        self.ended = False
        self.poked = False  # its stream has something else to look at (see ``poke``)

    def offer(self, version: int, change: bytes) -> None:
        """Never blocks: past the bound the queue is dropped for a resnapshot."""
        if self.resnapshot or self.ended:
            return
        if len(self._items) >= self._capacity:
            self.overflow()
            return
        self._items.append((version, change))
        self._wake.set()

    def overflow(self) -> None:
        self._items.clear()
        self.resnapshot = True
        self._wake.set()

    def end(self) -> None:
        self._items.clear()
        self.ended = True
        self._wake.set()

    def poke(self) -> None:
        """Wake the stream waiting on this (it was evicted, its keys changed, …)."""
        self.poked = True
        self._wake.set()

    def take(self) -> list[tuple[int, bytes]]:
        """What is waiting (and clears ``resnapshot`` and ``poked``: the caller acts on
        them)."""
        items, self._items = self._items, []
        self.resnapshot = self.poked = False
        return items

    @property
    def ready(self) -> bool:
        return bool(self._items) or self.resnapshot or self.ended or self.poked

    async def wait(self) -> None:
        """Until something is waiting (or a flag is set)."""
        while not self.ready:
            await self._wake.wait()
            self._wake = trio.Event()


def _nothing(key: ProfileKey) -> None:
    return None


class Subscribers:
    """Every subscriber of this process, by profile. ``pin``/``unpin`` keep a watched
    profile's actor resident (the runtime passes the actor system's)."""

    def __init__(
        self,
        pin: Callable[[ProfileKey], None] = _nothing,
        unpin: Callable[[ProfileKey], None] = _nothing,
    ) -> None:
        self._by_key: dict[ProfileKey, set[Watcher]] = {}
        self._pin, self._unpin = pin, unpin
        self.published = 0  # changes handed out (metrics)

    def attach(
        self, pin: Callable[[ProfileKey], None], unpin: Callable[[ProfileKey], None]
    ) -> None:
        self._pin, self._unpin = pin, unpin
        for key in self._by_key:
            pin(key)

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_key.values())

    def watching(self, key: ProfileKey) -> bool:
        return key in self._by_key

    def add(self, key: ProfileKey, subscriber: Watcher) -> None:
        watchers = self._by_key.get(key)
        if watchers is None:
            watchers = self._by_key[key] = set()
            self._pin(key)
        watchers.add(subscriber)

    def remove(self, key: ProfileKey, subscriber: Watcher) -> None:
        watchers = self._by_key.get(key)
        if watchers is None:
            return
        watchers.discard(subscriber)
        if not watchers:
            del self._by_key[key]
            self._unpin(key)

    def publish(self, key: ProfileKey, applied: Sequence[Applied], program: Program) -> None:
        """A unit committed: each of its writes to every subscriber, in order."""
        watchers = self._by_key.get(key)
        if not watchers:
            return
        for write in applied:
            change = change_of(write, program)
            for subscriber in watchers:
                subscriber.offer(write.version, change)
            self.published += 1

    def end_matching(self, matches: Callable[[ProfileKey], bool]) -> int:
        """The profiles ``matches`` picks left this process (their shard moved): their
        subscribers are told to subscribe again, where the profile is now. Returns how
        many were told."""
        told = 0
        for key in [k for k in self._by_key if matches(k)]:
            for subscriber in self._by_key.pop(key):
                subscriber.end()
                told += 1
            self._unpin(key)
        return told
