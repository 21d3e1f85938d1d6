"""``POST /v1/admin/events/{transaction_id}/reverse`` (docs/api.md "Support operations"): a
returned or cancelled order takes back what its event gave (``perkamo/program/returns.py``).
Logged under the event's transaction id (namespace ``event_reversal``): one reversal per
event, whatever the reason of a repeat.

A browser-sent event's transaction id is its customer's own (docs/api.md "The browser
half"): its reversal, ``ReverseClientEvent``, finds it among that customer's client events
and is kept in a namespace of its own, so a server event and a browser event that share an
id are each reversed once, apart."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

import msgspec

from perkamo import ids
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import (
    EventReverseResponse,
    ReversedEvent,
    level_progress,
    settled_answer,
    stored_event_answer,
)
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    Written,
    announce_settled,
    duplicate,
    encode_json,
)
from perkamo.profiles.commands.event import event_record
from perkamo.profiles.commands.reversal import AlreadyReversed
from perkamo.program.outcome import Delta
from perkamo.program.returns import EventRecord, reverse_event
from perkamo.program.timefmt import format_rfc3339, parse_rfc3339
from perkamo.webhooks import support_delivery
from storage import ReversalRow
from storage.history import HistoryRow, StoredWrite

_encoder = msgspec.json.Encoder(decimal_format="number")


def event_not_found(transaction_id: str) -> PerkamoError:
    return PerkamoError(
        Code.EVENT_NOT_FOUND, f"No applied event with transaction_id {transaction_id!r}."
    )


class ReverseEvent(Command[Written], tag="event_reversal", frozen=True, kw_only=True):
    namespace: ClassVar[str | None] = "event_reversal"
    needs_profile: ClassVar[bool] = True
    lookup: ClassVar[str | None] = "event"  # the namespace of the event it reverses
    answer_type: ClassVar[object] = Written
    change: ClassVar[str | None] = "event.reversed"
    table: ClassVar[str] = "event_reversals"

    transaction_id: str  # the event's
    reason: str
    actor: str | None
    audit: str | None = None  # an operator: the audit log records it in the same commit

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises PerkamoError for a refusal: no such event of this profile, or one already
        reversed (then answered as the duplicate of its reversal)."""
        stored = draft.found.get((str(self.lookup), self.transaction_id))
        if stored is None or stored.user_id != draft.user_id or stored.occurred_at is None:
            raise event_not_found(self.transaction_id)
        if stored.reversed_at is not None:
            raise AlreadyReversed(Code.IDEMPOTENCY_CONFLICT, "This event is already reversed.")
        original = stored_event_answer(stored.outcome)
        record = event_record(
            self.transaction_id, stored.occurred_at, original.delta, original.pending
        )
        program = draft.program
        state, back = reverse_event(draft.state, record, program, self.received_at, draft.traits)
        event = ReversedEvent(
            transaction_id=self.transaction_id, event=stored.name or "",
            occurred_at=format_rfc3339(stored.occurred_at), source=self.source,
            status="reversed", reversed_at=format_rfc3339(self.received_at), reason=self.reason,
            actor=self.actor,
        )  # fmt: skip
        answer = _encoder.encode(EventReverseResponse(
            reversed=True, duplicate=False, delta=back.delta, pending=back.pending,
            shortfall=back.shortfall, leveled_down=back.leveled_down,
            wallet_state=back.wallet_state, level=level_progress(back.level), event=event,
            settled=settled_answer(back.settled, program),
        ))  # fmt: skip
        draft.add(self.table, ReversalRow(
            space_id=draft.space_id, transaction_id=self.transaction_id, user_id=draft.user_id,
            reason=self.reason, actor=self.actor, received_at=self.received_at,
            outcome=answer.decode(), program_versions=encode_json(program.versions),
            profile_version=draft.version, position=position,
        ))  # fmt: skip
        if draft.hook.enabled:
            draft.outbox.append(support_delivery(
                draft.hook, draft.space_id, "event.reversed", "evr_" + ids.token_hex(12),
                draft.user_id, self.transaction_id, self.received_at, back,
                {"event": event, "pending": back.pending, "shortfall": back.shortfall,
                 "leveled_down": back.leveled_down},
            ))  # fmt: skip
            announce_settled(draft, back.settled, back.wallet_state, back.level,
                             self.received_at, self.transaction_id)  # fmt: skip
        draft.audit(self.audit, "customer.reverse_event", self.transaction_id, self.reason,
                    {"user_id": draft.user_id, "delta": back.delta, "shortfall": back.shortfall},
                    self.received_at)  # fmt: skip
        draft.stale_recent = True  # the listed event is now reversed
        draft.state = state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        """One reversal per event, whatever the reason: a repeat is its duplicate."""
        return duplicate(original.outcome, EventReverseResponse)

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        """What this run's own event gave is taken back (a candidate program's awards in a
        back-test); the recorded outcome where the run never saw the event."""
        record = run.events.pop((cls.source, row.transaction_id), None) or _recorded(row)
        run.state, back = reverse_event(run.state, record, run.program, row.received_at, run.traits)
        return Replayed(
            delta=back.delta, pending=back.pending, unlocked=back.unlocked, settled=back.settled
        )


class ReverseClientEvent(ReverseEvent, tag="client_event_reversal", frozen=True, kw_only=True):
    """The reversal of an event a browser sent (``source: "client"``)."""

    namespace: ClassVar[str | None] = "client_event_reversal"
    lookup: ClassVar[str | None] = "client_event"
    source: ClassVar[str] = "client"
    table: ClassVar[str] = "client_event_reversals"


def _recorded(row: HistoryRow) -> EventRecord:
    payload = row.payload or {}
    occurred = payload.get("occurred_at")
    occurred_at: datetime = (
        parse_rfc3339(occurred) if isinstance(occurred, str) else row.received_at
    )

    def amounts(key: str) -> list[Delta]:
        return [Delta(d["wallet"], Decimal(str(d["amount"]))) for d in payload.get(key) or ()]

    return event_record(row.transaction_id, occurred_at, amounts("delta"), amounts("pending"))
