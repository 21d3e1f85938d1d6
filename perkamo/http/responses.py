"""The response bodies of the API, one msgspec Struct per wire shape — the one definition
each: handlers return these, msgspec encodes them, and ``GET /openapi.json`` is generated
from them (openapi.py). The answers to profile writes are defined where they are built and
stored (``perkamo/profiles/answers.py``, with the engine's own Delta, Unlocked, Skipped and
BreakdownEntry inside them) and re-exported here.

Amounts are ``Decimal`` on the Python side and JSON numbers on the wire (the server encodes
decimals as numbers); the OpenAPI generator documents them as ``number``.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from perkamo.profiles.answers import (
    AdjustResponse,
    Changes,
    EventOutcome,
    EventReverseResponse,
    LevelProgress,
    RedeemResponse,
    ReversedRedemption,
    ReverseResponse,
    RewardRef,
    Settled,
    Shape,
)
from perkamo.program.json_walk import JsonObject
from perkamo.program.outcome import BreakdownEntry, Delta, Skipped, Unlocked

__all__ = [
    "AdjustResponse",
    "BreakdownEntry",
    "Changes",
    "Delta",
    "EventOutcome",
    "EventReverseResponse",
    "LevelProgress",
    "RedeemResponse",
    "ReverseResponse",
    "ReversedRedemption",
    "RewardRef",
    "Shape",
    "Skipped",
    "Unlocked",
]


class Health(Shape):
    status: str


class ErrorDetail(Shape):
    path: str
    message: str


class ErrorBody(Shape):
    error: str
    message: str
    request_id: str
    details: list[ErrorDetail] | msgspec.UnsetType = msgspec.UNSET


class ItemError(Shape):
    error: str
    message: str
    details: list[ErrorDetail] | msgspec.UnsetType = msgspec.UNSET


class IdentifyResponse(Shape):
    tenant: str
    user_id: str
    traits: JsonObject
    created: bool


class BatchItem(Changes):
    """One item of a batch answer: an event outcome, or a failure carrying ``error``."""

    event_id: str | msgspec.UnsetType = msgspec.UNSET
    skipped: list[Skipped] | msgspec.UnsetType = msgspec.UNSET
    breakdown: list[BreakdownEntry] | msgspec.UnsetType = msgspec.UNSET
    program_versions: dict[str, str | None] | msgspec.UnsetType = msgspec.UNSET
    pending: list[Delta] | msgspec.UnsetType = msgspec.UNSET
    settled: Settled | msgspec.UnsetType = msgspec.UNSET
    error: ItemError | msgspec.UnsetType = msgspec.UNSET
    imported: bool | msgspec.UnsetType = msgspec.UNSET


class BatchResponse(Shape):
    # A successful item is the single event's answer, sent as the log keeps it (encoded).
    results: list[BatchItem | msgspec.Raw]


# -- the profile document ---------------------------------------------------------------------


class PerkEntry(Shape):
    key: str
    name: str
    description: str
    unlocked_at: str
    metadata: JsonObject


class Progress(Shape):
    current: Decimal
    target: Decimal


class NextPerk(Shape):
    key: str
    name: str
    description: str
    progress: Progress | msgspec.UnsetType = msgspec.UNSET


class CompletedAchievement(Shape):
    key: str
    name: str
    completed_at: str
    times: int


class CriterionProgress(Shape):
    criterion: int
    current: Decimal
    target: Decimal


class AchievementInProgress(Shape):
    key: str
    name: str
    progress: list[CriterionProgress]


class OpenAchievement(Shape):
    key: str
    name: str
    description: str


class Achievements(Shape):
    completed: list[CompletedAchievement]
    in_progress: list[AchievementInProgress]
    unlocked: list[OpenAchievement]


class RecentEvent(Shape):
    event: str
    transaction_id: str
    occurred_at: str
    delta: list[Delta]
    source: str  # "server", or "client": sent by a browser (docs/api.md "The browser half")
    # Only once the event is reversed (a return): "reversed", and when.
    status: str | msgspec.UnsetType = msgspec.UNSET
    reversed_at: str | msgspec.UnsetType = msgspec.UNSET


class RecentRedemption(Shape):
    reward_key: str
    transaction_id: str
    redeemed_at: str
    cost: Delta | None
    effect: JsonObject | None
    status: str  # "redeemed" | "reversed"
    reversed_at: str | None


class RecentAdjustment(Shape):
    adjustment_id: str
    transaction_id: str
    wallet: str
    amount: Decimal
    reason: str
    actor: str | None
    created_at: str


class StreakEntry(Shape):
    key: str
    name: str
    period: str
    current: int
    longest: int
    last_period: str
    status: str  # "active" | "at_risk" | "broken"


class ActiveBoost(Shape):
    key: str
    name: str
    multiplier: Decimal
    wallets: list[str] | None
    events: list[str] | None
    source: str  # "schedule" | "granted"
    expires_at: str


class Expiring(Shape):
    amount: Decimal
    expires_at: str


class WalletDetails(Shape):
    balance: Decimal
    pending: Decimal
    earned: Decimal
    spent: Decimal
    expired: Decimal
    expiring: list[Expiring]  # the three soonest expiry dates of available points


class ProfileDocument(Shape):
    tenant: str
    user_id: str
    traits: JsonObject
    wallets: dict[str, Decimal]
    wallet_details: dict[str, WalletDetails]
    level: LevelProgress | None
    perks: list[PerkEntry]
    next_perks: list[NextPerk]
    achievements: Achievements
    flags: dict[str, dict[str, bool]]
    events: list[RecentEvent]
    redemptions: list[RecentRedemption]
    adjustments: list[RecentAdjustment]
    streaks: list[StreakEntry]
    active_boosts: list[ActiveBoost]
    created_at: str
    updated_at: str


# -- trying a program (docs/api.md (trying a program)) ---


class SimulatedOutcome(Shape):
    """An event's answer as ``POST /v1/events`` would give it, minus ``event_id`` and
    ``duplicate``."""

    applied: bool
    delta: list[Delta]
    leveled_up: bool
    unlocked: list[Unlocked]
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    skipped: list[Skipped]
    breakdown: list[BreakdownEntry]
    program_versions: dict[str, str | None]
    pending: list[Delta]
    settled: Settled


class SimulateResponse(Shape):
    profile_existed: bool
    program_versions: dict[str, str | None]
    results: list[SimulatedOutcome]
    profile: ProfileDocument


class BacktestProgress(Shape):
    events_done: int
    events_total: int


class BacktestDocument(Shape, rename={"from_": "from"}):
    id: str
    status: str  # running | done | failed | cancelled
    created_at: str
    finished_at: str | None
    program: dict[str, str]
    from_: str | None
    to: str | None
    progress: BacktestProgress
    report: JsonObject | None
    error: str | None


class BacktestList(Shape):
    backtests: list[BacktestDocument]


# -- usage and the program document -----------------------------------------------------------


class Period(Shape):
    start: str
    end: str


class Meter(Shape):
    used: int
    limit: int | None


class UsageResponse(Shape):
    tenant: str
    period: Period
    meters: dict[str, Meter]


class SpaceRef(Shape):
    slug: str
    name: str
    environment: str


class WebhookStatus(Shape):
    status: str  # "not_configured" | "active" | "disabled"
    url: str | msgspec.UnsetType = msgspec.UNSET
    queued: int | msgspec.UnsetType = msgspec.UNSET  # pending or retrying deliveries
    failed_last_24h: int | msgspec.UnsetType = msgspec.UNSET
    last_delivered_at: str | None | msgspec.UnsetType = msgspec.UNSET


class Integration(Shape):
    keys_in_use: int
    last_event_at: str | None
    events_last_24h: int
    signed_request_share: Decimal | None
    webhook: WebhookStatus


class ProgramMetrics(Shape):
    profiles: int
    events: int
    redemptions: int
    adjustments: int
    reversals: int
    issued: dict[str, Decimal]
    spent: dict[str, Decimal]


class ProgramDocument(Shape):
    tenant: str
    space: SpaceRef
    blueprint: JsonObject  # the uploaded modules, as configured
    versions: dict[str, str | None]
    integration: Integration
    metrics: ProgramMetrics
    usage: UsageResponse


# -- configuration ----------------------------------------------------------------------------


class ModuleUploaded(Shape):
    module: str
    version: str
    active: bool
    checksum: str
    activated_at: str | None
    warnings: list[str]


class ModuleActivation(Shape):
    checksum: str
    activated_at: str | None


class ModulesUploaded(Shape):
    version: str
    active: bool
    modules: dict[str, ModuleActivation]
    warnings: list[str]


class ModuleVersion(Shape):
    version: str
    checksum: str
    created_at: str
    activated_at: str | None


class ModuleDescription(Shape):
    module: str
    active_version: str | None
    versions: list[ModuleVersion]
    body: JsonObject | None
