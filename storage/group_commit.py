"""The group-commit writer: many actors' writes share one transaction.

One task owns a dedicated connection. Whenever the previous flush has finished it takes every
unit staged since (up to ``max_units``) and writes them in one transaction: events inserted
with ``ON CONFLICT DO NOTHING RETURNING``, new profiles inserted, existing ones updated only
at their expected version. A unit with a conflicting event or a stale snapshot is set aside
with its verdict and the rest is flushed again; every waiter is resolved only after COMMIT.
There is no fixed delay: a lone unit commits at once, a busy server batches naturally.

The log rows and their SQL live in ``log_tables.py``, the flush statement in
``flush_statements.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Protocol

import msgspec
import psycopg
import trio

from actors import Future, wait_all

from ._errors import CommitOutcomeUnknown, StorageUnavailable
from ._queue import BatchQueue
from .database import DEFAULT_TIMEOUTS, Timeouts, keyed_plans_only
from .flush_statements import ENSURE_LIMITED, FLUSH, FLUSH_GUARDED, GROW_LIMITED
from .log_tables import LOG_TABLES
from .native import NativeConnection, Session

log = logging.getLogger(__name__)
_KEYED = {t.name for t in LOG_TABLES if t.namespace is not None}


@dataclass(slots=True)
class AuditRow:
    """An operator's action, committed with the change it records."""

    actor: str
    action: str
    space_id: int
    target: str
    reason: str | None
    details: str  # JSON text
    at: datetime


@dataclass(slots=True)
class OutboxRow:
    """A webhook delivery, written in the same transaction as what it announces."""

    id: str
    space_id: int
    event_type: str
    body: str  # the exact JSON text that will be POSTed
    created_at: datetime
    subject: str | None = None  # the transaction id of what it announces


# (space_id, first day of the month, meter) -> increment
UsageKey = tuple[int, date, str]


@dataclass(slots=True)
class SnapshotWrite:
    """The profile after the unit; ``expected_version`` 0 means "create it". ``version``:
    the version it commits — one more than ``expected_version`` per write of the unit (a
    live stream numbers each change by it, docs/api.md "The browser half")."""

    space_id: int
    user_id: str
    traits: str  # JSON text
    state: str  # JSON text
    expected_version: int
    updated_at: datetime
    version: int = 0  # 0: expected_version + 1
    next_due: datetime | None = None  # when settling next changes it (the sweeper's index)
    due_shard: int | None = None  # its shard, with next_due: each member sweeps its own

    def __post_init__(self) -> None:
        if self.version <= self.expected_version:
            self.version = self.expected_version + 1


class LogRow(Protocol):
    """A row of a log table keyed by transaction id (log_tables.py)."""

    space_id: int
    transaction_id: str
    user_id: str


@dataclass(slots=True)
class Unit:
    """Writes that commit together or not at all (one actor's batch). ``rows``: per log
    table (log_tables.py, by name), the rows to insert."""

    rows: dict[str, list[Any]]
    snapshot: SnapshotWrite | None
    usage: dict[UsageKey, int] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)
    # The limit of each meter in ``usage`` that has one: PostgreSQL refuses the unit
    # (OVER_LIMIT) rather than let a meter pass it — exact across server processes.
    limits: dict[UsageKey, int] = field(default_factory=dict)


class Status(Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"  # some transaction ids are taken: see Verdict.taken
    STALE = "stale"  # the profile's version moved: reload and re-apply
    UNAVAILABLE = "unavailable"  # nothing was committed
    OUTCOME_UNKNOWN = "outcome_unknown"  # COMMIT was in flight when the connection failed
    OVER_LIMIT = "over_limit"  # a limited meter would pass its limit (other processes used it)
    FROZEN = "frozen"  # the Space is frozen (perkamo spaces freeze): nothing was written


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    # (namespace, transaction id) of every log row refused as taken (the namespaces of
    # log_tables.py).
    taken: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """A snapshot of the writer's counters (``statistics()``), like trio's own."""

    flushes: int = 0
    units: int = 0
    events: int = 0
    retried_flushes: int = 0
    failed_flushes: int = 0
    max_flush_units: int = 0
    last_flush_seconds: float = 0.0
    total_flush_seconds: float = 0.0
    queued: int = 0


class _Pending(Future[Verdict]):
    __slots__ = ("unit",)

    def __init__(self, unit: Unit) -> None:
        super().__init__()
        self.unit = unit


_rows = msgspec.json.Encoder()

_COMMITTED = Verdict(Status.COMMITTED)


class GroupCommitWriter:
    """Use :func:`open_group_commit_writer`. ``commit(unit)`` waits for the unit's verdict."""

    def __init__(
        self,
        url: str,
        *,
        max_units: int = 2000,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self._max_units = max_units
        self._queue: BatchQueue[_Pending] = BatchQueue()
        self._conn = NativeConnection(url, timeouts, prepare=keyed_plans_only)
        # A flush is given up on after this (its requests were answered at their deadline);
        # its thread discards its connection, the next flush opens another.
        self._flush_seconds = timeouts.statement + 1.0
        self._stats = WriterStatistics()  # replaced (never mutated) at each flush

    async def commit(self, unit: Unit) -> Verdict:
        """Stage ``unit`` and wait until it is committed (or refused). Never raises for
        storage trouble: the verdict says what happened."""
        return await self._enqueue(unit).wait()

    async def commit_many(self, units: list[Unit]) -> list[Verdict]:
        """``commit`` for several units (each its own verdict), with one wait for all."""
        pending = [self._enqueue(unit) for unit in units]
        await wait_all(pending)
        return [p.result() for p in pending]

    def _enqueue(self, unit: Unit) -> _Pending:
        pending = _Pending(unit)
        try:
            self._queue.put(pending)
        except trio.ClosedResourceError:
            pending.resolve(Verdict(Status.UNAVAILABLE))
        return pending

    def statistics(self) -> WriterStatistics:
        return dataclasses.replace(self._stats, queued=len(self._queue))

    async def run(self) -> None:
        """The writer loop; returns when the channel is closed and drained."""
        try:
            while batch := await self._queue.take(self._max_units):
                started = time.perf_counter()
                verdicts = await self._flush([p.unit for p in batch])
                elapsed = time.perf_counter() - started
                self._record(len(batch), elapsed)
                for pending, verdict in zip(batch, verdicts, strict=True):
                    pending.resolve(verdict)
        finally:
            self._conn.close(finished=True)

    async def _flush(self, units: list[Unit]) -> list[Verdict]:
        """One flush on the writer's connection (opened when needed), bounded in time:
        given up on at its deadline, its statement is cancelled and its connection
        discarded (the next flush opens another)."""
        try:
            async with self._conn.session(self._flush_seconds, "the group commit") as session:
                return await self._flush_on(session, units)
        except CommitOutcomeUnknown:  # given up on while it was committing
            log.error("commit outcome unknown: the flush passed its deadline")
            status = Status.OUTCOME_UNKNOWN
        except StorageUnavailable as exc:  # no connection, or given up on before COMMIT
            log.warning("flush failed before commit: %s", str(exc).partition("\n")[0])
            status = Status.UNAVAILABLE
        self._count(failed_flushes=1)
        return [Verdict(status)] * len(units)

    def close(self) -> None:
        """Admit nothing more; ``run`` finishes what is queued and returns."""
        self._queue.close()

    def _record(self, units: int, elapsed: float) -> None:
        s = self._stats
        self._stats = dataclasses.replace(
            s,
            flushes=s.flushes + 1,
            units=s.units + units,
            max_flush_units=max(s.max_flush_units, units),
            last_flush_seconds=elapsed,
            total_flush_seconds=s.total_flush_seconds + elapsed,
        )

    def _count(self, **increments: int) -> None:
        """Add to counters (from the flush's thread: only the writer task waits on it)."""
        s = self._stats
        self._stats = dataclasses.replace(
            s, **{name: getattr(s, name) + n for name, n in increments.items()}
        )

    # -- on the connection ----------------------------------------------------------------------

    def _close_connection(self) -> None:
        self._conn.close()

    async def _flush_on(self, session: Session, units: list[Unit]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(units)
        pending = list(range(len(units)))
        first = True
        # The common case in one round trip (BEGIN, the flush, COMMIT); a flush with limited
        # meters, or one where something was refused, the long way (refusals looked at
        # before COMMIT).
        at_once = not any(unit.limits for unit in units)
        while pending:
            if not first:
                self._count(retried_flushes=1)
            first = False
            try:
                refused = await self._write(session, [units[i] for i in pending], at_once)
                if refused:
                    await session.rollback()
                    for position, verdict in refused.items():
                        verdicts[pending[position]] = verdict
                    pending = [i for n, i in enumerate(pending) if n not in refused]
                    continue
                if refused is not None:  # (None: committed in the same round trip)
                    await session.commit()
            except psycopg.errors.DivisionByZero:  # the guard: something was refused
                await session.rollback()
                at_once, first = False, True  # again, the long way (not a retry)
                continue
            except CommitOutcomeUnknown as exc:
                # Failed, or answered with a warning (not on the synchronous standby).
                log.error("commit outcome unknown: %s", exc)
                self._count(failed_flushes=1)
                if session.conn.broken or session.conn.closed:
                    self._conn.discard()
                for i in pending:
                    verdicts[i] = Verdict(Status.OUTCOME_UNKNOWN)
                break
            except psycopg.errors.DataError as exc:
                # A value PostgreSQL refuses is a property of one unit, not of the storage:
                # flush the halves apart so that only that unit is refused.
                await session.rollback()
                if len(pending) == 1:
                    log.error("a unit cannot be stored: %s", type(exc).__name__)
                    self._count(failed_flushes=1)
                    verdicts[pending[0]] = Verdict(Status.UNAVAILABLE)
                    break
                self._count(retried_flushes=1)
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    done = await self._flush_on(session, [units[i] for i in part])
                    for i, verdict in zip(part, done, strict=True):
                        verdicts[i] = verdict
                break
            except psycopg.Error as exc:
                # (A server turned read-only too: the next flush finds the primary.)
                log.warning("flush failed before commit: %s", type(exc).__name__)
                self._count(failed_flushes=1)
                self._conn.discard()
                for i in pending:
                    verdicts[i] = Verdict(Status.UNAVAILABLE)
                break
            for i in pending:
                verdicts[i] = _COMMITTED
            self._count(events=sum(len(units[i].rows.get("events", ())) for i in pending))
            break
        return [v if v is not None else Verdict(Status.UNAVAILABLE) for v in verdicts]

    async def _write(
        self, session: Session, units: list[Unit], at_once: bool = False
    ) -> dict[int, Verdict] | None:
        """Run the flush's statement (no COMMIT); returns the refused units by position: a
        taken transaction id refuses its unit with a conflict, a snapshot not written (another
        process moved the profile) with stale. Anything refused means the caller rolls back
        everything the statement wrote — meters, outbox and identifies included.

        ``at_once``: BEGIN, the guarded statement and COMMIT in one round trip; returns None
        once committed, raises DivisionByZero (the guard) when anything was refused —
        nothing was committed, the caller rolls back and flushes the long way."""
        snapshots = [(n, u.snapshot) for n, u in enumerate(units) if u.snapshot is not None]
        new = sorted(
            ((n, s) for n, s in snapshots if s.expected_version == 0),
            key=lambda item: (item[1].space_id, item[1].user_id),
        )
        old = sorted(
            ((n, s) for n, s in snapshots if s.expected_version > 0),
            key=lambda item: (item[1].space_id, item[1].user_id),
        )
        totals, usage = _usage(units)
        limits = {key: lim for unit in units for key, lim in unit.limits.items()}
        if limits:
            over = await self._grow_limited(session, totals, limits)
            if over:
                return {
                    n: Verdict(Status.OVER_LIMIT)
                    for n, unit in enumerate(units)
                    if any(unit.usage.get(key) for key in over)
                }
        counters = [
            row for row in usage if (row["space_id"], row["period"], row["meter"]) not in limits
        ]
        logs = {t.name: [(n, r) for n, u in enumerate(units) for r in u.rows.get(t.name, ())]
                for t in LOG_TABLES}  # fmt: skip
        params = {
            **{name: _rows.encode([r for _, r in rows]).decode() for name, rows in logs.items()},
            "created": _rows.encode([s for _, s in new]).decode(),
            "updated": _rows.encode([s for _, s in old]).decode(),
            "outbox": _rows.encode([r for u in units for r in u.outbox]).decode(),
            "audits": _rows.encode([r for u in units for r in u.audits]).decode(),
            "usage": _rows.encode(usage).decode(),
            "counters": _rows.encode(counters).decode(),
            "spaces": _rows.encode(sorted({s.space_id for _, s in snapshots})).decode(),
        }
        if at_once:
            expected = sum(len(rows) for t, rows in logs.items() if t in _KEYED) + len(snapshots)
            await session.execute_and_commit(FLUSH_GUARDED, {**params, "expected": expected})
            return None
        if limits:  # the transaction is open (the limited meters grew in it)
            result = await session.execute(FLUSH, params)
        else:  # BEGIN and the statement in one round trip
            result = await session.begin_and_execute(FLUSH, params)
        written = {(kind, space, key, user) for kind, space, key, user in session.rows(result)}
        frozen = {space for kind, space, _, _ in written if kind == "frozen"}
        refused: dict[int, Verdict] = {
            n: Verdict(Status.FROZEN) for n, snap in snapshots if snap.space_id in frozen
        }
        for table in LOG_TABLES:
            if table.namespace is None:
                continue
            for n, row in logs[table.name]:
                if n in refused and refused[n].status is Status.FROZEN:
                    continue
                if (table.name, row.space_id, row.transaction_id, row.user_id) not in written:
                    previous = refused.get(n, Verdict(Status.CONFLICT))
                    taken = previous.taken | {(table.namespace, row.transaction_id)}
                    refused[n] = Verdict(Status.CONFLICT, taken)
        for n, snap in snapshots:
            if ("profiles", snap.space_id, "", snap.user_id) not in written and n not in refused:
                refused[n] = Verdict(Status.STALE)
        return refused

    @staticmethod
    async def _grow_limited(
        session: Session, totals: dict[UsageKey, int], limits: dict[UsageKey, int]
    ) -> set[UsageKey]:
        """Add the limited meters' usage within their limits; returns the meters that would
        pass theirs (nothing was added to them)."""
        rows = [
            {"space_id": s, "period": p, "meter": m, "used": totals.get((s, p, m), 0), "lim": lim}
            for (s, p, m), lim in sorted(limits.items())
        ]
        param = {"limited": _rows.encode(rows).decode()}
        await session.begin_and_execute(ENSURE_LIMITED, param)
        grown = {(s, p, m) for s, p, m in session.rows(await session.execute(GROW_LIMITED, param))}
        return {key for key in limits if key not in grown}


@asynccontextmanager
async def open_group_commit_writer(
    url: str, *, max_units: int = 2000, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[GroupCommitWriter]:
    """Run a writer for the duration of the block; on exit it flushes what is queued."""
    writer = GroupCommitWriter(url, max_units=max_units, timeouts=timeouts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        try:
            yield writer
        finally:
            writer.close()


def _usage(units: list[Unit]) -> tuple[dict[UsageKey, int], list[dict[str, object]]]:
    """The units' meters summed, and as the flush's rows. Rows every writer may touch are
    written in one order (sorted by key): two server processes flushing the same meters
    never wait on each other in a cycle."""
    totals: dict[UsageKey, int] = {}
    for unit in units:
        for key, amount in unit.usage.items():
            totals[key] = totals.get(key, 0) + amount
    usage: list[dict[str, object]] = [
        {"space_id": space, "period": period, "meter": meter, "used": amount}
        for (space, period, meter), amount in sorted(totals.items())
    ]
    return totals, usage
