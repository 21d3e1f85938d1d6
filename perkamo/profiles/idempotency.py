"""Idempotency (API.md §4): a transaction id applies once per Space and namespace, forever.

The unique indexes of the event log and of redemptions are the final guard: a write whose id
is taken is refused at commit and then judged here against the stored original — the same
payload is a duplicate (the original answer, ``duplicate: true``), anything else a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import stored_event_answer, stored_redeem_answer
from perkamo.profiles.messages import (
    Answer,
    EventRequest,
    Ingest,
    Redeem,
    TransactionKey,
    Write,
    transaction_of,
)
from perkamo.program.canonical import FORM, request_hash
from storage import Database
from storage.profiles import StoredEvent, StoredRedemption, find_events, find_redemptions


def event_hash(user_id: str, event: EventRequest, form: int = FORM) -> bytes:
    """What idempotency compares: user, event key and canonical context (not occurred_at),
    in the canonical form of the stored hash it is compared with."""
    return request_hash(user_id, event.event, event.context, form=form)


def redemption_hash(user_id: str, message: Redeem, form: int = FORM) -> bytes:
    return request_hash(user_id, message.reward_key, message.context, form=form)


async def judge_taken(
    db: Database,
    space_id: int,
    user_id: str,
    messages: Sequence[Write],
    event_ids: frozenset[str],
    redemption_ids: frozenset[str],
    *,
    refused_at_commit: bool = False,
) -> dict[TransactionKey, Answer]:
    """Verdicts for the writes whose id is among those given and stored. An id that is not
    stored gets no verdict (apply it) — unless the commit just refused it, which makes its
    fate uncertain (503, retry)."""
    events: dict[str, StoredEvent] = {}
    redemptions: dict[str, StoredRedemption] = {}
    if event_ids:
        events = {
            e.transaction_id: e for e in await db.run(find_events, space_id, sorted(event_ids))
        }
    if redemption_ids:
        found = await db.run(find_redemptions, space_id, sorted(redemption_ids))
        redemptions = {r.transaction_id: r for r in found}
    verdicts: dict[TransactionKey, Answer] = {}
    for message in messages:
        original: StoredEvent | StoredRedemption | None
        if isinstance(message, Ingest) and message.transaction_id in event_ids:
            original = events.get(message.transaction_id)
        elif isinstance(message, Redeem) and message.transaction_id in redemption_ids:
            original = redemptions.get(message.transaction_id)
        else:
            continue
        key = transaction_of(message)
        assert key is not None
        if original is None:
            if refused_at_commit:
                verdicts[key] = PerkamoError(
                    Code.STORAGE_UNAVAILABLE, "The write could not be recorded; retry."
                )
            continue
        verdicts[key] = _verdict(user_id, message, original)
    return verdicts


def _verdict(user_id: str, message: Write, original: StoredEvent | StoredRedemption) -> Answer:
    if isinstance(message, Ingest):
        mine = event_hash(user_id, message.event, original.hash_form)
        kind = "event"
    else:
        assert isinstance(message, Redeem)
        mine = redemption_hash(user_id, message, original.hash_form)
        kind = "redemption"
    if original.request_hash == mine:
        answer = (
            stored_event_answer(original.outcome)
            if isinstance(original, StoredEvent)
            else stored_redeem_answer(original.outcome)
        )
        return msgspec.structs.replace(answer, duplicate=True)
    return PerkamoError(
        Code.IDEMPOTENCY_CONFLICT,
        f"transaction_id {original.transaction_id!r} was already used for a different "
        f"{kind} (its user or payload differ).",
    )
