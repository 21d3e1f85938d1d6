"""The pure evaluation engine: ``apply(state, event, program, received_at)``.

No I/O, no clock reads, no randomness: the same event on the same state with the same program
always gives the same outcome, so profile state can be rebuilt by replaying the event log.
"""

from __future__ import annotations

from datetime import datetime

from ..wire import EventInput
from .model import Outcome, ProfileState, Program


def apply(
    state: ProfileState, event: EventInput, program: Program, received_at: datetime
) -> tuple[ProfileState, Outcome]:
    """Evaluate ``event`` against ``program``. Only the empty program is evaluated so far:
    the earning modules (PROGRAM.md) fill this in; an event that matches no rule is still
    recorded, with an empty delta."""
    wallet_state = {
        key: state.wallets[key].balance if key in state.wallets else 0 for key in program.wallets
    }
    outcome = Outcome(
        delta=[],
        leveled_up=False,
        unlocked=[],
        wallet_state=wallet_state,
        level=None,
    )
    return state, outcome
