"""The shapes the engine works on: the compiled program (shared, never mutated), a profile's
state (stored as its snapshot) and the outcome of one event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec

from perkamo.program.formula import Node
from perkamo.program.json_walk import JsonObject
from perkamo.program.schema import MODULES, Grant, Trigger

# -- the compiled program -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwardDef:
    wallet: str
    amount: Decimal | None
    formula: Node | None
    rounding: str


@dataclass(frozen=True, slots=True)
class ConditionDef:
    path: str
    op: str
    value: object  # a JSON value, compared by paths.holds


@dataclass(frozen=True, slots=True)
class ExpiryDef:
    """When a lot expires: ``after_days`` days after the local date it was earned, or at
    the end of the ``end_of`` period ``after_periods`` periods after the one it was earned
    in (docs/program.md "Points that wait and points that expire")."""

    after_days: int | None
    end_of: str | None  # month | quarter | year
    after_periods: int


@dataclass(frozen=True, slots=True)
class WalletDef:
    key: str
    name: str
    precision: int
    allow_negative: bool
    spendable: bool
    description: str
    expiry: ExpiryDef | None = None
    pending_days: int = 0
    timezone: str = "UTC"  # the lots' days are counted here (``expiry.timezone``)

    quantum: Decimal = field(init=False, repr=False, compare=False)  # 10^-precision
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # Whether the wallet keeps lots (it has an expiry or pending days).
    has_lots: bool = field(init=False, repr=False, compare=False)
    # Lot dates by earning day, computed once (lotdates.py): a pure function's cache.
    day_dates: dict[date, tuple[datetime | None, datetime | None]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantum", Decimal(1).scaleb(-self.precision))
        object.__setattr__(self, "zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "has_lots", self.expiry is not None or self.pending_days > 0)
        object.__setattr__(self, "day_dates", {})


@dataclass(frozen=True, slots=True)
class RewardDef:
    key: str
    name: str
    description: str
    cost_wallet: str
    cost: Decimal
    effect: JsonObject
    level_at_least: int | None
    perks: tuple[str, ...]
    per_user: int | None
    per_user_per_day: int | None
    active: bool


@dataclass(frozen=True, slots=True)
class RuleDef:
    key: str
    name: str
    event: str
    conditions: tuple[ConditionDef, ...]
    awards: tuple[AwardDef, ...]
    per_user: int | None
    per_user_per_day: int | None
    cooldown_seconds: int | None
    active_from: datetime | None
    active_until: datetime | None


@dataclass(frozen=True, slots=True)
class StreakDef:
    key: str
    name: str
    events: frozenset[str]
    period: str
    timezone: str
    zone: ZoneInfo
    milestones: tuple[tuple[int, tuple[AwardDef, ...]], ...]


@dataclass(frozen=True, slots=True)
class LevelDef:
    level: int
    at: Decimal
    name: str | None


@dataclass(frozen=True, slots=True)
class LevelingDef:
    wallet: str
    basis: str
    levels: tuple[LevelDef, ...]


@dataclass(frozen=True, slots=True)
class PerkDef:
    key: str
    name: str
    description: str
    trigger: Trigger
    trigger_raw: JsonObject
    metadata: JsonObject


@dataclass(frozen=True, slots=True)
class CriterionDef:
    event: str
    kind: str  # "count" | "distinct" | "sum"
    path: str | None
    target: Decimal
    conditions: tuple[ConditionDef, ...]


@dataclass(frozen=True, slots=True)
class AchievementDef:
    key: str
    name: str
    description: str
    criteria: tuple[CriterionDef, ...]
    requires: tuple[str, ...]
    awards: tuple[AwardDef, ...]
    repeatable: bool


@dataclass(frozen=True, slots=True)
class BoostDef:
    key: str
    name: str
    multiplier: Decimal
    wallets: frozenset[str] | None
    events: frozenset[str] | None
    starts_at: datetime | None
    ends_at: datetime | None
    grant: Grant | None
    duration_seconds: int | None
    conditions: tuple[ConditionDef, ...]


@dataclass(frozen=True, slots=True)
class Program:
    """A Space's active program, compiled once per activation and shared by its actors.

    ``versions`` maps each module to its active version label (None: never uploaded);
    ``bodies`` keeps each module's body as uploaded, for the blueprint.
    """

    versions: dict[str, str | None]
    bodies: JsonObject = field(default_factory=dict)
    wallets: tuple[WalletDef, ...] = ()
    rewards: tuple[RewardDef, ...] = ()
    catalog: tuple[tuple[str, str, str], ...] = ()  # (key, name, description)
    rules: tuple[RuleDef, ...] = ()
    streaks: tuple[StreakDef, ...] = ()
    leveling: LevelingDef | None = None
    perks: tuple[PerkDef, ...] = ()
    achievements: tuple[AchievementDef, ...] = ()
    boosts: tuple[BoostDef, ...] = ()
    stacking: str = "max"
    max_multiplier: Decimal = Decimal(10)
    # Derived once (every event looks these up): wallets by key, rules by event name (the
    # rules for "*" included, in the program's order), achievements by criterion event.
    _wallets: dict[str, WalletDef] = field(init=False, repr=False, compare=False)
    # The wallets that keep lots: a program without any never settles anything.
    lot_wallets: tuple[WalletDef, ...] = field(init=False, repr=False, compare=False)
    _rules: dict[str, tuple[RuleDef, ...]] = field(init=False, repr=False, compare=False)
    _any_rules: tuple[RuleDef, ...] = field(init=False, repr=False, compare=False)
    _achievements: dict[str, tuple[AchievementDef, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_wallets", {w.key: w for w in self.wallets})
        object.__setattr__(self, "lot_wallets", tuple(w for w in self.wallets if w.has_lots))
        by_event: dict[str, tuple[RuleDef, ...]] = {}
        for name in {r.event for r in self.rules} - {"*"}:
            by_event[name] = tuple(r for r in self.rules if r.event in (name, "*"))
        object.__setattr__(self, "_rules", by_event)
        object.__setattr__(self, "_any_rules", tuple(r for r in self.rules if r.event == "*"))
        achievements: dict[str, tuple[AchievementDef, ...]] = {}
        for name in {c.event for a in self.achievements for c in a.criteria}:
            achievements[name] = tuple(
                a for a in self.achievements if any(c.event == name for c in a.criteria)
            )
        object.__setattr__(self, "_achievements", achievements)

    def wallet(self, key: str) -> WalletDef | None:
        return self._wallets.get(key)

    def rules_for(self, event: str) -> tuple[RuleDef, ...]:
        """The rules an event named ``event`` is evaluated against, in the program's order."""
        return self._rules.get(event, self._any_rules)

    def achievements_for(self, event: str) -> tuple[AchievementDef, ...]:
        """The achievements with a criterion counting events named ``event``, in the
        program's order (no other achievement can progress on it)."""
        return self._achievements.get(event, ())


EMPTY_PROGRAM = Program(versions=dict.fromkeys(MODULES))

# -- a profile's state (the stored snapshot) ------------------------------------------------


class Lot(msgspec.Struct, array_like=True, frozen=True):
    """Points earned together that wait and expire together (docs/program.md "Points that wait and
    points that expire"). Stored as a JSON array: a wallet may hold many, and every write encodes
    them. Immutable: a state is copied without copying its lots (``lots.py``)."""

    id: int  # creation order within the wallet
    source: str  # the event's transaction id; ``adjustment:…``, ``refund:…``, ``activation``
    # What is left to spend or, while pending, to release. A pending lot's earning part (what
    # its release adds to ``earned``) is always its remainder: only events make pending
    # lots, and a return takes from both alike; an available lot's is spent already. So
    # neither that nor the amount that went in is stored: a large profile holds many lots,
    # every write decodes and encodes them, and a decimal is their costliest field.
    remaining: Decimal
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None  # None: never
    pending: bool  # not released yet: not in the balance


class ExpiredLot(msgspec.Struct, array_like=True, frozen=True):
    """A lot that expired lately, with what expired of it: what a return of an event whose
    points went into it must not take again."""

    available_at: datetime
    expires_at: datetime
    amount: Decimal


class TakenPart(msgspec.Struct, array_like=True, frozen=True):
    """What a redemption took from one lot (its reversal gives it back to the same dates)."""

    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    amount: Decimal


class WalletBalance(msgspec.Struct, omit_defaults=True):
    balance: Decimal = Decimal(0)
    earned: Decimal = Decimal(0)
    deducted: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)
    # Only for a wallet with lots (empty, hence not stored, for any other):
    pending: Decimal = Decimal(0)  # the pending lots' remainders
    expired: Decimal = Decimal(0)  # every expiry, lifetime
    lots: list[Lot] = []
    next_lot: int = 0
    expiries: list[ExpiredLot] = []  # the most recent ones (EXPIRIES_KEPT)
    due: datetime | None = None  # the soonest due time of its lots
    lotted: bool = False  # its balance is kept in lots (the wallet has the settings)


class RuleCounter(msgspec.Struct, omit_defaults=True):
    fired: int = 0
    last_fired_at: datetime | None = None
    per_day: dict[str, int] = {}  # UTC date -> firings, the 8 most recent days seen


class StreakState(msgspec.Struct, omit_defaults=True):
    current: int = 0
    longest: int = 0
    last_period: date | None = None  # local start date of the last counted period
    period: str = "day"
    timezone: str = "UTC"


class CriterionProgress(msgspec.Struct, omit_defaults=True):
    count: int = 0
    values: list[str] = []  # distinct values (canonical JSON), at most the target
    total: Decimal = Decimal(0)


class AchievementState(msgspec.Struct, omit_defaults=True):
    times: int = 0
    completed_at: datetime | None = None
    progress: list[CriterionProgress] = []


class UnlockedPerk(msgspec.Struct):
    unlocked_at: datetime
    trigger: JsonObject


class GrantedBoost(msgspec.Struct):
    granted_at: datetime
    expires_at: datetime


class RedemptionCounter(msgspec.Struct, omit_defaults=True):
    count: int = 0
    per_day: dict[str, int] = {}  # UTC receive date -> redemptions, the 8 most recent days


class ProfileState(msgspec.Struct, omit_defaults=True):
    """Everything the engine derives from a profile's history."""

    wallets: dict[str, WalletBalance] = {}
    rules: dict[str, RuleCounter] = {}
    streaks: dict[str, StreakState] = {}
    achievements: dict[str, AchievementState] = {}
    perks: dict[str, UnlockedPerk] = {}  # in unlock order
    perk_counts: dict[str, int] = {}  # event_count triggers: events seen since the perk existed
    boosts: dict[str, GrantedBoost] = {}
    max_level: int = 1  # the highest level ever reached (level grants fire once)
    redemptions: dict[str, RedemptionCounter] = {}  # reward key -> what limits need
    # Profiles of a program with lots: the profile's *now* (it never goes backwards), and
    # what the latest redemptions took from lots (redemption transaction id -> parts).
    settled_at: datetime | None = None
    takes: dict[str, list[TakenPart]] = {}
