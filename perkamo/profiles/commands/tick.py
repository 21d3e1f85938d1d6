"""A tick of the sweeper (docs/program.md "Time moves state"): the profile settled at the tick's
receive time with no other write — pending lots released, lots expired, levels and perks
re-checked. Ordered in the actor and committed like any write, replayed at its receive
time, and idempotent by its due time (namespace ``tick``: one per profile and due time). A
tick that finds nothing due writes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from perkamo.errors import PerkamoError
from perkamo.profiles.answers import TickAnswer, level_progress, settled_answer
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    Unchanged,
    Written,
    announce_settled,
    conflict,
    duplicate,
    encode_json,
)
from perkamo.program import settle_at
from perkamo.program.amounts import wallet_state
from perkamo.program.levels import level_state
from perkamo.program.settling import next_due
from perkamo.program.timefmt import format_rfc3339
from storage.history import HistoryRow, StoredWrite
from storage.log_rows import TickRow

_encoder = msgspec.json.Encoder(decimal_format="number")


def tick_id(user_id: str, due_at: datetime) -> str:
    """A tick's transaction id: its due time and its profile (unique in the Space)."""
    return f"{format_rfc3339(due_at)} {user_id}"


class Tick(Command[Written], tag="tick", frozen=True, kw_only=True):
    namespace: ClassVar[str | None] = "tick"
    needs_profile: ClassVar[bool] = True
    activity: ClassVar[bool] = False
    answer_type: ClassVar[object] = Written
    change: ClassVar[str | None] = "points.settled"  # a live stream's name for it

    transaction_id: str  # tick_id(user, due_at)
    due_at: datetime  # the due time the sweeper found

    def stage(self, draft: Draft, position: int) -> Written:
        """Raises Unchanged when nothing is due (answered, nothing written)."""
        program = draft.program
        state, settled = settle_at(draft.state, program, self.received_at, draft.traits)
        wallets, level = wallet_state(state, program), level_state(state, program)
        answer = _encoder.encode(TickAnswer(
            ticked=settled.changed, duplicate=False, due_at=format_rfc3339(self.due_at),
            settled=settled_answer(settled, program), wallet_state=wallets,
            level=level_progress(level),
        ))  # fmt: skip
        # Nothing due: nothing to write — unless the due time the sweeper found is stale (the
        # program changed since the write that recorded it; a write after it would have
        # moved it), which is corrected once rather than ticked at every sweep.
        before = draft.state.settled_at
        stale = (before is None or before < self.due_at) and next_due(state, program) != self.due_at
        if not settled.changed and not stale:
            raise Unchanged(Written(msgspec.Raw(answer)))
        draft.add("ticks", TickRow(
            space_id=draft.space_id, transaction_id=self.transaction_id, user_id=draft.user_id,
            due_at=self.due_at, received_at=self.received_at, outcome=answer.decode(),
            program_versions=encode_json(program.versions), profile_version=draft.version,
            position=position,
        ))  # fmt: skip
        announce_settled(draft, settled, wallets, level, self.received_at, self.transaction_id)
        draft.state = state
        return Written(msgspec.Raw(answer))

    def judge(self, user_id: str, original: StoredWrite) -> Written | PerkamoError:
        """The same due time of the same profile: the tick that settled it."""
        if original.user_id == user_id:
            return duplicate(original.outcome, TickAnswer)
        return conflict(original, "tick")

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        run.state, settled = settle_at(run.state, run.program, row.received_at, run.traits)
        return Replayed(unlocked=settled.unlocked, settled=settled)
