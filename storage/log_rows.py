"""The rows of the profile log's tables as the group commit writes them (one dataclass per
kind of write; their SQL is in ``log_tables.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class EventRow:
    space_id: int
    transaction_id: str
    user_id: str
    event: str
    context: str  # JSON text
    occurred_at: datetime
    received_at: datetime
    request_hash: bytes
    outcome: str  # JSON text
    profile_version: int = 0  # the version its unit commits; with position, replay order
    position: int = 0
    event_id: str | None = None  # evt_…, also inside the outcome (found by the console)


@dataclass(slots=True)
class IdentifyRow:
    space_id: int
    user_id: str
    traits: str  # JSON text of the patch
    received_at: datetime
    program_versions: str  # JSON text
    profile_version: int
    position: int
    outcome: str | None = None  # JSON text: what settling changed, when anything did


@dataclass(slots=True)
class RedemptionRow:
    space_id: int
    transaction_id: str
    user_id: str
    reward_key: str
    context: str  # JSON text
    received_at: datetime
    request_hash: bytes
    outcome: str  # JSON text
    profile_version: int = 0
    position: int = 0
    redemption_id: str | None = None


@dataclass(slots=True)
class AdjustmentRow:
    space_id: int
    transaction_id: str
    adjustment_id: str
    user_id: str
    wallet: str
    amount: str  # the exact decimal, as text
    counts_toward_level: bool
    reason: str
    actor: str | None
    received_at: datetime
    request_hash: bytes
    outcome: str  # JSON text
    program_versions: str  # JSON text
    profile_version: int
    position: int
    # An opening balance (import-balances): the earned total's own change and the traits
    # merged in the same write; the dates of a wallet's opening lot.
    earned: str | None = None
    traits: str | None = None  # JSON text
    earned_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class ReversalRow:
    """A redemption's reversal, or an event's (a return): the same columns."""

    space_id: int
    transaction_id: str  # the redemption's (the event's)
    user_id: str
    reason: str
    actor: str | None
    received_at: datetime
    outcome: str  # JSON text
    program_versions: str  # JSON text
    profile_version: int
    position: int


@dataclass(slots=True)
class TickRow:
    space_id: int
    transaction_id: str  # the due time and the user: one tick per profile and due time
    user_id: str
    due_at: datetime
    received_at: datetime
    outcome: str  # JSON text: what it settled
    program_versions: str  # JSON text
    profile_version: int
    position: int
