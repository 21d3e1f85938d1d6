"""The response bodies of the API, one msgspec Struct per wire shape.

They are the single source of the response half of ``GET /openapi.json`` (see openapi.py).
Handlers whose answer is assembled in one place return these Structs directly; the event,
redemption, profile and program documents are built by the engine and the actors as plain
data and must match these shapes exactly: the test suite decodes every response it sees
with the route's Struct (unknown fields forbidden), so a shape that drifts fails a test.

Amounts are ``Decimal`` on the Python side and JSON numbers on the wire (the server encodes
decimals as numbers); the OpenAPI generator documents them as ``number``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec


class Shape(msgspec.Struct, forbid_unknown_fields=True):
    """A response object: every field it may carry is declared here."""


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


class Delta(Shape):
    wallet: str
    amount: Decimal


class Unlocked(Shape):
    type: str  # "perk" | "achievement" | "boost" | "streak_milestone"
    key: str
    name: str


class LevelProgress(Shape):
    wallet: str
    level: int
    current: Decimal
    nextLevelAt: Decimal | None
    currentLevelAt: Decimal
    progress: Decimal


class IdentifyResponse(Shape):
    tenant: str
    user_id: str
    traits: dict[str, Any]
    created: bool


class Changes(Shape):
    """What every event answer carries, applied or not."""

    applied: bool
    duplicate: bool
    delta: list[Delta]
    leveled_up: bool
    unlocked: list[Unlocked]
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None


class EventOutcome(Changes):
    event_id: str
    skipped: list[dict[str, str]]
    breakdown: list[dict[str, Any]]
    program_versions: dict[str, str | None]


class BatchItem(Changes):
    """One item of a batch answer: an event outcome, or a failure carrying ``error``."""

    event_id: str | msgspec.UnsetType = msgspec.UNSET
    skipped: list[dict[str, str]] | msgspec.UnsetType = msgspec.UNSET
    breakdown: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    program_versions: dict[str, str | None] | msgspec.UnsetType = msgspec.UNSET
    error: ItemError | msgspec.UnsetType = msgspec.UNSET


class BatchResponse(Shape):
    results: list[BatchItem]


class RewardRef(Shape):
    key: str
    name: str


class RedeemResponse(Shape):
    redeemed: bool
    duplicate: bool
    reward: RewardRef
    cost: Delta
    delta: list[Delta]
    effect: dict[str, Any]
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    redemption_id: str
    program_versions: dict[str, str | None]


# -- the profile document ---------------------------------------------------------------------


class PerkEntry(Shape):
    key: str
    name: str
    description: str
    unlocked_at: str
    metadata: dict[str, Any]


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


class RecentRedemption(Shape):
    reward_key: str
    transaction_id: str
    redeemed_at: str
    cost: Delta | None
    effect: dict[str, Any] | None


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


class ProfileDocument(Shape):
    tenant: str
    user_id: str
    traits: dict[str, Any]
    wallets: dict[str, Decimal]
    level: LevelProgress | None
    perks: list[PerkEntry]
    next_perks: list[NextPerk]
    achievements: Achievements
    flags: dict[str, dict[str, bool]]
    events: list[RecentEvent]
    redemptions: list[RecentRedemption]
    streaks: list[StreakEntry]
    active_boosts: list[ActiveBoost]
    created_at: str
    updated_at: str


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
    issued: dict[str, Decimal]
    spent: dict[str, Decimal]


class ProgramDocument(Shape):
    tenant: str
    space: SpaceRef
    blueprint: dict[str, Any]  # the uploaded modules, as configured
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
    body: dict[str, Any] | None
