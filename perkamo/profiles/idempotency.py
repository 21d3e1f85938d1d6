"""Idempotency (API.md §4): a transaction id applies once per Space and namespace, forever.

The unique indexes of the event log and of redemptions are the final guard: a write whose id
is taken is refused at commit and then judged here against the stored original — the same
payload is a duplicate (the original answer, ``duplicate: true``), anything else a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import (
    AdjustResponse,
    EventOutcome,
    RedeemResponse,
    stored_adjust_answer,
    stored_event_answer,
    stored_redeem_answer,
    stored_reverse_answer,
)
from perkamo.profiles.messages import (
    Adjust,
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
from storage.support import StoredAdjustment, StoredReversal, find_adjustments, find_reversals


def event_hash(user_id: str, event: EventRequest, form: int = FORM) -> bytes:
    """What idempotency compares: user, event key and canonical context (not occurred_at),
    in the canonical form of the stored hash it is compared with."""
    return request_hash(user_id, event.event, event.context, form=form)


def redemption_hash(user_id: str, message: Redeem, form: int = FORM) -> bytes:
    return request_hash(user_id, message.reward_key, message.context, form=form)


def adjustment_hash(user_id: str, message: Adjust, form: int = FORM) -> bytes:
    """An adjustment's identity: user, wallet, amount and whether it counts toward the
    level. The reason and the actor are annotations (as for a reversal, whose repeat with
    another reason is the same reversal)."""
    payload = {"amount": message.amount, "counts_toward_level": message.counts_toward_level}
    return request_hash(user_id, "adjustment:" + message.wallet, payload, form=form)


Stored = StoredEvent | StoredRedemption | StoredAdjustment | StoredReversal


async def _originals(
    db: Database, space_id: int, taken: frozenset[TransactionKey]
) -> dict[TransactionKey, Stored]:
    """The stored originals of the given ids, one query per namespace asked for."""
    finders: dict[str, Callable[..., Sequence[Stored]]] = {
        "event": find_events,
        "redemption": find_redemptions,
        "adjustment": find_adjustments,
        "reversal": find_reversals,
    }
    found: dict[TransactionKey, Stored] = {}
    for namespace, finder in finders.items():
        ids = sorted(tx for ns, tx in taken if ns == namespace)
        if ids:
            for row in await db.run(finder, space_id, ids):
                found[(namespace, row.transaction_id)] = row
    return found


async def judge_taken(
    db: Database,
    space_id: int,
    user_id: str,
    messages: Sequence[Write],
    taken: frozenset[TransactionKey],
    *,
    refused_at_commit: bool = False,
) -> dict[TransactionKey, Answer]:
    """Verdicts for the writes whose id is among ``taken`` and stored. An id that is not
    stored gets no verdict (apply it) — unless the commit just refused it, which makes its
    fate uncertain (503, retry)."""
    originals = await _originals(db, space_id, taken)
    verdicts: dict[TransactionKey, Answer] = {}
    for message in messages:
        key = transaction_of(message)
        if key is None or key not in taken:
            continue
        original = originals.get(key)
        if original is None:
            if refused_at_commit:
                verdicts[key] = PerkamoError(
                    Code.STORAGE_UNAVAILABLE, "The write could not be recorded; retry."
                )
            continue
        verdicts[key] = _verdict(user_id, message, original)
    return verdicts


def _verdict(user_id: str, message: Write, original: Stored) -> Answer:
    if isinstance(original, StoredReversal):  # one reversal per redemption, whatever the reason
        return msgspec.structs.replace(stored_reverse_answer(original.outcome), duplicate=True)
    if isinstance(message, Ingest):
        mine, kind = event_hash(user_id, message.event, original.hash_form), "event"
    elif isinstance(message, Redeem):
        mine, kind = redemption_hash(user_id, message, original.hash_form), "redemption"
    else:
        assert isinstance(message, Adjust)
        mine, kind = adjustment_hash(user_id, message, original.hash_form), "adjustment"
    if original.request_hash == mine and original.user_id == user_id:
        answer: EventOutcome | RedeemResponse | AdjustResponse
        if isinstance(original, StoredEvent):
            answer = stored_event_answer(original.outcome)
        elif isinstance(original, StoredRedemption):
            answer = stored_redeem_answer(original.outcome)
        else:
            answer = stored_adjust_answer(original.outcome)
        return msgspec.structs.replace(answer, duplicate=True)
    return PerkamoError(
        Code.IDEMPOTENCY_CONFLICT,
        f"transaction_id {original.transaction_id!r} was already used for a different "
        f"{kind} (its user or payload differ).",
    )
