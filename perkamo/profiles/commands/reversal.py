"""``POST /v1/admin/redemptions/{transaction_id}/reverse`` (API §8): a refunded order's
redemption undone — its cost given back, its per-day slot freed, a boost it granted ended.
Logged under the redemption's transaction id (namespace ``reversal``): one reversal per
redemption, whatever the reason of a repeat."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import msgspec

from perkamo import ids
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.answers import (
    ReversedRedemption,
    ReverseResponse,
    level_progress,
    settled_answer,
    stored_redeem_answer,
)
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    Written,
    announce_settled,
    encode_json,
)
from perkamo.program.adjustments import RedemptionRecord, reverse
from perkamo.program.outcome import Delta
from perkamo.program.timefmt import format_rfc3339, parse_rfc3339
from perkamo.webhooks import support_delivery
from storage import ReversalRow
from storage.history import HistoryRow, StoredWrite

_encoder = msgspec.json.Encoder(decimal_format="number")


class AlreadyReversed(PerkamoError):
    """Answered as the duplicate of the stored reversal (the actor looks it up)."""


class Reverse(Command[Written], tag="reversal", frozen=True, kw_only=True):
    change: ClassVar[str | None] = "redemption.reversed"
    namespace: ClassVar[str | None] = "reversal"
    needs_profile: ClassVar[bool] = True
    lookup: ClassVar[str | None] = "redemption"
    answer_type: ClassVar[object] = Written

    transaction_id: str  # the redemption's
    reason: str
    actor: str | None
    audit: str | None = None  # an operator: the audit log records it in the same commit

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises PerkamoError for a refusal: no such redemption of this profile, or one
        already reversed (then answered as the duplicate of its reversal)."""
        stored = draft.found.get(("redemption", self.transaction_id))
        if stored is None or stored.imported is not None or stored.user_id != draft.user_id:
            raise PerkamoError(
                Code.REDEMPTION_NOT_FOUND,
                f"No redemption with transaction_id {self.transaction_id!r}.",
            )
        if stored.reversed_at is not None:
            raise AlreadyReversed(Code.IDEMPOTENCY_CONFLICT, "This redemption is already reversed.")
        original = stored_redeem_answer(stored.outcome)
        record = RedemptionRecord(
            original.reward.key, original.cost, original.effect, stored.received_at,
            stored.transaction_id,
        )  # fmt: skip
        state, change = reverse(draft.state, record, draft.program, self.received_at, draft.traits)
        redemption = ReversedRedemption(
            transaction_id=stored.transaction_id, reward_key=original.reward.key,
            redeemed_at=format_rfc3339(stored.received_at), cost=original.cost,
            effect=original.effect, status="reversed",
            reversed_at=format_rfc3339(self.received_at), reason=self.reason, actor=self.actor,
        )  # fmt: skip
        answer = _encoder.encode(ReverseResponse(
            reversed=True, duplicate=False, delta=change.delta,
            wallet_state=change.wallet_state, level=level_progress(change.level),
            redemption=redemption, settled=settled_answer(change.settled, draft.program),
        ))  # fmt: skip
        draft.add("reversals", ReversalRow(
            space_id=draft.space_id, transaction_id=self.transaction_id, user_id=draft.user_id,
            reason=self.reason, actor=self.actor, received_at=self.received_at,
            outcome=answer.decode(), program_versions=encode_json(draft.program.versions),
            profile_version=draft.version, position=position,
        ))  # fmt: skip
        if draft.hook.enabled:
            draft.outbox.append(support_delivery(
                draft.hook, draft.space_id, "redemption.reversed", "rev_" + ids.token_hex(12),
                draft.user_id, self.transaction_id, self.received_at, change,
                {"redemption": redemption},
            ))  # fmt: skip
            announce_settled(draft, change.settled, change.wallet_state, change.level,
                             self.received_at, self.transaction_id)  # fmt: skip
        draft.audit(self.audit, "customer.reverse", self.transaction_id, self.reason,
                    {"user_id": draft.user_id, "refund": change.delta[0]},
                    self.received_at)  # fmt: skip
        draft.stale_recent = True  # the listed redemption is now reversed
        draft.state = state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        """One reversal per redemption, whatever the reason: a repeat is its duplicate."""
        again = msgspec.structs.replace(_reverse_decoder.decode(original.outcome), duplicate=True)
        return Written(msgspec.Raw(_encoder.encode(again)), duplicate=True)

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        if row.transaction_id in run.refused:
            return Replayed()  # the run never made that redemption: nothing to reverse
        run.state, change = reverse(
            run.state, record_of(row), run.program, row.received_at, run.traits
        )
        return Replayed(delta=change.delta, unlocked=change.unlocked, settled=change.settled)


_reverse_decoder = msgspec.json.Decoder(ReverseResponse, float_hook=Decimal)


def record_of(row: HistoryRow) -> RedemptionRecord:
    """What reversing needs of the redemption a history row reverses."""
    cost = row.payload["cost"]
    redeemed_at = row.payload["redeemed_at"]
    if isinstance(redeemed_at, str):
        redeemed_at = parse_rfc3339(redeemed_at)
    return RedemptionRecord(
        row.name, Delta(cost["wallet"], Decimal(cost["amount"])), row.payload.get("effect") or {},
        redeemed_at, row.transaction_id,
    )  # fmt: skip
