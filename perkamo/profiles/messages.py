"""What a profile actor is asked, and what it answers.

Messages carry the request as the profile needs it (never the HTTP request Struct), with
the server's receive time and the Space's usage limits at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from perkamo.errors import PerkamoError
from perkamo.profiles.answers import (
    AdjustResponse,
    EventOutcome,
    RedeemResponse,
    ReverseResponse,
)
from perkamo.profiles.history import HistoryAdjustment, HistoryEvent, HistoryRedemption
from perkamo.program import ProfileState

ProfileKey = tuple[int, str]  # (space_id, user_id)


@dataclass(frozen=True, slots=True)
class EventRequest:
    transaction_id: str
    event: str
    context: dict[str, Any]
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class Ingest:
    event: EventRequest
    received_at: datetime
    limits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def transaction_id(self) -> str:
        return self.event.transaction_id


@dataclass(frozen=True, slots=True)
class Identify:
    traits: dict[str, Any]
    received_at: datetime
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redeem:
    reward_key: str
    transaction_id: str
    context: dict[str, Any]
    received_at: datetime
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Adjust:
    """A support agent's balance adjustment (API.md §8)."""

    transaction_id: str
    wallet: str
    amount: Decimal
    counts_toward_level: bool
    reason: str
    actor: str | None
    received_at: datetime
    limits: Mapping[str, Any] = field(default_factory=dict)
    audit: str | None = None  # an operator: the audit log records it in the same commit


@dataclass(frozen=True, slots=True)
class Reverse:
    """Reverse this profile's redemption ``transaction_id`` (API.md §8)."""

    transaction_id: str
    reason: str
    actor: str | None
    received_at: datetime
    limits: Mapping[str, Any] = field(default_factory=dict)
    audit: str | None = None  # an operator: the audit log records it in the same commit


@dataclass(frozen=True, slots=True)
class Read:
    pass


@dataclass(frozen=True, slots=True)
class IdentifyResult:
    traits: dict[str, Any]
    created: bool


@dataclass(frozen=True, slots=True)
class ProfileView:
    traits: dict[str, Any]
    state: ProfileState
    created_at: datetime
    updated_at: datetime
    recent_events: list[HistoryEvent]  # newest first
    recent_redemptions: list[HistoryRedemption]
    recent_adjustments: list[HistoryAdjustment]


Message = Ingest | Identify | Redeem | Adjust | Reverse | Read
Write = Ingest | Identify | Redeem | Adjust | Reverse
# An event's or redemption's answer is its response body; failures are answered, not
# raised, so that one bad item never fails its neighbours in a batch.
# An applied event or redemption is answered with its stored JSON (msgspec.Raw: encoded
# once, the same bytes in the log and in the response); a duplicate with the decoded original.
Answer = (
    msgspec.Raw
    | EventOutcome
    | RedeemResponse
    | AdjustResponse
    | ReverseResponse
    | IdentifyResult
    | ProfileView
    | PerkamoError
    | None
)
TransactionKey = tuple[str, str]  # (namespace, transaction id)


def transaction_of(message: Write) -> TransactionKey | None:
    """The idempotency key: namespace and transaction id (identify has none)."""
    if isinstance(message, Ingest):
        return ("event", message.event.transaction_id)
    if isinstance(message, Redeem):
        return ("redemption", message.transaction_id)
    if isinstance(message, Adjust):
        return ("adjustment", message.transaction_id)
    if isinstance(message, Reverse):
        return ("reversal", message.transaction_id)
    return None
