"""Adjustments as the profile document lists them, and which profile a redemption or an
event belongs to (to route its reversal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class RecentAdjustment:
    adjustment_id: str
    transaction_id: str
    wallet: str
    amount: Any  # Decimal
    reason: str
    actor: str | None
    created_at: datetime


def recent_adjustments(
    conn: Conn, space_id: int, user_id: str, limit: int
) -> list[RecentAdjustment]:
    """The profile's most recent adjustments, newest first."""
    with conn.cursor(row_factory=class_row(RecentAdjustment)) as cur:
        cur.execute(
            "SELECT adjustment_id, transaction_id, wallet, amount, reason, actor,"
            " received_at AS created_at FROM adjustments"
            " WHERE space_id = %s AND user_id = %s ORDER BY seq DESC LIMIT %s",
            (space_id, user_id, limit),
        )
        return cur.fetchall()


def redemption_owner(conn: Conn, space_id: int, transaction_id: str) -> str | None:
    """The user a redemption belongs to (None: no such redemption)."""
    row = conn.execute(
        "SELECT user_id FROM redemptions WHERE space_id = %s AND transaction_id = %s",
        (space_id, transaction_id),
    ).fetchone()
    return None if row is None else str(row[0])


def event_owner(conn: Conn, space_id: int, transaction_id: str) -> str | None:
    """The user an applied server event belongs to (None: no such event). A browser-sent
    event's id is its customer's own: it is found through the customer."""
    row = conn.execute(
        "SELECT user_id FROM events WHERE space_id = %s AND transaction_id = %s"
        " AND source = 'server' AND scope_user = ''",
        (space_id, transaction_id),
    ).fetchone()
    return None if row is None else str(row[0])
