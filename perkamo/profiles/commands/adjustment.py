"""``POST /v1/admin/adjustments`` (API §8): a support agent adds to or subtracts from a
balance with a reason; logged with its answer (namespace ``adjustment``)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import msgspec

from perkamo import ids
from perkamo.errors import PerkamoError
from perkamo.profiles.answers import AdjustResponse, level_progress, settled_answer
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
from perkamo.profiles.commands.opening import OpenBalance
from perkamo.profiles.history import adjustment_entry
from perkamo.program.adjustments import adjust
from perkamo.program.canonical import FORM, request_hash
from perkamo.program.timefmt import format_rfc3339
from perkamo.webhooks import support_delivery
from storage import AdjustmentRow
from storage.history import HistoryRow, StoredWrite

_encoder = msgspec.json.Encoder(decimal_format="number")


class Adjust(Command[Written], tag="adjustment", frozen=True, kw_only=True):
    change: ClassVar[str | None] = "adjustment.created"
    namespace: ClassVar[str | None] = "adjustment"
    needs_profile: ClassVar[bool] = True
    answer_type: ClassVar[object] = Written

    transaction_id: str
    wallet: str
    amount: Decimal
    counts_toward_level: bool
    reason: str
    actor: str | None
    audit: str | None = None  # an operator: the audit log records it in the same commit

    def request_hash(self, user_id: str, form: int = FORM) -> bytes:
        """An adjustment's identity: user, wallet, amount and whether it counts toward the
        level. The reason and the actor are annotations (a retry with another reason is
        the same adjustment)."""
        payload = {"amount": self.amount, "counts_toward_level": self.counts_toward_level}
        return request_hash(user_id, "adjustment:" + self.wallet, payload, form=form)

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises PerkamoError for a refusal (nothing staged, the id not used)."""
        state, change = adjust(
            draft.state, self.wallet, self.amount, self.counts_toward_level, draft.program,
            self.received_at, draft.traits, "adjustment:" + self.transaction_id,
        )  # fmt: skip
        adjustment_id = "adj_" + ids.token_hex(12)
        amount = change.delta[0].amount
        answer = _encoder.encode(AdjustResponse(
            adjusted=True, duplicate=False, adjustment_id=adjustment_id, delta=change.delta,
            unlocked=change.unlocked, leveled_up=change.leveled_up,
            wallet_state=change.wallet_state, level=level_progress(change.level),
            settled=settled_answer(change.settled, draft.program),
        ))  # fmt: skip
        draft.add("adjustments", AdjustmentRow(
            space_id=draft.space_id, transaction_id=self.transaction_id,
            adjustment_id=adjustment_id, user_id=draft.user_id, wallet=self.wallet,
            amount=str(amount), counts_toward_level=self.counts_toward_level,
            reason=self.reason, actor=self.actor, received_at=self.received_at,
            request_hash=self.request_hash(draft.user_id), outcome=answer.decode(),
            program_versions=encode_json(draft.program.versions),
            profile_version=draft.version, position=position,
        ))  # fmt: skip
        if draft.hook.enabled:
            data = {"adjustment_id": adjustment_id, "wallet": self.wallet, "amount": amount,
                    "counts_toward_level": self.counts_toward_level, "reason": self.reason,
                    "actor": self.actor,
                    "created_at": format_rfc3339(self.received_at)}  # fmt: skip
            draft.outbox.append(support_delivery(
                draft.hook, draft.space_id, "adjustment.created", adjustment_id,
                draft.user_id, self.transaction_id, self.received_at, change, data,
            ))  # fmt: skip
            announce_settled(draft, change.settled, change.wallet_state, change.level,
                             self.received_at, self.transaction_id)  # fmt: skip
        draft.audit(self.audit, "customer.adjust", self.transaction_id, self.reason,
                    {"user_id": draft.user_id, "wallet": self.wallet, "amount": amount,
                     "adjustment_id": adjustment_id}, self.received_at)  # fmt: skip
        draft.recent.append(("adjustments", adjustment_entry(
            adjustment_id, self.transaction_id, self.wallet, amount, self.reason, self.actor,
            self.received_at,
        )))  # fmt: skip
        draft.state = state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        mine = self.request_hash(user_id, original.hash_form)
        if original.request_hash == mine and original.user_id == user_id:
            return duplicate(original.outcome, AdjustResponse)
        return conflict(original, "adjustment")

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        if row.payload.get("traits") is not None:  # an opening balance (import-balances)
            return OpenBalance.replay(row, run)
        amount, counts = Decimal(row.payload["amount"]), bool(row.payload["counts_toward_level"])
        run.state, change = adjust(
            run.state, row.name, amount, counts, run.program, row.received_at, run.traits,
            "adjustment:" + row.transaction_id,
        )  # fmt: skip
        return Replayed(unlocked=change.unlocked, settled=change.settled)
