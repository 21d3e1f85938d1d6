"""Staging the support operations (API.md §8): an adjustment or a reversal joins the unit
like an event — its log row, its webhook delivery, the state it leaves — and is answered
only once the unit commits."""

from __future__ import annotations

import msgspec

from perkamo import ids
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import (
    AdjustResponse,
    ReversedRedemption,
    ReverseResponse,
    level_progress,
    stored_redeem_answer,
)
from perkamo.profiles.draft import Draft, encode_json
from perkamo.profiles.idempotency import adjustment_hash
from perkamo.profiles.messages import Adjust, Answer, Reverse, Write
from perkamo.program.support import RedemptionRecord, adjust, reverse
from perkamo.program.timefmt import format_rfc3339
from perkamo.webhooks import support_delivery
from storage import AdjustmentRow, AuditRow, ReversalRow

_encoder = msgspec.json.Encoder(decimal_format="number")


def stage_adjust(draft: Draft, message: Write, position: int) -> Answer:
    """Raises PerkamoError for a refusal (nothing staged, the id not used)."""
    assert isinstance(message, Adjust)
    program = draft.program
    state, change = adjust(
        draft.state, message.wallet, message.amount, message.counts_toward_level, program,
        message.received_at, draft.traits,
    )  # fmt: skip
    adjustment_id = "adj_" + ids.token_hex(12)
    answer = _encoder.encode(
        AdjustResponse(
            adjusted=True,
            duplicate=False,
            adjustment_id=adjustment_id,
            delta=change.delta,
            unlocked=change.unlocked,
            leveled_up=change.leveled_up,
            wallet_state=change.wallet_state,
            level=level_progress(change.level),
        )
    )
    draft.adjustments.append(
        AdjustmentRow(
            space_id=draft.space_id,
            transaction_id=message.transaction_id,
            adjustment_id=adjustment_id,
            user_id=draft.user_id,
            wallet=message.wallet,
            amount=str(change.delta[0].amount),
            counts_toward_level=message.counts_toward_level,
            reason=message.reason,
            actor=message.actor,
            received_at=message.received_at,
            request_hash=adjustment_hash(draft.user_id, message),
            outcome=answer.decode(),
            program_versions=encode_json(program.versions),
            profile_version=draft.version,
            position=position,
        )
    )
    if draft.hook.enabled:
        data = {
            "adjustment_id": adjustment_id,
            "wallet": message.wallet,
            "amount": change.delta[0].amount,
            "counts_toward_level": message.counts_toward_level,
            "reason": message.reason,
            "actor": message.actor,
        }
        draft.outbox.append(
            support_delivery(
                draft.hook,
                draft.space_id,
                "adjustment.created",
                adjustment_id,
                draft.user_id,
                message.transaction_id,
                message.received_at,
                change,
                data,
            )  # fmt: skip
        )
    if message.audit is not None:
        details = {"user_id": draft.user_id, "wallet": message.wallet,
                   "amount": change.delta[0].amount, "adjustment_id": adjustment_id}  # fmt: skip
        draft.audits.append(AuditRow(message.audit, "customer.adjust", draft.space_id,
            message.transaction_id, message.reason, encode_json(details),
            message.received_at))  # fmt: skip
    draft.state = state
    return msgspec.Raw(answer)


def stage_reverse(draft: Draft, message: Write, position: int) -> Answer:
    """Raises PerkamoError for a refusal: no such redemption of this profile, or one
    already reversed (then answered as the duplicate of its reversal)."""
    assert isinstance(message, Reverse)
    stored = (draft.reversible or {}).get(message.transaction_id)
    if stored is None or stored.user_id != draft.user_id:
        raise PerkamoError(
            Code.REDEMPTION_NOT_FOUND,
            f"No redemption with transaction_id {message.transaction_id!r}.",
        )
    if stored.reversed_at is not None:
        raise AlreadyReversed(Code.IDEMPOTENCY_CONFLICT, "This redemption is already reversed.")
    original = stored_redeem_answer(stored.outcome)
    record = RedemptionRecord(
        original.reward.key, original.cost, original.effect, stored.received_at
    )
    state, change = reverse(draft.state, record, draft.program, message.received_at, draft.traits)
    redemption = ReversedRedemption(
        transaction_id=stored.transaction_id,
        reward_key=original.reward.key,
        redeemed_at=format_rfc3339(stored.received_at),
        cost=original.cost,
        effect=original.effect,
        status="reversed",
        reversed_at=format_rfc3339(message.received_at),
        reason=message.reason,
        actor=message.actor,
    )
    answer = _encoder.encode(
        ReverseResponse(
            reversed=True,
            duplicate=False,
            delta=change.delta,
            wallet_state=change.wallet_state,
            level=level_progress(change.level),
            redemption=redemption,
        )
    )
    draft.reversals.append(
        ReversalRow(
            space_id=draft.space_id,
            transaction_id=message.transaction_id,
            user_id=draft.user_id,
            reason=message.reason,
            actor=message.actor,
            received_at=message.received_at,
            outcome=answer.decode(),
            program_versions=encode_json(draft.program.versions),
            profile_version=draft.version,
            position=position,
        )
    )
    if draft.hook.enabled:
        draft.outbox.append(
            support_delivery(
                draft.hook,
                draft.space_id,
                "redemption.reversed",
                "rev_" + ids.token_hex(12),
                draft.user_id,
                message.transaction_id,
                message.received_at,
                change,
                {"redemption": redemption},
            )  # fmt: skip
        )
    if message.audit is not None:
        details = {"user_id": draft.user_id, "refund": change.delta[0]}
        draft.audits.append(AuditRow(message.audit, "customer.reverse", draft.space_id,
            message.transaction_id, message.reason, encode_json(details),
            message.received_at))  # fmt: skip
    draft.state = state
    return msgspec.Raw(answer)


class AlreadyReversed(PerkamoError):
    """Answered as the duplicate of the stored reversal (the actor looks it up)."""
