"""What evaluating one event (or a redemption) changed, as the engine's own typed values.

These are the engine's shapes, in its own names; the profile layer turns them into the
answers of the API (``perkamo/profiles/answers.py``), where the wire's names differ
(``nextLevelAt``). Amounts are decimals already at the wallet's precision.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from perkamo.program.json_walk import JsonObject


class Delta(msgspec.Struct, forbid_unknown_fields=True):
    # A wallet's net change. (Shapes the API documents carry no docstring: msgspec would
    # publish it as the schema's description.)
    wallet: str
    amount: Decimal


class Unlocked(msgspec.Struct, forbid_unknown_fields=True):
    # ``perk``, ``achievement``, ``streak_milestone`` (key ``<streak>:<length>``), ``boost``
    type: str
    key: str
    name: str


class LevelState(msgspec.Struct):
    wallet: str
    level: int
    current: Decimal
    next_level_at: Decimal | None  # None at the top level
    current_level_at: Decimal
    progress: Decimal


class Skipped(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    # A rule (or award) that matched but gave nothing, and why: ``per_user_limit``,
    # ``per_day_limit``, ``cooldown``, ``too_old``, ``formula_input``, ``amount_out_of_range``.

    rule: str
    wallet: str | msgspec.UnsetType = msgspec.UNSET
    reason: str


class BoostApplied(msgspec.Struct, forbid_unknown_fields=True):
    factor: Decimal
    boosts: list[str]
    program_version: str | None


class BreakdownEntry(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    # One award (``source`` rule, streak_milestone or achievement, with the program version
    # and boost behind it) or one clamp (``type: clamp``: a negative net change that a
    # wallet not allowing negatives could not take whole).

    type: str | msgspec.UnsetType = msgspec.UNSET
    source: str | msgspec.UnsetType = msgspec.UNSET
    key: str | msgspec.UnsetType = msgspec.UNSET
    wallet: str
    amount: Decimal | msgspec.UnsetType = msgspec.UNSET
    requested: Decimal | msgspec.UnsetType = msgspec.UNSET
    applied: Decimal | msgspec.UnsetType = msgspec.UNSET
    program_version: str | None | msgspec.UnsetType = msgspec.UNSET
    boost: BoostApplied | msgspec.UnsetType = msgspec.UNSET


class SettledLot(msgspec.Struct):
    """One lot released or expired by settling (what the webhooks list)."""

    kind: str  # released | expired
    wallet: str
    earned_at: datetime
    expires_at: datetime | None
    amount: Decimal


class Settlement(msgspec.Struct):
    """What settling a profile at a write's *now* changed (docs/architecture.md "Time: lots and the
    sweeper"): released and expired amounts per wallet (raw decimals; ``settled`` of an answer has
    them at the wallet's precision), the lots, and the level changes and unlocks settling caused.
    ``changed``: the state changed (a lot due, or a wallet's settings turned its balance into a lot
    or its lots into balance)."""

    released: dict[str, Decimal] = {}
    expired: dict[str, Decimal] = {}
    lots: list[SettledLot] = []
    leveled_up: bool = False
    level_from: int | None = None  # the level before, when settling changed it
    unlocked: list[Unlocked] = []
    changed: bool = False

    def add(
        self,
        kind: str,
        wallet: str,
        lot_earned_at: datetime,
        lot_expires_at: datetime | None,
        amount: Decimal,
    ) -> None:
        totals = self.released if kind == "released" else self.expired
        totals[wallet] = totals.get(wallet, Decimal(0)) + amount
        self.lots.append(SettledLot(kind, wallet, lot_earned_at, lot_expires_at, amount))
        self.changed = True

    @property
    def empty(self) -> bool:
        return not self.released and not self.expired and not self.unlocked and not self.leveled_up


class Outcome(msgspec.Struct):
    """One event: docs/program.md, "Evaluating one event", step 10. ``leveled_up`` and
    ``unlocked`` include what settling caused; ``pending``: what went into pending lots."""

    delta: list[Delta]
    leveled_up: bool
    unlocked: list[Unlocked]
    wallet_state: dict[str, Decimal]
    level: LevelState | None
    skipped: list[Skipped]
    breakdown: list[BreakdownEntry]
    pending: list[Delta]
    settled: Settlement


class Redemption(msgspec.Struct):
    """One redemption: the reward, its cost, and what spending it changed."""

    reward_key: str
    reward_name: str
    cost: Delta
    effect: JsonObject
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelState | None
    settled: Settlement
