"""The six configuration modules as msgspec Structs. Unknown fields are rejected: a typo in
a rule must not silently do nothing. Defaults follow docs/program.md."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from perkamo.program.json_walk import JsonObject

Number = int | Decimal
T = TypeVar("T")

# How big a program may be (docs/program.md "Bounds"): enough for any real program, small
# enough that one event's evaluation stays in milliseconds (1,000 rules that all match cost
# ~34 ms an event) and a module stays a few hundred KiB.
MAX_ITEMS = 1000  # rules, catalog events, perks, achievements, rewards, boosts, levels
MAX_SMALL = 50  # wallets, streaks, milestones, a list of event keys or perk keys
MAX_CONDITIONS = 20  # per rule, criterion or boost
MAX_AWARDS = 10  # award items of one rule, milestone or achievement
Many = Annotated[list[T], Meta(max_length=MAX_ITEMS)]
Few = Annotated[list[T], Meta(max_length=MAX_SMALL)]
Conditions = Annotated[list["Condition"], Meta(max_length=MAX_CONDITIONS)]
Awards = Annotated[list["Award"], Meta(max_length=MAX_AWARDS)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Condition(Strict):
    path: str
    op: str
    value: Any = None


class Award(Strict):
    wallet: str
    amount: Number | None = None
    formula: str | None = None
    rounding: Literal["floor", "round", "ceil"] = "floor"


# -- wallets -------------------------------------------------------------------------------


class Expiry(Strict):
    # Exactly one of after_days, or end_of with after_periods (checks.py).
    after_days: int | None = None
    end_of: Literal["month", "quarter", "year"] | None = None
    after_periods: int | None = None
    timezone: str = "UTC"


class Wallet(Strict):
    key: str
    name: str
    precision: int = 0
    allow_negative: bool = False
    spendable: bool = True
    description: str = ""
    expiry: Expiry | None = None
    pending_days: int = 0


class Cost(Strict):
    wallet: str
    amount: Number


class RewardRequires(Strict):
    level_at_least: int | None = None
    perks: Few[str] = []


class RewardLimits(Strict):
    per_user: int | None = None
    per_user_per_day: int | None = None


class Reward(Strict):
    key: str
    name: str
    cost: Cost
    effect: JsonObject
    description: str = ""
    requires: RewardRequires | None = None
    limits: RewardLimits | None = None
    active: bool = True


class WalletsModule(Strict):
    wallets: Few[Wallet] = []
    rewards: Many[Reward] = []


# -- events --------------------------------------------------------------------------------


class CatalogEvent(Strict):
    key: str
    name: str | None = None
    description: str = ""


class RuleLimits(Strict):
    per_user: int | None = None
    per_user_per_day: int | None = None
    cooldown_seconds: int | None = None


class Rule(Strict):
    key: str
    name: str
    event: str
    award: Awards
    conditions: Conditions = []
    limits: RuleLimits | None = None
    active_from: str | None = None
    active_until: str | None = None
    description: str = ""


class Milestone(Strict):
    length: int
    award: Awards = []


class Streak(Strict):
    key: str
    name: str
    events: Few[str]
    period: Literal["day", "week"]
    timezone: str = "UTC"
    milestones: Few[Milestone] = []
    description: str = ""


class EventsModule(Strict):
    events: Many[CatalogEvent] = []
    rules: Many[Rule] = []
    streaks: Few[Streak] = []


# -- leveling ------------------------------------------------------------------------------


class Level(Strict):
    level: int
    at: Number
    name: str | None = None


class Curve(Strict):
    type: Literal["linear", "exponential"]
    max_level: int
    step: Number | None = None
    base: Number | None = None
    factor: Number | None = None


class LevelingModule(Strict):
    wallet: str | None = None
    basis: Literal["earned", "balance"] = "earned"
    levels: Many[Level] | None = None
    curve: Curve | None = None


# -- perks ---------------------------------------------------------------------------------


class Trigger(Strict):
    type: Literal[
        "points_threshold",
        "level_reached",
        "event_count",
        "streak",
        "achievement_completed",
        "trait",
    ]
    wallet: str | None = None
    amount: Number | None = None
    basis: Literal["earned", "balance"] | None = None
    level: int | None = None
    event: str | None = None
    count: int | None = None
    streak: str | None = None
    length: int | None = None
    achievement: str | None = None
    path: str | None = None
    op: str | None = None
    value: Any = None


class Perk(Strict):
    key: str
    name: str
    trigger: Trigger
    description: str = ""
    metadata: JsonObject = {}


class PerksModule(Strict):
    perks: Many[Perk] = []


# -- achievements --------------------------------------------------------------------------


class Criterion(Strict):
    event: str
    count: int | None = None
    distinct: str | None = None
    sum: str | None = None
    target: Number | None = None
    conditions: Conditions = []


class Achievement(Strict):
    key: str
    name: str
    criteria: Annotated[list[Criterion], Meta(max_length=MAX_CONDITIONS)]
    description: str = ""
    requires: Few[str] = []
    award: Awards = []
    repeatable: bool = False


class AchievementsModule(Strict):
    achievements: Many[Achievement] = []


# -- boosts --------------------------------------------------------------------------------


class Schedule(Strict):
    starts_at: str
    ends_at: str


class Grant(Strict):
    on: Literal["perk", "level", "streak_milestone", "reward"]
    perk: str | None = None
    level: int | None = None
    streak: str | None = None
    length: int | None = None


class Boost(Strict):
    key: str
    name: str
    multiplier: Number
    wallets: Few[str] | None = None
    events: Few[str] | None = None
    schedule: Schedule | None = None
    grant: Grant | None = None
    duration_seconds: int | None = None
    conditions: Conditions = []
    description: str = ""


class BoostsModule(Strict):
    stacking: Literal["max", "multiply"] = "max"
    max_multiplier: Number = 10
    boosts: Many[Boost] = []


MODULE_TYPES: dict[str, type[Strict]] = {
    "events": EventsModule,
    "leveling": LevelingModule,
    "wallets": WalletsModule,
    "perks": PerksModule,
    "achievements": AchievementsModule,
    "boosts": BoostsModule,
}
MODULES = tuple(MODULE_TYPES)

# Keys whose values must be JSON numbers (msgspec would also accept numeric strings).
NUMERIC_KEYS = frozenset(
    {
        "amount", "target", "multiplier", "max_multiplier", "at", "step", "base", "factor",
        "precision", "level", "length", "count", "duration_seconds", "cooldown_seconds",
        "per_user", "per_user_per_day", "max_level", "level_at_least", "after_days",
        "after_periods", "pending_days",
    }
)  # fmt: skip
