"""Profile snapshots and the event log, as read by the product."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from .adjustments import RecentAdjustment, recent_adjustments

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class ProfileRow:
    traits: str  # JSON text
    state: str  # JSON text
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the profile's recent history lists it."""

    transaction_id: str
    user_id: str
    event: str
    request_hash: bytes
    hash_form: int  # the canonical-JSON form request_hash was computed in
    occurred_at: datetime
    outcome: str  # the answer as JSON text, exactly as it was sent
    source: str = "server"  # "client": sent by a browser
    reversed_at: datetime | None = None  # when it was returned (a reversed event)


def recent_events(conn: Conn, space_id: int, user_id: str, limit: int) -> list[StoredEvent]:
    """The profile's most recent events, newest (by processing order) first."""
    with conn.cursor(row_factory=class_row(StoredEvent)) as cur:
        cur.execute(
            "SELECT e.transaction_id, e.user_id, e.event, e.request_hash, e.hash_form,"
            " e.occurred_at, e.outcome::text, e.source, v.received_at AS reversed_at"
            " FROM events e LEFT JOIN event_reversals v"
            " ON v.space_id = e.space_id AND v.transaction_id = e.transaction_id"
            " AND v.source = e.source AND v.scope_user = e.scope_user"
            " WHERE e.space_id = %s AND e.user_id = %s ORDER BY e.seq DESC LIMIT %s",
            (space_id, user_id, limit),
        )
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class StoredRedemption:
    transaction_id: str
    user_id: str
    reward_key: str
    request_hash: bytes
    hash_form: int
    received_at: datetime
    outcome: str  # JSON text
    reversed_at: datetime | None = None  # when it was reversed (docs/api.md (support operations))


def recent_redemptions(
    conn: Conn, space_id: int, user_id: str, limit: int
) -> list[StoredRedemption]:
    with conn.cursor(row_factory=class_row(StoredRedemption)) as cur:
        cur.execute(
            "SELECT r.transaction_id, r.user_id, r.reward_key, r.request_hash, r.hash_form,"
            " r.received_at, r.outcome::text, v.received_at AS reversed_at"
            " FROM redemptions r LEFT JOIN reversals v"
            " ON v.space_id = r.space_id AND v.transaction_id = r.transaction_id"
            " WHERE r.space_id = %s AND r.user_id = %s ORDER BY r.seq DESC LIMIT %s",
            (space_id, user_id, limit),
        )
        return cur.fetchall()


def read_profile(
    conn: Conn, space_id: int, user_id: str, limit: int, known_version: int
) -> tuple[ProfileRow | None, list[StoredEvent], list[StoredRedemption], list[RecentAdjustment]]:
    """A profile read in one pool checkout and one thread hop: the stored profile if its
    version is newer than ``known_version`` (another process wrote it), and its most
    recent events and redemptions."""
    with conn.cursor(row_factory=class_row(ProfileRow)) as cur:
        cur.execute(
            "SELECT traits::text, state::text, version, created_at, updated_at FROM profiles"
            " WHERE space_id = %s AND user_id = %s AND version > %s",
            (space_id, user_id, known_version),
        )
        fresher = cur.fetchone()
    if fresher is None and known_version == 0:
        return None, [], [], []
    return (
        fresher,
        recent_events(conn, space_id, user_id, limit),
        recent_redemptions(conn, space_id, user_id, limit),
        recent_adjustments(conn, space_id, user_id, limit),
    )


def usage_counters(conn: Conn, space_id: int, period: Any) -> dict[str, int]:
    rows = conn.execute(
        "SELECT meter, used FROM usage_counters WHERE space_id = %s AND period = %s",
        (space_id, period),
    ).fetchall()
    return {meter: int(used) for meter, used in rows}
