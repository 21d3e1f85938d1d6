"""The scratch space of one evaluation, and the decimal context every step computes in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

import msgspec

from perkamo.program.json_walk import JsonObject
from perkamo.program.model import ProfileState, Program
from perkamo.program.outcome import Skipped, Unlocked

DECIMALS = Context(
    prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
PER_DAY_KEPT = 8

_state_encoder = msgspec.json.Encoder(decimal_format="number")
_state_decoder = msgspec.json.Decoder(ProfileState, float_hook=Decimal)


class EngineEvent(msgspec.Struct, frozen=True):
    """The event as the engine sees it: ``traits`` are the profile's at that moment.
    (Structs, not dataclasses, here: a replay builds millions, and a Struct is built in C.)"""

    event: str
    context: Mapping[str, object]
    occurred_at: datetime | None
    traits: Mapping[str, object]
    source: str = "server"  # "client": a browser sent it; a rule's condition may test it
    transaction_id: str = ""  # the ``source`` of the lots its awards create


class Award(msgspec.Struct):
    source: str  # rule | streak_milestone | achievement
    key: str
    wallet: str
    amount: Decimal
    factor: Decimal
    boosts: list[str]


class Evaluation(msgspec.Struct, kw_only=True):
    """What one evaluation has found so far; ``state`` is its own copy, changed in place."""

    state: ProfileState
    program: Program
    event: str
    occurred: datetime
    scope: JsonObject
    transaction_id: str = ""
    lots_made: bool = False  # a lot was made (it may be due at once: backdated)
    awards: list[Award] = msgspec.field(default_factory=list)
    skipped: list[Skipped] = msgspec.field(default_factory=list)
    unlocked: list[Unlocked] = msgspec.field(default_factory=list)
    milestones: set[tuple[str, int]] = msgspec.field(default_factory=set)
    nets: dict[str, Decimal] = msgspec.field(default_factory=dict)  # per wallet, awards so far
    new_perks: set[str] = msgspec.field(default_factory=set)
    new_levels: set[int] = msgspec.field(default_factory=set)


def copy_state(state: ProfileState) -> ProfileState:
    """A copy the engine may change. Lots (and what redemptions took from them) are
    immutable values: the copy shares them and copies only the lists that hold them — they
    are most of a large profile's state, and this runs for every write."""
    for w in state.wallets.values():
        if w.lotted:
            break
    else:
        if not state.takes:  # no lots: the plain copy (every write of most profiles)
            return _state_decoder.decode(_state_encoder.encode(state))
    held = [(key, w.lots, w.expiries) for key, w in state.wallets.items() if w.lotted]
    takes = state.takes
    try:
        for key, _, _ in held:
            state.wallets[key].lots, state.wallets[key].expiries = [], []
        state.takes = {}
        copied = _state_decoder.decode(_state_encoder.encode(state))
    finally:
        for key, lots, expiries in held:
            state.wallets[key].lots, state.wallets[key].expiries = lots, expiries
        state.takes = takes
    for key, lots, expiries in held:
        copied.wallets[key].lots, copied.wallets[key].expiries = list(lots), list(expiries)
    copied.takes = dict(takes)
    return copied
