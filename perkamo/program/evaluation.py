"""The scratch space of one evaluation, and the decimal context every step computes in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any

import msgspec

from perkamo.program.model import ProfileState, Program
from perkamo.program.outcome import Skipped, Unlocked

DECIMALS = Context(
    prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
PER_DAY_KEPT = 8

_state_encoder = msgspec.json.Encoder(decimal_format="number")
_state_decoder = msgspec.json.Decoder(ProfileState)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """The event as the engine sees it: ``traits`` are the profile's at that moment."""

    event: str
    context: Mapping[str, Any]
    occurred_at: datetime | None
    traits: Mapping[str, Any]


@dataclass(slots=True)
class Award:
    source: str  # rule | streak_milestone | achievement
    key: str
    wallet: str
    amount: Decimal
    factor: Decimal
    boosts: list[str]


@dataclass(slots=True)
class Evaluation:
    """What one evaluation has found so far; ``state`` is its own copy, changed in place."""

    state: ProfileState
    program: Program
    event: str
    occurred: datetime
    scope: dict[str, Any]
    awards: list[Award] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unlocked: list[Unlocked] = field(default_factory=list)
    milestones: set[tuple[str, int]] = field(default_factory=set)
    nets: dict[str, Decimal] = field(default_factory=dict)  # per wallet, awards so far
    new_perks: set[str] = field(default_factory=set)
    new_levels: set[int] = field(default_factory=set)


def copy_state(state: ProfileState) -> ProfileState:
    return _state_decoder.decode(_state_encoder.encode(state))
