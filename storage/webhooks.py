"""Webhook endpoints, the delivery outbox and every attempt (SQL only): what the dispatcher
claims and records, and what the console's inspector reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
_FAR_FUTURE = datetime(9999, 12, 30).astimezone()


@dataclass(frozen=True, slots=True)
class Endpoint:
    space_id: int
    url: str
    secret: str
    enabled: bool
    slug: str
    name: str
    environment: str
    previous_secret: str | None = None  # still signing until previous_secret_until
    previous_secret_until: datetime | None = None
    paused_until: datetime | None = None  # the breaker: unreachable, not attempted until
    unreachable: int = 0  # attempts in a row that got no answer
    disabled_reason: str | None = None
    updated_at: datetime | None = None

    def secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery is signed with now: the new one first, and for the overlap
        after a rotation the previous one too (receivers switch without losing any)."""
        if self.previous_secret and self.previous_secret_until and self.previous_secret_until > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


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
    "SELECT e.space_id, e.url, e.secret, e.enabled, s.slug, s.name, s.environment,"
    " e.previous_secret, e.previous_secret_until, e.paused_until, e.unreachable,"
    " e.disabled_reason, e.updated_at"
    " FROM webhook_endpoints e JOIN spaces s ON s.id = e.space_id WHERE e.space_id = ANY(%s)"
)


def set_endpoint(conn: Conn, space_id: int, url: str, secret: str) -> None:
    """Set (or replace) the endpoint: enabled, a new secret, the breaker closed."""
    conn.execute(
        "INSERT INTO webhook_endpoints (space_id, url, secret) VALUES (%s, %s, %s)"
        " ON CONFLICT (space_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,"
        " enabled = true, updated_at = now(), previous_secret = NULL,"
        " previous_secret_until = NULL, paused_until = NULL, unreachable = 0,"
        " disabled_reason = NULL",
        (space_id, url, secret),
    )


def set_url(conn: Conn, space_id: int, url: str) -> bool:
    return (
        conn.execute(
            "UPDATE webhook_endpoints SET url = %s, updated_at = now(), paused_until = NULL,"
            " unreachable = 0 WHERE space_id = %s",
            (url, space_id),
        ).rowcount
        == 1
    )


def rotate_secret(conn: Conn, space_id: int, secret: str, overlap: timedelta) -> bool:
    """A new signing secret; the old one keeps signing beside it for ``overlap``."""
    return (
        conn.execute(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = %s,"
            " previous_secret_until = now() + %s, updated_at = now() WHERE space_id = %s",
            (secret, overlap, space_id),
        ).rowcount
        == 1
    )


def disable_endpoint(conn: Conn, space_id: int, reason: str | None = None) -> bool:
    cur = conn.execute(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = %s, updated_at = now()"
        " WHERE space_id = %s",
        (reason, space_id),
    )
    return cur.rowcount == 1


def enable_endpoint(conn: Conn, space_id: int) -> bool:
    """Deliver again (the breaker closed: the operator says the receiver is back)."""
    cur = conn.execute(
        "UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL,"
        " paused_until = NULL, unreachable = 0, updated_at = now() WHERE space_id = %s",
        (space_id,),
    )
    return cur.rowcount == 1


def record_breaker(
    conn: Conn, space_id: int, unreachable: int, paused_until: datetime | None
) -> None:
    """The dispatcher's breaker as it stands (0 and None: closed)."""
    conn.execute(
        "UPDATE webhook_endpoints SET unreachable = %s, paused_until = %s WHERE space_id = %s",
        (unreachable, paused_until, space_id),
    )


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
            # A frozen Space is moving: what it has not delivered moves with it.
            " AND space_id NOT IN (SELECT id FROM spaces WHERE frozen)"
            " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET next_attempt_at = %s FROM due WHERE d.id = due.id"
            " RETURNING d.id, d.space_id, d.event_type, d.body, d.attempts",
            (now, list(paused), limit, lease_until),
        )
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt as the dispatcher saw it."""

    delivery_id: str
    attempt: int
    at: datetime
    status_code: int | None
    status_text: str | None
    duration_ms: int
    error: str | None
    request_headers: dict[str, str] | None  # None: no request was sent (or kept, before 0012)
    response_body: str | None  # the first 4 KiB


def record_attempt(
    conn: Conn, attempt: AttemptRecord, status: str, next_attempt_at: datetime
) -> None:
    # Numbered on from the last kept attempt: a resent delivery starts a new round of
    # retries (``attempt`` from 1 again, as its header says) and keeps the earlier ones.
    conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, status_text,"
        " duration_ms, error, request_headers, response_body)"
        " SELECT %s, coalesce(max(attempt), 0) + 1, %s, %s, %s, %s, %s, %s, %s"
        " FROM webhook_attempts WHERE delivery_id = %s",
        (
            attempt.delivery_id,
            attempt.at,
            attempt.status_code,
            attempt.status_text,
            attempt.duration_ms,
            attempt.error,
            Jsonb(attempt.request_headers),
            attempt.response_body,
            attempt.delivery_id,
        ),
    )
    conn.execute(
        "UPDATE webhook_deliveries SET status = %s, attempts = %s, next_attempt_at = %s,"
        " delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END,"
        " last_status_code = %s, last_status_text = %s, last_duration_ms = %s, last_error = %s"
        " WHERE id = %s",
        (
            status,
            attempt.attempt,
            next_attempt_at,
            status,
            attempt.at,
            attempt.status_code,
            attempt.status_text,
            attempt.duration_ms,
            attempt.error,
            attempt.delivery_id,
        ),
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


def queue_delivery(
    conn: Conn, delivery_id: str, space_id: int, event_type: str, body: str, at: datetime
) -> None:
    """One delivery queued now (the console's test event)."""
    conn.execute(
        "INSERT INTO webhook_deliveries (id, space_id, event_type, body, status,"
        " next_attempt_at, created_at) VALUES (%s, %s, %s, %s, 'pending', %s, %s)",
        (delivery_id, space_id, event_type, body, at, at),
    )
