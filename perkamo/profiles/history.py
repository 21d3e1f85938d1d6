"""The recent events and redemptions a profile document lists, kept in memory for profiles
read lately, so that a read is answered without a query when nothing else could have
written the profile (docs/api.md: a read returns the committed profile).

Memory answers only under an exclusivity lease: the membership task (membership.py) grants
it for a second at a time while this process is the only live member, and a process that
joins waits longer than a lease before it serves. Every change of lease starts a new epoch
and drops what was kept.

Bounded: at most ``capacity`` profiles (least recently read dropped first), at most
``RECENT`` entries of each kind per profile, each kept as its compact JSON (a few hundred
bytes, nothing for the garbage collector to walk). An entry is valid for one snapshot
version: the actor advances it with each unit it commits, and any other change of version
(another process wrote, a reload) drops it.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from datetime import datetime
from decimal import Decimal

import msgspec
import trio

from perkamo.program.json_walk import JsonObject
from perkamo.program.outcome import Delta
from storage.adjustments import RecentAdjustment, recent_adjustments
from storage.database import Conn
from storage.profiles import StoredEvent, StoredRedemption, recent_events, recent_redemptions

RECENT = 20  # events and redemptions a profile document lists
ProfileKey = tuple[int, str]


class HistoryEvent(msgspec.Struct):
    event: str
    transaction_id: str
    occurred_at: datetime
    delta: list[Delta]
    source: str = "server"  # "client": sent by a browser (docs/api.md "The browser half")
    reversed_at: datetime | None = None  # a return (docs/api.md "Support operations")


class HistoryRedemption(msgspec.Struct):
    reward_key: str
    transaction_id: str
    redeemed_at: datetime
    cost: Delta | None
    effect: JsonObject | None
    reversed_at: datetime | None = None


class HistoryAdjustment(msgspec.Struct):
    adjustment_id: str
    transaction_id: str
    wallet: str
    amount: Decimal
    reason: str
    actor: str | None
    created_at: datetime


class _EventParts(msgspec.Struct):  # what an event's stored answer contributes
    delta: list[Delta] = []


class _RedemptionParts(msgspec.Struct):
    cost: Delta | None = None
    effect: JsonObject | None = None


_event_parts = msgspec.json.Decoder(_EventParts, float_hook=Decimal)
_redemption_parts = msgspec.json.Decoder(_RedemptionParts, float_hook=Decimal)
_events = msgspec.json.Decoder(list[HistoryEvent], float_hook=Decimal)
_redemptions = msgspec.json.Decoder(list[HistoryRedemption], float_hook=Decimal)
_adjustments = msgspec.json.Decoder(list[HistoryAdjustment], float_hook=Decimal)
Kept = tuple[list[HistoryEvent], list[HistoryRedemption], list[HistoryAdjustment]]
_encoder = msgspec.json.Encoder(decimal_format="number")


def event_entry(
    event: str,
    transaction_id: str,
    occurred_at: datetime,
    delta: list[Delta],
    source: str = "server",
) -> bytes:
    """An event as the profile document lists it (compact JSON)."""
    return _encoder.encode(HistoryEvent(event, transaction_id, occurred_at, delta, source))


def _event(
    event: str,
    transaction_id: str,
    occurred_at: datetime,
    outcome: str,
    source: str,
    reversed_at: datetime | None = None,
) -> bytes:
    parts = _event_parts.decode(outcome)
    return _encoder.encode(HistoryEvent(event, transaction_id, occurred_at, parts.delta, source,
                                        reversed_at))  # fmt: skip


def redemption_entry(
    reward_key: str,
    transaction_id: str,
    at: datetime,
    outcome: str,
    reversed_at: datetime | None = None,
) -> bytes:
    """A redemption as the profile document lists it (from its stored answer)."""
    parts = _redemption_parts.decode(outcome)
    return _encoder.encode(
        HistoryRedemption(reward_key, transaction_id, at, parts.cost, parts.effect, reversed_at)
    )


def adjustment_entry(
    adjustment_id: str,
    transaction_id: str,
    wallet: str,
    amount: Decimal,
    reason: str,
    actor: str | None,
    created_at: datetime,
) -> bytes:
    return _encoder.encode(HistoryAdjustment(
        adjustment_id, transaction_id, wallet, amount, reason, actor, created_at
    ))  # fmt: skip


class _Entry:
    __slots__ = ("adjustments", "events", "redemptions", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.events: deque[bytes] = deque(maxlen=RECENT)  # newest last
        self.redemptions: deque[bytes] = deque(maxlen=RECENT)
        self.adjustments: deque[bytes] = deque(maxlen=RECENT)

    def kept(self) -> Kept:
        """Newest first."""
        return (
            _events.decode(_array(self.events)),
            _redemptions.decode(_array(self.redemptions)),
            _adjustments.decode(_array(self.adjustments)),
        )


def _array(items: deque[bytes]) -> bytes:
    return b"[" + b",".join(reversed(items)) + b"]"


def read_recent(conn: Conn, space_id: int, user_id: str, limit: int = RECENT) -> Kept:
    """A profile's recent events, redemptions and adjustments from storage, newest first
    (``conn``: a connection of the shared pool, for ``Database.run``)."""
    entry = _Entry(0)
    _fill(
        entry,
        recent_events(conn, space_id, user_id, limit),
        recent_redemptions(conn, space_id, user_id, limit),
        recent_adjustments(conn, space_id, user_id, limit),
    )
    return entry.kept()


def _fill(
    entry: _Entry,
    events: list[StoredEvent],
    redemptions: list[StoredRedemption],
    adjustments: list[RecentAdjustment],
) -> None:
    """Stored rows (newest first) into an entry (newest last)."""
    for e in reversed(events[:RECENT]):
        entry.events.append(_event(e.event, e.transaction_id, e.occurred_at, e.outcome, e.source,
                                   e.reversed_at))  # fmt: skip
    for r in reversed(redemptions[:RECENT]):
        entry.redemptions.append(
            redemption_entry(r.reward_key, r.transaction_id, r.received_at, r.outcome,
                             r.reversed_at)
        )  # fmt: skip
    for a in reversed(adjustments[:RECENT]):
        entry.adjustments.append(adjustment_entry(
            a.adjustment_id, a.transaction_id, a.wallet, a.amount, a.reason, a.actor,
            a.created_at,
        ))  # fmt: skip


class RecentHistory:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[ProfileKey, _Entry] = OrderedDict()
        self._exclusive_until = -math.inf  # trio time
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def exclusive(self) -> bool:
        return trio.current_time() < self._exclusive_until

    def grant(self, checked_at: float, lease: float) -> None:
        """No other member was alive at ``checked_at``: memory may answer until
        ``checked_at + lease``. A lease that had lapsed starts afresh."""
        if checked_at >= self._exclusive_until:
            self._restart()
        self._exclusive_until = checked_at + lease

    def revoke(self) -> None:
        """Another member is alive: answer from storage only."""
        if self._exclusive_until > -math.inf:
            self._restart()
        self._exclusive_until = -math.inf

    def _restart(self) -> None:
        self._entries.clear()
        self.epoch += 1

    def read(self, key: ProfileKey, version: int) -> Kept | None:
        """Newest first, if kept for exactly this version."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version or not self.exclusive:
            return None
        self._entries.move_to_end(key)
        return entry.kept()

    def keep(
        self,
        key: ProfileKey,
        version: int,
        events: list[StoredEvent],
        redemptions: list[StoredRedemption],
        adjustments: list[RecentAdjustment],
        epoch: int,
    ) -> Kept:
        """What a read found in storage (newest first) at ``version``, kept if the read
        began in this epoch."""
        entry = _Entry(version)
        _fill(entry, events, redemptions, adjustments)
        if epoch == self.epoch and self.exclusive:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return entry.kept()

    def committed(
        self,
        key: ProfileKey,
        before: int,
        after: int,
        recent: list[tuple[str, bytes]],
        stale: bool,
    ) -> None:
        """A unit committed: an entry kept at ``before`` moves to ``after`` with what the
        unit's writes add to its lists (``recent``: (list name, entry)). ``stale``: a write
        changed entries already listed (a reversal): the profile is read from storage
        again."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.version != before or stale:
            del self._entries[key]
            return
        for name, item in recent:
            getattr(entry, name).append(item)
        entry.version = after
