"""The wire shapes of the browser half (docs/api.md "The browser half"): the request bodies of
browser keys, tokens and client events, and the documents answered — one msgspec Struct each, as for
the rest of the API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from perkamo.http.bodies import EventName, OptionalObject, Slug, TransactionId, UserId
from perkamo.http.responses import (
    Achievements,
    ActiveBoost,
    LevelProgress,
    NextPerk,
    PerkEntry,
    RecentAdjustment,
    RecentEvent,
    RecentRedemption,
    Shape,
    StreakEntry,
    WalletDetails,
)
from perkamo.program.json_walk import JsonObject

Name = Annotated[str, Meta(min_length=1, max_length=128)]
Origin = Annotated[str, Meta(min_length=1, max_length=300)]
Key = Annotated[str, Meta(min_length=1, max_length=256)]


class Capabilities(msgspec.Struct, forbid_unknown_fields=True):
    read: bool = True
    events: bool = True
    stream: bool = True


class Rate(msgspec.Struct, forbid_unknown_fields=True):
    per_second: Annotated[Decimal, Meta(description="above 0, at most 10,000")] = Decimal(5)
    burst: Annotated[int, Meta(ge=1, le=10_000)] = 20


class BrowserKeyBody(msgspec.Struct):
    """``POST /v1/admin/browser-keys``."""

    name: Name
    allowed_origins: Annotated[list[Origin], Meta(min_length=1, max_length=100)]
    allowed_events: Annotated[list[EventName], Meta(max_length=500)] | None = None
    capabilities: Capabilities | None = None
    rate: Rate | None = None
    expose_traits: Annotated[list[Name], Meta(max_length=100)] | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class BrowserKeyPatch(msgspec.Struct):
    """``PATCH /v1/admin/browser-keys/{id}``: the fields given change."""

    name: Name | None = None
    allowed_origins: Annotated[list[Origin], Meta(min_length=1, max_length=100)] | None = None
    allowed_events: Annotated[list[EventName], Meta(max_length=500)] | None = None
    capabilities: Capabilities | None = None
    rate: Rate | None = None
    expose_traits: Annotated[list[Name], Meta(max_length=100)] | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class BrowserKeyDocument(Shape, omit_defaults=True):
    id: str
    prefix: str
    name: str
    allowed_origins: list[str]
    allowed_events: list[str]
    capabilities: Capabilities
    rate: Rate
    expose_traits: list[str] | None
    created_at: str
    revoked_at: str | None
    key: str | msgspec.UnsetType = msgspec.UNSET  # at creation only: shown once


class BrowserKeyList(Shape):
    browser_keys: list[BrowserKeyDocument]  # newest first


class BrowserTokenBody(msgspec.Struct):
    """``POST /v1/browser-tokens`` (what the PHP SDK sends)."""

    browser_key: Key
    user_id: UserId
    ttl_seconds: Annotated[int, Meta(ge=1, le=1800)] | None = None
    purpose: Literal["client", "stream"] | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class BrowserToken(Shape):
    token: str
    token_type: str
    expires_at: str
    expires_in: int  # an integer: the PHP SDK refuses anything else


class Jwk(Shape):
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class Jwks(Shape):
    keys: list[Jwk]


class ClientEventBody(msgspec.Struct):
    """``POST /v1/client/events``: the token names the customer; ``user_id``, if sent,
    must be the token's; ``occurred_at`` is not accepted from a browser."""

    event: EventName
    transaction_id: TransactionId
    context: OptionalObject = None
    user_id: UserId | None = None
    occurred_at: Annotated[
        Any, Meta(description="not accepted from a browser: sending it is a validation_error")
    ] = None
    tenant: Slug | None = None
    space: Slug | None = None


class ClientProfileDocument(Shape, kw_only=True, omit_defaults=True):
    """``GET /v1/client/profile``: the profile document without ``traits`` unless the
    browser key exposes some (then only those), and the profile's ``version`` (a live
    stream's ids)."""

    tenant: str
    user_id: str
    traits: JsonObject | msgspec.UnsetType = msgspec.UNSET
    wallets: dict[str, Decimal]
    wallet_details: dict[str, WalletDetails]  # as the server's profile (pending, expiring…)
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
    version: int


class ClientProgramDocument(Shape):
    """``GET /v1/client/program``: what a widget shows (no conditions, no reward effects,
    no integration, metrics or usage)."""

    blueprint: JsonObject
    versions: dict[str, str | None]
