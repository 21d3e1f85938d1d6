"""The profile actor: owns one profile, applies its events in order, and answers only after
the group commit has made the answer durable.

Every message already waiting in the mailbox is applied in order and staged as one unit
(their event rows plus one snapshot), so consecutive events of one user share a commit. If an
item is refused at commit (its transaction id is taken), that item is answered from the
stored event (duplicate or conflict) and the rest are re-applied from the committed state.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from storage import (
    CommitOutcomeUnknown,
    Database,
    EventRow,
    GroupCommitWriter,
    SnapshotWrite,
    Status,
    Unit,
)
from storage.profile_loader import ProfileLoader
from storage.profiles import ProfileRow, StoredEvent, find_events, recent_events

from .canonical import request_hash
from .configuration import ProgramCatalog
from .errors import BadRequest, PerkamoError, ServiceUnavailable
from .program import EngineEvent, ProfileState, Program, apply, apply_identify
from .wire import EventInput

ProfileKey = tuple[int, str]  # (space_id, user_id)

RECENT_EVENTS = 20
_MAX_ATTEMPTS = 5

_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class Ingest:
    event: EventInput
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Identify:
    traits: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Read:
    pass


@dataclass(frozen=True, slots=True)
class IdentifyResult:
    traits: dict[str, Any]
    created: bool


@dataclass(frozen=True, slots=True)
class ProfileView:
    traits: dict[str, Any]
    state: ProfileState
    created_at: datetime
    updated_at: datetime
    recent_events: list[StoredEvent]


Message = Ingest | Identify | Read
# An event reply is the response body (a dict); failures are returned, not raised, so that
# one bad item never fails its neighbours in the batch.
Reply = dict[str, Any] | IdentifyResult | ProfileView | PerkamoError | None


def _state_from_json(value: Any) -> ProfileState:
    return msgspec.convert(value, ProfileState, strict=False)


@dataclass(slots=True)
class _Snapshot:
    traits: dict[str, Any]
    state: ProfileState
    version: int  # 0: not stored yet
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: ProfileRow | None) -> _Snapshot:
        if row is None:
            return cls({}, ProfileState(), 0, None, None)
        return cls(
            row.traits, _state_from_json(row.state), row.version, row.created_at, row.updated_at
        )


class ProfileServices:
    """What every profile actor shares: storage, the writer, the programs."""

    def __init__(
        self,
        db: Database,
        loader: ProfileLoader,
        writer: GroupCommitWriter,
        programs: ProgramCatalog,
    ) -> None:
        self.db = db
        self.loader = loader
        self.writer = writer
        self.programs = programs

    async def activate(self, key: ProfileKey) -> ProfileActor:
        space_id, user_id = key
        row = await self.loader.load(space_id, user_id)
        return ProfileActor(self, space_id, user_id, _Snapshot.from_row(row))


class ProfileActor:
    def __init__(
        self, services: ProfileServices, space_id: int, user_id: str, snapshot: _Snapshot
    ) -> None:
        self._services = services
        self._space_id = space_id
        self._user_id = user_id
        self._snapshot = snapshot

    async def receive(self, messages: Sequence[Message]) -> list[Reply]:
        replies: list[Reply] = []
        start = 0
        while start < len(messages):
            if isinstance(messages[start], Read):
                replies.append(await self._read())
                start += 1
                continue
            end = self._unit_end(messages, start)
            writes = [m for m in messages[start:end] if not isinstance(m, Read)]
            replies.extend(await self._write(writes))
            start = end
        return replies

    @staticmethod
    def _unit_end(messages: Sequence[Message], start: int) -> int:
        """Writes from ``start`` up to a read or a repeated transaction id (which must be
        judged against the committed earlier one)."""
        seen: set[str] = set()
        end = start
        while end < len(messages):
            message = messages[end]
            if isinstance(message, Read):
                break
            if isinstance(message, Ingest):
                if message.event.transaction_id in seen:
                    break
                seen.add(message.event.transaction_id)
            end += 1
        return end

    # -- reads ---------------------------------------------------------------------------------

    async def _read(self) -> ProfileView | None:
        snap = self._snapshot
        if snap.version == 0:
            return None
        assert snap.created_at is not None and snap.updated_at is not None
        events = await self._services.db.run(
            recent_events, self._space_id, self._user_id, RECENT_EVENTS
        )
        return ProfileView(snap.traits, snap.state, snap.created_at, snap.updated_at, events)

    # -- writes --------------------------------------------------------------------------------

    async def _write(self, messages: list[Ingest | Identify]) -> list[Reply]:
        replies: list[Reply] = [None] * len(messages)
        todo = list(range(len(messages)))
        for _ in range(_MAX_ATTEMPTS):
            if not todo:
                return replies
            program = await self._services.programs.get(self._space_id)
            unit, after, answers = self._stage([messages[i] for i in todo], program)
            verdict = await self._services.writer.commit(unit)
            if verdict.status is Status.COMMITTED:
                self._snapshot = after
                for i, answer in zip(todo, answers, strict=True):
                    replies[i] = answer
                return replies
            if verdict.status is Status.CONFLICT:
                taken = await self._judge_conflicts(verdict.conflicts, [messages[i] for i in todo])
                for i in todo:
                    message = messages[i]
                    if isinstance(message, Ingest) and message.event.transaction_id in taken:
                        replies[i] = taken[message.event.transaction_id]
                todo = [i for i in todo if replies[i] is None]
                continue
            if verdict.status is Status.STALE:
                # Another process wrote this profile: reload and re-apply on its state.
                row = await self._services.loader.load(self._space_id, self._user_id)
                self._snapshot = _Snapshot.from_row(row)
                continue
            if verdict.status is Status.UNAVAILABLE:
                for i in todo:
                    replies[i] = ServiceUnavailable(
                        "Storage is unavailable; retry with the same transaction_id.",
                        code="storage_unavailable",
                    )
                return replies
            raise CommitOutcomeUnknown("the commit outcome of this profile's writes is unknown")
        raise RuntimeError("profile writes did not settle")

    def _stage(
        self, messages: list[Ingest | Identify], program: Program
    ) -> tuple[Unit, _Snapshot, list[Reply]]:
        before = self._snapshot
        traits = before.traits
        state = before.state
        exists = before.version > 0
        events: list[EventRow] = []
        answers: list[Reply] = []
        last_time = before.updated_at
        for message in messages:
            if isinstance(message, Ingest):
                ev = message.event
                seen = EngineEvent(ev.event, ev.context, ev.occurred_at, traits)
                state, outcome = apply(state, seen, program, message.received_at)
                body = {
                    "applied": True,
                    "duplicate": False,
                    "delta": outcome.delta,
                    "leveled_up": outcome.leveled_up,
                    "unlocked": outcome.unlocked,
                    "wallet_state": outcome.wallet_state,
                    "level": outcome.level,
                    "event_id": "evt_" + secrets.token_hex(12),
                    "skipped": outcome.skipped,
                    "breakdown": outcome.breakdown,
                    "program_versions": program.versions,
                }
                events.append(
                    EventRow(
                        space_id=self._space_id,
                        transaction_id=ev.transaction_id,
                        user_id=self._user_id,
                        event=ev.event,
                        context=_encoder.encode(ev.context).decode(),
                        occurred_at=ev.occurred_at or message.received_at,
                        received_at=message.received_at,
                        request_hash=event_hash(ev),
                        outcome=_encoder.encode(body).decode(),
                    )
                )
                answers.append(body)
            else:
                traits = merge_traits(traits, message.traits)
                state, _ = apply_identify(state, traits, program, message.received_at)
                answers.append(IdentifyResult(traits, created=not exists))
            exists = True
            last_time = message.received_at
        assert last_time is not None
        snapshot = SnapshotWrite(
            space_id=self._space_id,
            user_id=self._user_id,
            traits=_encoder.encode(traits).decode(),
            state=_encoder.encode(state).decode(),
            expected_version=before.version,
            updated_at=last_time,
        )
        after = _Snapshot(
            traits,
            state,
            before.version + 1,
            before.created_at or messages[0].received_at,
            last_time,
        )
        return Unit(events, snapshot), after, answers

    async def _judge_conflicts(
        self, transaction_ids: frozenset[str], messages: list[Ingest | Identify]
    ) -> dict[str, Reply]:
        """Answer each refused event from the stored one: same payload → the original
        outcome marked duplicate; anything else → idempotency_conflict."""
        stored = {
            e.transaction_id: e
            for e in await self._services.db.run(
                find_events, self._space_id, sorted(transaction_ids)
            )
        }
        verdicts: dict[str, Reply] = {}
        for message in messages:
            if not isinstance(message, Ingest):
                continue
            tx = message.event.transaction_id
            if tx not in transaction_ids:
                continue
            original = stored.get(tx)
            if original is None:  # refused, yet not there: let the client retry
                verdicts[tx] = ServiceUnavailable(
                    "The event could not be recorded; retry.", code="storage_unavailable"
                )
            elif original.request_hash == event_hash(message.event):
                verdicts[tx] = {**original.outcome, "duplicate": True}
            else:
                verdicts[tx] = BadRequest(
                    f"transaction_id {tx!r} was already used for a different event "
                    "(user_id, event or context differ).",
                    code="idempotency_conflict",
                )
        return verdicts


def event_hash(event: EventInput) -> bytes:
    """What idempotency compares: user, event key and canonical context (not occurred_at)."""
    return request_hash(event.user_id, event.event, event.context)


def merge_traits(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Shallow merge; a key whose value is ``null`` is removed."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
