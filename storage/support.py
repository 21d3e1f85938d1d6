"""Adjustments and reversals as the product reads them back (idempotency, the profile
document, verify)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class StoredAdjustment:
    transaction_id: str
    user_id: str
    request_hash: bytes
    hash_form: int
    outcome: str  # the answer as JSON text, exactly as it was sent


@dataclass(frozen=True, slots=True)
class StoredReversal:
    transaction_id: str  # the redemption's
    user_id: str
    outcome: str


@dataclass(frozen=True, slots=True)
class RecentAdjustment:
    adjustment_id: str
    transaction_id: str
    wallet: str
    amount: Any  # Decimal
    reason: str
    actor: str | None
    created_at: datetime


def find_adjustments(conn: Conn, space_id: int, ids: list[str]) -> list[StoredAdjustment]:
    with conn.cursor(row_factory=class_row(StoredAdjustment)) as cur:
        cur.execute(
            "SELECT transaction_id, user_id, request_hash, hash_form, outcome::text"
            " FROM adjustments WHERE space_id = %s AND transaction_id = ANY(%s)",
            (space_id, ids),
        )
        return cur.fetchall()


def find_reversals(conn: Conn, space_id: int, ids: list[str]) -> list[StoredReversal]:
    with conn.cursor(row_factory=class_row(StoredReversal)) as cur:
        cur.execute(
            "SELECT transaction_id, user_id, outcome::text"
            " FROM reversals WHERE space_id = %s AND transaction_id = ANY(%s)",
            (space_id, ids),
        )
        return cur.fetchall()


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
