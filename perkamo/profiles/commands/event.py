"""``POST /v1/events``: one event applied to the profile through the pure engine, logged
with its answer in the event log (namespace ``event``)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from perkamo import ids
from perkamo.errors import PerkamoError
from perkamo.profiles.answers import EventOutcome, event_answer, imported_event_answer
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    Written,
    announce_settled,
    conflict,
    duplicate,
    encode_json,
)
from perkamo.profiles.history import event_entry
from perkamo.program import EngineEvent, ProfileState, Program, apply
from perkamo.program.canonical import FORM, request_hash
from perkamo.program.json_walk import JsonObject
from perkamo.program.levels import level_number
from perkamo.program.outcome import Delta
from perkamo.program.returns import EventRecord
from perkamo.webhooks import event_delivery
from storage import EventRow
from storage.history import HistoryRow, StoredWrite

_encoder = msgspec.json.Encoder(decimal_format="number")


class Ingest(Command[Written], tag="event", frozen=True, kw_only=True):
    change: ClassVar[str | None] = "event.applied"
    namespace: ClassVar[str | None] = "event"
    meter: ClassVar[str | None] = "events"
    counted: ClassVar[bool] = True
    answer_type: ClassVar[object] = Written
    table: ClassVar[str] = "events"  # its log table (storage/log_tables.py)

    transaction_id: str
    event: str
    context: JsonObject
    occurred_at: datetime | None = None

    def request_hash(self, user_id: str, form: int = FORM) -> bytes:
        """What idempotency compares: user, event key and canonical context (never
        ``occurred_at``: the PHP SDK sends a new one with every retry)."""
        return request_hash(user_id, self.event, self.context, form=form)

    def stage(self, draft: Draft, position: int) -> Written:
        program, hook = draft.program, draft.hook
        occurred = self.occurred_at or self.received_at
        seen = EngineEvent(self.event, self.context, self.occurred_at, draft.traits,
                           self.source, self.transaction_id)  # fmt: skip
        level_before = level_number(draft.state, program) if hook.enabled else None
        state, outcome = apply(draft.state, seen, program, self.received_at)
        event_id = "evt_" + ids.token_hex(12)
        answer = _encoder.encode(event_answer(outcome, event_id, program))
        draft.add(self.table, EventRow(
            space_id=draft.space_id, transaction_id=self.transaction_id,
            user_id=draft.user_id, event=self.event, context=encode_json(self.context),
            occurred_at=occurred, received_at=self.received_at,
            request_hash=self.request_hash(draft.user_id), outcome=answer.decode(),
            profile_version=draft.version, position=position, event_id=event_id,
        ))  # fmt: skip
        if hook.enabled:
            draft.outbox.append(event_delivery(
                hook, draft.space_id, event_id, draft.user_id, self.transaction_id, self.event,
                occurred, self.received_at, self.context, outcome,
                level_before if outcome.leveled_up else None, self.source,
            ))  # fmt: skip
            announce_settled(draft, outcome.settled, outcome.wallet_state, outcome.level,
                             self.received_at, self.transaction_id)  # fmt: skip
        draft.recent.append(("events", event_entry(self.event, self.transaction_id, occurred,
                                                   outcome.delta, self.source)))  # fmt: skip
        draft.state = state
        return Written(msgspec.Raw(answer))  # sent as it is stored: encoded once

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        mine = self.request_hash(user_id, original.hash_form)
        if original.request_hash == mine and original.user_id == user_id:
            return duplicate(original.outcome, EventOutcome)
        return conflict(original, "event")

    def imported(
        self, user_id: str, known: StoredWrite, state: ProfileState, program: Program
    ) -> Written | PerkamoError:
        if known.user_id and known.user_id != user_id:  # imported for another customer
            return conflict(known, "event")
        assert known.imported is not None
        answer = imported_event_answer(known.imported, state, program)
        return Written(msgspec.Raw(_encoder.encode(answer)), duplicate=True)

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        seen = EngineEvent(row.name, row.payload or {}, row.occurred_at, run.traits, cls.source,
                           row.transaction_id)  # fmt: skip
        run.state, outcome = apply(
            run.state, seen, run.program, row.received_at, summary=True, in_place=True
        )
        if outcome.delta or outcome.pending:  # what returning it would take back
            run.events[(cls.source, row.transaction_id)] = event_record(
                row.transaction_id, row.occurred_at or row.received_at, outcome.delta,
                outcome.pending,
            )  # fmt: skip
        return Replayed(
            outcome.delta, outcome.breakdown, outcome.unlocked, outcome.pending, outcome.settled
        )


def event_record(
    transaction_id: str, occurred_at: datetime, delta: list[Delta], pending: list[Delta]
) -> EventRecord:
    return EventRecord(
        transaction_id, occurred_at, {d.wallet: d.amount for d in delta},
        {p.wallet: p.amount for p in pending},
    )  # fmt: skip
