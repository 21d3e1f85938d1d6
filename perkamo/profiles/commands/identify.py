"""``POST /v1/identify``: traits merged into the profile (a null removes one), the profile
created if absent. Last write wins: identifies have no transaction id."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from perkamo.profiles.answers import settled_answer
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    announce_settled,
    encode_json,
)
from perkamo.program import apply_identify, merge_traits
from perkamo.program.amounts import wallet_state
from perkamo.program.json_walk import JsonObject
from perkamo.program.levels import level_state
from storage import IdentifyRow
from storage.history import HistoryRow


class IdentifyResult(msgspec.Struct, frozen=True):
    traits: JsonObject
    created: bool


class Identify(Command[IdentifyResult], tag="identify", frozen=True, kw_only=True):
    change: ClassVar[str | None] = "profile.identified"
    answer_type: ClassVar[object] = IdentifyResult

    traits: JsonObject

    def stage(self, draft: Draft, position: int) -> IdentifyResult:
        traits = merge_traits(draft.traits, self.traits)
        program = draft.program
        state, _, settled = apply_identify(draft.state, traits, program, self.received_at)
        # What settling changed is kept with the row (the ledger sums it).
        outcome = None
        if not settled.empty:
            outcome = encode_json({"settled": settled_answer(settled, program)})
            announce_settled(draft, settled, wallet_state(state, program),
                             level_state(state, program), self.received_at, None)  # fmt: skip
        draft.add("identifies", IdentifyRow(
            draft.space_id, draft.user_id, encode_json(self.traits), self.received_at,
            encode_json(program.versions), draft.version, position, outcome,
        ))  # fmt: skip
        answer = IdentifyResult(traits, created=not draft.exists)
        draft.traits, draft.state = traits, state
        return answer

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        run.traits = merge_traits(run.traits, row.payload or {})
        run.state, unlocked, settled = apply_identify(
            run.state, run.traits, run.program, row.received_at
        )
        return Replayed(unlocked=unlocked, settled=settled)
