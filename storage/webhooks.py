"""Webhook endpoints and the delivery outbox (SQL only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    space_id: int
    url: str
    secret: str
    enabled: bool
    slug: str
    name: str
    environment: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    id: str
    space_id: int
    event_type: str
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    event_type: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_status_text: str | None
    last_duration_ms: int | None
    last_error: str | None


_ENDPOINT = (
    "SELECT e.space_id, e.url, e.secret, e.enabled, s.slug, s.name, s.environment"
    " FROM webhook_endpoints e JOIN spaces s ON s.id = e.space_id WHERE e.space_id = ANY(%s)"
)


def set_endpoint(conn: Conn, space_id: int, url: str, secret: str) -> None:
    conn.execute(
        "INSERT INTO webhook_endpoints (space_id, url, secret) VALUES (%s, %s, %s)"
        " ON CONFLICT (space_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,"
        " enabled = true, updated_at = now()",
        (space_id, url, secret),
    )


def disable_endpoint(conn: Conn, space_id: int) -> bool:
    cur = conn.execute(
        "UPDATE webhook_endpoints SET enabled = false, updated_at = now() WHERE space_id = %s",
        (space_id,),
    )
    return cur.rowcount == 1


def endpoints(conn: Conn, space_ids: list[int]) -> dict[int, Endpoint]:
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        cur.execute(_ENDPOINT, (space_ids,))
        return {e.space_id: e for e in cur.fetchall()}


def claim_due(
    conn: Conn,
    now: datetime,
    lease_until: datetime,
    limit: int,
    paused: Sequence[int] = (),
) -> list[DueDelivery]:
    """Take up to ``limit`` due deliveries, leasing them until ``lease_until`` (another
    process skips them; a crash mid-delivery makes them due again after the lease). The
    Spaces in ``paused`` (endpoints that cannot be reached just now) are left due."""
    with conn.cursor(row_factory=class_row(DueDelivery)) as cur:
        cur.execute(
            "WITH due AS (SELECT id FROM webhook_deliveries"
            " WHERE status IN ('pending', 'retrying') AND next_attempt_at <= %s"
            " AND NOT (space_id = ANY(%s))"
            " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET next_attempt_at = %s FROM due WHERE d.id = due.id"
            " RETURNING d.id, d.space_id, d.event_type, d.body, d.attempts",
            (now, list(paused), limit, lease_until),
        )
        return cur.fetchall()


def record_attempt(
    conn: Conn,
    delivery_id: str,
    attempt: int,
    at: datetime,
    status_code: int | None,
    status_text: str | None,
    duration_ms: int,
    error: str | None,
    status: str,
    next_attempt_at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO webhook_attempts"
        " (delivery_id, attempt, at, status_code, status_text, duration_ms, error)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (delivery_id, attempt, at, status_code, status_text, duration_ms, error),
    )
    conn.execute(
        "UPDATE webhook_deliveries SET status = %s, attempts = %s, next_attempt_at = %s,"
        " delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END,"
        " last_status_code = %s, last_status_text = %s, last_duration_ms = %s, last_error = %s"
        " WHERE id = %s",
        (
            status,
            attempt,
            next_attempt_at,
            status,
            at,
            status_code,
            status_text,
            duration_ms,
            error,
            delivery_id,
        ),  # fmt: skip
    )


def list_deliveries(conn: Conn, space_id: int, limit: int) -> list[DeliveryRecord]:
    with conn.cursor(row_factory=class_row(DeliveryRecord)) as cur:
        cur.execute(
            "SELECT id, event_type, status, attempts, created_at, next_attempt_at, delivered_at,"
            " last_status_code, last_status_text, last_duration_ms, last_error"
            " FROM webhook_deliveries WHERE space_id = %s ORDER BY created_at DESC, id LIMIT %s",
            (space_id, limit),
        )
        return cur.fetchall()
