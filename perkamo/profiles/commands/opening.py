"""``perkamo import-balances`` (docs/operations.md): a customer's balance brought from
another system. An adjustment with the reason ``opening balance`` that may create the
profile, merges the row's traits and adds ``earned`` to the level basis (never sets it),
logged in the adjustments table under the adjustment namespace — the row's transaction id is
``opening:<wallet>:<sha256(user_id)>``, so a file run again applies nothing twice and the
same customer and wallet with another amount is a conflict. Replayed as an adjustment (its
``traits``, never NULL for an opening, say which kind it is)."""

from __future__ import annotations

from datetime import datetime
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
    conflict,
    duplicate,
    encode_json,
)
from perkamo.profiles.history import adjustment_entry
from perkamo.program import merge_traits
from perkamo.program.adjustments import open_balance
from perkamo.program.amounts import number
from perkamo.program.canonical import FORM, request_hash
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import format_rfc3339
from perkamo.webhooks import support_delivery
from storage import AdjustmentRow
from storage.history import HistoryRow, StoredWrite

OPENING_REASON = "opening balance"
_encoder = msgspec.json.Encoder(decimal_format="number")


class OpenBalance(Command[Written], tag="opening", frozen=True, kw_only=True):
    namespace: ClassVar[str | None] = "adjustment"
    answer_type: ClassVar[object] = Written

    transaction_id: str
    wallet: str
    amount: Decimal  # 0: the balance does not move (only ``earned`` and the traits)
    earned: Decimal | None = None  # added to the earned total; None: ``amount`` is
    traits: JsonObject = {}
    actor: str | None = None
    earned_at: datetime | None = None  # the opening lot's dates, for a wallet with lots
    expires_at: datetime | None = None

    def request_hash(self, user_id: str, form: int = FORM) -> bytes:
        """An opening's identity: the customer, the wallet, the amount and the earned
        total's change (the traits are not compared, like an adjustment's reason)."""
        payload = {"amount": self.amount, "earned": self.earned}
        return request_hash(user_id, "opening:" + self.wallet, payload, form=form)

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises PerkamoError for a refusal (nothing staged, the id not used)."""
        traits = merge_traits(draft.traits, self.traits)
        state, change = open_balance(
            draft.state, self.wallet, self.amount, self.earned, draft.program,
            self.received_at, traits, (self.earned_at, self.expires_at),
        )  # fmt: skip
        adjustment_id = "adj_" + ids.token_hex(12)
        wallet = draft.program.wallet(self.wallet)
        amount = number(self.amount, wallet.precision if wallet else 0)
        answer = _encoder.encode(AdjustResponse(
            adjusted=True, duplicate=False, adjustment_id=adjustment_id, delta=change.delta,
            unlocked=change.unlocked, leveled_up=change.leveled_up,
            wallet_state=change.wallet_state, level=level_progress(change.level),
            settled=settled_answer(change.settled, draft.program),
        ))  # fmt: skip
        draft.add("adjustments", AdjustmentRow(
            space_id=draft.space_id, transaction_id=self.transaction_id,
            adjustment_id=adjustment_id, user_id=draft.user_id, wallet=self.wallet,
            amount=str(amount), counts_toward_level=self.earned is None,
            reason=OPENING_REASON, actor=self.actor, received_at=self.received_at,
            request_hash=self.request_hash(draft.user_id), outcome=answer.decode(),
            program_versions=encode_json(draft.program.versions),
            profile_version=draft.version, position=position,
            earned=None if self.earned is None else str(self.earned),
            traits=encode_json(self.traits), earned_at=self.earned_at,
            expires_at=self.expires_at,
        ))  # fmt: skip
        if draft.hook.enabled:  # like any adjustment
            data = {"adjustment_id": adjustment_id, "wallet": self.wallet, "amount": amount,
                    "counts_toward_level": self.earned is None, "reason": OPENING_REASON,
                    "actor": self.actor,
                    "created_at": format_rfc3339(self.received_at)}  # fmt: skip
            draft.outbox.append(support_delivery(
                draft.hook, draft.space_id, "adjustment.created", adjustment_id,
                draft.user_id, self.transaction_id, self.received_at, change, data,
            ))  # fmt: skip
        draft.recent.append(("adjustments", adjustment_entry(
            adjustment_id, self.transaction_id, self.wallet, amount, OPENING_REASON,
            self.actor, self.received_at,
        )))  # fmt: skip
        draft.traits, draft.state = traits, state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        mine = self.request_hash(user_id, original.hash_form)
        if original.request_hash == mine and original.user_id == user_id:
            return duplicate(original.outcome, AdjustResponse)
        return conflict(original, "opening balance")

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        """An adjustments row whose ``traits`` is not NULL (Adjust.replay hands it here)."""
        payload = row.payload
        run.traits = merge_traits(run.traits, payload["traits"])
        earned = payload.get("earned")
        dates = (_instant(payload.get("earned_at")), _instant(payload.get("expires_at")))
        run.state, change = open_balance(
            run.state, row.name, Decimal(payload["amount"]),
            None if earned is None else Decimal(earned), run.program, row.received_at,
            run.traits, dates,
        )  # fmt: skip
        return Replayed(unlocked=change.unlocked, settled=change.settled)


def _instant(value: object) -> datetime | None:
    """A date the history's JSON carries (PostgreSQL's timestamptz text), or None."""
    return None if value is None else datetime.fromisoformat(str(value))
