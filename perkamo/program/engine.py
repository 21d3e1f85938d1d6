"""The pure evaluation engine: ``apply(state, event, program, received_at)``.

No I/O, no clock reads, no randomness: the same event on the same state with the same program
always gives the same outcome, so profile state can be rebuilt by replaying the event log.
Arithmetic runs in a fixed decimal context (34 digits, half-even), so replay is exact.
The input state is never mutated (unless the caller asks for it); a new state is returned.
Each step of docs/program.md, "Evaluating one event", lives in a module of its own (streaks,
rules, achievements, wallets, levels, perks); this one runs them in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import localcontext

from perkamo.program.achievements import achievements
from perkamo.program.amounts import wallet_state
from perkamo.program.evaluation import DECIMALS, EngineEvent, Evaluation, copy_state
from perkamo.program.levels import level_number, level_state
from perkamo.program.model import ProfileState, Program
from perkamo.program.outcome import Outcome, Settlement, Unlocked
from perkamo.program.perks import level_perks_boosts, unlock_and_grant
from perkamo.program.rules import apply_rule
from perkamo.program.settling import due_now, keeps_lots, settle
from perkamo.program.streaks import count, milestone_awards
from perkamo.program.wallets import apply_awards, award_entry

__all__ = ["EngineEvent", "apply", "apply_identify", "settle_at"]

# What a profile without lots settles: nothing. Shared, never changed (only ``settle``
# changes a Settlement, and it is never given this one).
NOTHING = Settlement()


def apply(
    state: ProfileState,
    event: EngineEvent,
    program: Program,
    received_at: datetime,
    *,
    summary: bool = False,
    in_place: bool = False,
) -> tuple[ProfileState, Outcome]:
    """Evaluate one event (docs/program.md, "Evaluating one event", steps 2–10). ``summary``
    leaves out the outcome's ``wallet_state`` and ``level`` (the state has them; a
    back-test replaying a million events does not need them). ``in_place`` changes and
    returns ``state`` itself instead of a copy: for a caller that owns the state and has no
    use for it should the evaluation raise (a back-test's replay)."""
    with localcontext(DECIMALS):
        run = Evaluation(
            state=state if in_place else copy_state(state),
            program=program,
            event=event.event,
            occurred=event.occurred_at or received_at,
            scope={"context": event.context, "traits": event.traits, "source": event.source},
            transaction_id=event.transaction_id,
        )
        level_before = level_number(run.state, program)
        lots = keeps_lots(run.state, program)  # else nothing is ever settled: no cost
        settled = settle(run.state, program, received_at, event.traits) if lots else NOTHING
        count(run)  # 2
        for rule in program.rules_for(run.event):  # 3
            apply_rule(run, rule)
        milestone_awards(run)  # 4
        achievements(run)  # 5
        delta, clamps, pending = apply_awards(run)  # 6
        if run.lots_made and due_now(run.state, program, received_at):  # backdated: due at once
            settle(run.state, program, received_at, event.traits, into=settled)
        level_after = level_perks_boosts(run)  # 7-9
        return run.state, Outcome(  # 10
            delta=delta,
            leveled_up=level_after > level_before,
            unlocked=settled.unlocked + run.unlocked if settled.unlocked else run.unlocked,
            wallet_state={} if summary else wallet_state(run.state, program),
            level=None if summary else level_state(run.state, program),
            skipped=run.skipped,
            breakdown=[award_entry(a, program) for a in run.awards] + clamps,
            pending=pending,
            settled=settled,
        )


def apply_identify(
    state: ProfileState, traits: Mapping[str, object], program: Program, received_at: datetime
) -> tuple[ProfileState, list[Unlocked], Settlement]:
    """What identify evaluates: the profile settled at the receive time, then perk triggers
    and the boosts they grant (steps 8–9), with the server's receive time as
    ``unlocked_at``. Returns (state, everything unlocked, what settling changed)."""
    with localcontext(DECIMALS):
        run = Evaluation(
            state=copy_state(state),
            program=program,
            event="",
            occurred=received_at,
            scope={"context": {}, "traits": traits},
        )
        settled = settle(run.state, program, received_at, traits)
        return run.state, settled.unlocked + unlock_and_grant(run), settled


def settle_at(
    state: ProfileState, program: Program, now: datetime, traits: Mapping[str, object]
) -> tuple[ProfileState, Settlement]:
    """The profile settled at ``now`` (a copy): what a tick writes, and what a read shows
    without writing it. The state is returned as it is when there is nothing to settle."""
    if not keeps_lots(state, program):
        return state, Settlement()
    with localcontext(DECIMALS):
        settled_state = copy_state(state)
        return settled_state, settle(settled_state, program, now, traits)
