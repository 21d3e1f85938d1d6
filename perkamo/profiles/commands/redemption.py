"""``POST /v1/rewards/redeem``: a reward's cost taken from its wallet, logged with its answer
(namespace ``redemption``). A refused redemption stages nothing and does not use its id."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from perkamo import ids
from perkamo.errors import PerkamoError
from perkamo.profiles.answers import RedeemResponse, imported_redeem_answer, redeem_answer
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
from perkamo.profiles.history import redemption_entry
from perkamo.program import ProfileState, Program
from perkamo.program.canonical import FORM, request_hash
from perkamo.program.json_walk import JsonObject
from perkamo.program.rewards import redeem
from perkamo.webhooks import redemption_delivery
from storage import RedemptionRow
from storage.history import HistoryRow, StoredWrite

_encoder = msgspec.json.Encoder(decimal_format="number")


class Redeem(Command[Written], tag="redemption", frozen=True, kw_only=True):
    change: ClassVar[str | None] = "reward.redeemed"
    namespace: ClassVar[str | None] = "redemption"
    meter: ClassVar[str | None] = "redemptions"
    needs_profile: ClassVar[bool] = True
    answer_type: ClassVar[object] = Written

    transaction_id: str
    reward_key: str
    context: JsonObject

    def request_hash(self, user_id: str, form: int = FORM) -> bytes:
        return request_hash(user_id, self.reward_key, self.context, form=form)

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises RedemptionRefused for a business rule (nothing staged, the id not used)."""
        program = draft.program
        state, redemption = redeem(
            draft.state, self.reward_key, program, self.received_at, draft.traits,
            self.transaction_id,
        )  # fmt: skip
        redemption_id = "rdm_" + ids.token_hex(12)
        answer = _encoder.encode(redeem_answer(redemption, redemption_id, program))
        outcome = answer.decode()
        draft.add("redemptions", RedemptionRow(
            space_id=draft.space_id, transaction_id=self.transaction_id,
            user_id=draft.user_id, reward_key=self.reward_key,
            context=encode_json(self.context), received_at=self.received_at,
            request_hash=self.request_hash(draft.user_id), outcome=outcome,
            profile_version=draft.version, position=position, redemption_id=redemption_id,
        ))  # fmt: skip
        if draft.hook.enabled:
            draft.outbox.append(redemption_delivery(
                draft.hook, draft.space_id, draft.user_id, self.transaction_id, self.context,
                redemption, redemption_id, self.received_at,
            ))  # fmt: skip
            announce_settled(draft, redemption.settled, redemption.wallet_state,
                             redemption.level, self.received_at, self.transaction_id)  # fmt: skip
        entry = redemption_entry(self.reward_key, self.transaction_id, self.received_at, outcome)
        draft.recent.append(("redemptions", entry))
        draft.state = state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        mine = self.request_hash(user_id, original.hash_form)
        if original.request_hash == mine and original.user_id == user_id:
            return duplicate(original.outcome, RedeemResponse)
        return conflict(original, "redemption")

    def imported(
        self, user_id: str, known: StoredWrite, state: ProfileState, program: Program
    ) -> Written | PerkamoError:
        """Like the duplicate of a successful redemption, charging nothing."""
        if known.user_id and known.user_id != user_id:
            return conflict(known, "redemption")
        assert known.imported is not None
        answer = imported_redeem_answer(known.imported, self.reward_key, state, program)
        return Written(msgspec.Raw(_encoder.encode(answer)), duplicate=True)

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        try:
            run.state, redemption = redeem(
                run.state, row.name, run.program, row.received_at, run.traits,
                row.transaction_id,
            )  # fmt: skip
        except PerkamoError:
            run.refused.add(row.transaction_id)
            raise
        return Replayed(unlocked=redemption.unlocked, settled=redemption.settled)
