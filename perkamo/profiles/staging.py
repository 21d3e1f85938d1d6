"""Staging: a batch of one profile's writes → one unit for the group commit.

Every message is applied in order on the state the previous one left, and its rows (event,
redemption or identify; the webhook delivery) join the unit with one snapshot at the end.
Each message gets a :class:`Step`: an answer that stands only if the unit commits, or a
refusal that needs no commit (unknown profile, a business rule, a usage limit).

An unexpected error while staging one message fails that message alone (API.md "Failure
isolation"): its reservations are released, it answers ``internal_error``, and the others
go on from the state before it (the engine never mutates the state it is given).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from perkamo import ids
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import event_answer, redeem_answer
from perkamo.profiles.draft import Draft, encode_json
from perkamo.profiles.idempotency import event_hash, redemption_hash
from perkamo.profiles.messages import (
    Adjust,
    Answer,
    Identify,
    IdentifyResult,
    Ingest,
    Redeem,
    Reverse,
    Write,
)
from perkamo.profiles.reservations import Reservations
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.support import stage_adjust, stage_reverse
from perkamo.program import EngineEvent, Program, apply, apply_identify, merge_traits
from perkamo.program.levels import level_number
from perkamo.program.rewards import redeem
from perkamo.webhooks import SpaceHook, event_delivery, redemption_delivery
from storage import EventRow, IdentifyRow, RedemptionRow, SnapshotWrite, Unit
from storage.profiles import StoredRedemption

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class OverLimit:
    """Refused for usage — unless the stored log shows the write is a duplicate."""

    meter: str
    moment: datetime


@dataclass(slots=True)
class Step:
    answer: Answer | OverLimit
    needs_commit: bool = False  # the answer stands only if the unit commits


@dataclass(slots=True)
class Staged:
    unit: Unit
    after: Snapshot
    steps: list[Step]
    reservations: Reservations
    failed: bool  # a message raised: the actor reloads from storage before its next batch

    @property
    def writes(self) -> bool:
        return any(step.needs_commit for step in self.steps)


def stage(
    space_id: int,
    user_id: str,
    before: Snapshot,
    messages: list[Write],
    program: Program,
    hook: SpaceHook,
    reservations: Reservations,
    reversible: dict[str, StoredRedemption] | None = None,
) -> Staged:
    draft = Draft(
        space_id, user_id, before.version + 1, program, hook, before.traits(), before.state(),
        before.exists, reversible,
    )  # fmt: skip
    steps: list[Step] = []
    failed = False
    first_write: datetime | None = None
    last_write: datetime | None = None
    for position, message in enumerate(messages):
        held: list[str] = []
        refusal = _admit(draft, message, reservations, held)
        if refusal is None:
            try:
                answer = _STAGERS[type(message)](draft, message, position)
            except PerkamoError as exc:  # a business rule: nothing staged, the id not used
                refusal = exc.with_traceback(None)  # kept: no cycle through this frame
            except Exception:
                log.exception("staging a write failed; it alone is refused")
                refusal = PerkamoError(
                    Code.INTERNAL_ERROR, "Something went wrong on our side; retry shortly."
                )
                failed = True
        if refusal is not None:
            for meter in held:
                reservations.release(message.received_at, meter)
            steps.append(Step(refusal))
            continue
        steps.append(Step(answer, needs_commit=True))
        draft.exists = True
        first_write = first_write or message.received_at
        last_write = message.received_at
    snapshot, after = None, before
    if last_write is not None:
        assert first_write is not None
        traits, state = encode_json(draft.traits), encode_json(draft.state)
        snapshot = SnapshotWrite(space_id, user_id, traits, state, before.version, last_write)
        created = before.created_at or first_write
        after = Snapshot(traits, state, draft.version, created, last_write)
    unit = Unit(
        draft.events,
        snapshot,
        redemptions=draft.redemptions,
        usage=reservations.increments(),
        limits=reservations.limits(),
        outbox=draft.outbox,
        identifies=draft.identifies,
        adjustments=draft.adjustments,
        reversals=draft.reversals,
        audits=draft.audits,
    )
    return Staged(unit, after, steps, reservations, failed)


def _admit(
    draft: Draft, message: Write, reservations: Reservations, held: list[str]
) -> Answer | OverLimit | None:
    """The refusals that come before applying: an unknown profile, a usage limit. Meters
    reserved are listed in ``held`` (released if the message is refused after all)."""
    if isinstance(message, Redeem | Adjust | Reverse) and not draft.exists:
        return PerkamoError(Code.PROFILE_NOT_FOUND, f"No profile with user_id {draft.user_id!r}.")
    if isinstance(message, Adjust | Reverse):
        return None  # support operations count no meter but api_requests
    meters = [] if draft.exists else ["profiles"]
    meters.append("redemptions" if isinstance(message, Redeem) else "events")
    if isinstance(message, Identify):
        meters.remove("events")
    for meter in meters:
        if not reservations.reserve(message.received_at, meter, message.limits):
            for taken in held:
                reservations.release(message.received_at, taken)
            held.clear()
            return OverLimit(meter, message.received_at)
        held.append(meter)
    return None


def _stage_event(draft: Draft, message: Write, position: int) -> Answer:
    assert isinstance(message, Ingest)
    ev, program, hook = message.event, draft.program, draft.hook
    occurred = ev.occurred_at or message.received_at
    seen = EngineEvent(ev.event, ev.context, ev.occurred_at, draft.traits)
    level_before = level_number(draft.state, program) if hook.enabled else None
    state, outcome = apply(draft.state, seen, program, message.received_at)
    event_id = "evt_" + ids.token_hex(12)
    answer = _encoder.encode(event_answer(outcome, event_id, program.versions))
    row = EventRow(
        space_id=draft.space_id,
        transaction_id=ev.transaction_id,
        user_id=draft.user_id,
        event=ev.event,
        context=encode_json(ev.context),
        occurred_at=occurred,
        received_at=message.received_at,
        request_hash=event_hash(draft.user_id, ev),
        outcome=answer.decode(),
        profile_version=draft.version,
        position=position,
        event_id=event_id,
    )
    delivery = None
    if hook.enabled:
        delivery = event_delivery(
            hook, draft.space_id, event_id, draft.user_id, ev.transaction_id, ev.event,
            occurred, message.received_at, ev.context, outcome,
            level_before if outcome.leveled_up else None,
        )  # fmt: skip
    draft.events.append(row)
    if delivery is not None:
        draft.outbox.append(delivery)
    draft.state = state
    return msgspec.Raw(answer)  # sent as it is stored: encoded once


def _stage_redeem(draft: Draft, message: Write, position: int) -> Answer:
    """Raises RedemptionRefused for a business rule (nothing staged, the id not consumed)."""
    assert isinstance(message, Redeem)
    program = draft.program
    state, redemption = redeem(
        draft.state, message.reward_key, program, message.received_at, draft.traits
    )
    redemption_id = "rdm_" + ids.token_hex(12)
    answer = _encoder.encode(redeem_answer(redemption, redemption_id, program.versions))
    row = RedemptionRow(
        space_id=draft.space_id,
        transaction_id=message.transaction_id,
        user_id=draft.user_id,
        reward_key=message.reward_key,
        context=encode_json(message.context),
        received_at=message.received_at,
        request_hash=redemption_hash(draft.user_id, message),
        outcome=answer.decode(),
        profile_version=draft.version,
        position=position,
        redemption_id=redemption_id,
    )
    delivery = None
    if draft.hook.enabled:
        delivery = redemption_delivery(
            draft.hook, draft.space_id, draft.user_id, message.transaction_id, message.context,
            redemption, redemption_id, message.received_at,
        )  # fmt: skip
    draft.redemptions.append(row)
    if delivery is not None:
        draft.outbox.append(delivery)
    draft.state = state
    return msgspec.Raw(answer)


def _stage_identify(draft: Draft, message: Write, position: int) -> Answer:
    assert isinstance(message, Identify)
    traits = merge_traits(draft.traits, message.traits)
    state, _ = apply_identify(draft.state, traits, draft.program, message.received_at)
    row = IdentifyRow(
        draft.space_id,
        draft.user_id,
        encode_json(message.traits),
        message.received_at,
        encode_json(draft.program.versions),
        draft.version,
        position,
    )
    draft.identifies.append(row)
    answer = IdentifyResult(traits, created=not draft.exists)
    draft.traits, draft.state = traits, state
    return answer


_STAGERS: dict[type, Callable[[Draft, Write, int], Answer]] = {
    Ingest: _stage_event,
    Redeem: _stage_redeem,
    Identify: _stage_identify,
    Adjust: stage_adjust,
    Reverse: stage_reverse,
}
