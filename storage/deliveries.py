"""What the webhook inspector reads: deliveries filtered by status and type (keyset pages on
an index), one delivery with its body and every attempt (headers sent, response body), the
deliveries of one event; and re-queueing them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from storage.webhooks import AttemptRecord as Attempt

Conn = psycopg.Connection[Any]
_FAR_FUTURE = datetime(9999, 12, 30).astimezone()
STATUSES = ("pending", "retrying", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event_type: str
    subject: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_status_text: str | None
    last_duration_ms: int | None
    last_error: str | None


def deliveries_page(
    conn: Conn,
    space_id: int,
    status: str | None,
    event_type: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Delivery]:
    """Newest first, older than the ``after`` cursor (created_at, id)."""
    at, key = after or (_FAR_FUTURE, "")
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        cur.execute(
            "SELECT id, event_type, subject, status, attempts, next_attempt_at, created_at,"
            " delivered_at, last_status_code, last_status_text, last_duration_ms, last_error"
            " FROM webhook_deliveries WHERE space_id = %(s)s"
            " AND (created_at, id) < (%(at)s, %(key)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " AND (%(type)s::text IS NULL OR event_type = %(type)s)"
            " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            {
                "s": space_id,
                "at": at,
                "key": key,
                "status": status,
                "type": event_type,
                "limit": limit,
            },
        )
        return cur.fetchall()


def delivery(conn: Conn, space_id: int, delivery_id: str) -> tuple[Delivery, str] | None:
    """One delivery and its body (the exact bytes POSTed)."""
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        cur.execute(
            "SELECT id, event_type, subject, status, attempts, next_attempt_at, created_at,"
            " delivered_at, last_status_code, last_status_text, last_duration_ms, last_error"
            " FROM webhook_deliveries"
            " WHERE space_id = %s AND id = %s",
            (space_id, delivery_id),
        )
        found = cur.fetchone()
    if found is None:
        return None
    row = conn.execute("SELECT body FROM webhook_deliveries WHERE id = %s", (delivery_id,))
    body = row.fetchone()
    return found, body[0] if body else ""


def deliveries_of(conn: Conn, space_id: int, subject: str) -> list[Delivery]:
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        cur.execute(
            "SELECT id, event_type, subject, status, attempts, next_attempt_at, created_at,"
            " delivered_at, last_status_code, last_status_text, last_duration_ms, last_error"
            " FROM webhook_deliveries"
            " WHERE space_id = %s AND subject = %s ORDER BY created_at",
            (space_id, subject),
        )
        return cur.fetchall()


def attempts_of(conn: Conn, delivery_ids: list[str]) -> list[Attempt]:
    with conn.cursor(row_factory=class_row(Attempt)) as cur:
        cur.execute(
            "SELECT delivery_id, attempt, at, status_code, status_text, duration_ms, error,"
            " request_headers, response_body FROM webhook_attempts"
            " WHERE delivery_id = ANY(%s) ORDER BY delivery_id, attempt",
            (delivery_ids,),
        )
        return cur.fetchall()


def event_types(conn: Conn, space_id: int) -> list[str]:
    """The types this Space's deliveries have (for the filter), from the program's catalog
    and the fixed support types: read from the index, not the table."""
    rows = conn.execute(
        "WITH RECURSIVE t(type) AS ("
        " (SELECT event_type FROM webhook_deliveries WHERE space_id = %(s)s"
        "  ORDER BY event_type LIMIT 1)"
        " UNION ALL SELECT (SELECT event_type FROM webhook_deliveries"
        "  WHERE space_id = %(s)s AND event_type > t.type ORDER BY event_type LIMIT 1)"
        " FROM t WHERE t.type IS NOT NULL)"
        " SELECT type FROM t WHERE type IS NOT NULL LIMIT 200",
        {"s": space_id},
    ).fetchall()
    return [r[0] for r in rows]


def resend(conn: Conn, space_id: int, delivery_id: str) -> bool:
    """Queue a delivery again now (delivered ones too) with a fresh round of retries; the
    attempts made so far stay listed."""
    return (
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),"
            " attempts = 0 WHERE space_id = %s AND id = %s",
            (space_id, delivery_id),
        ).rowcount
        == 1
    )


def recover_failed(conn: Conn, space_id: int, since: datetime) -> int:
    """Re-queue every failed delivery created since ``since``; returns how many."""
    return conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),"
        " attempts = 0 WHERE space_id = %s AND status = 'failed' AND created_at >= %s",
        (space_id, since),
    ).rowcount


@dataclass(frozen=True, slots=True)
class Health:
    queued: int  # pending or retrying
    overdue: int  # of those, due before now (held by the breaker or a busy dispatcher)
    failed_last_24h: int
    last_delivered_at: datetime | None


def health(conn: Conn, space_id: int, now: datetime, day_ago: datetime) -> Health:
    """The endpoint's deliveries at a glance, each figure from the status index."""
    row = conn.execute(
        "SELECT"
        " (SELECT count(*) FROM webhook_deliveries WHERE space_id = %(s)s"
        "   AND status IN ('pending', 'retrying')),"
        " (SELECT count(*) FROM webhook_deliveries WHERE space_id = %(s)s"
        "   AND status IN ('pending', 'retrying') AND next_attempt_at < %(now)s),"
        " (SELECT count(*) FROM webhook_deliveries WHERE space_id = %(s)s"
        "   AND status = 'failed' AND created_at >= %(ago)s),"
        " (SELECT max(delivered_at) FROM (SELECT delivered_at FROM webhook_deliveries"
        "   WHERE space_id = %(s)s AND status = 'delivered'"
        "   ORDER BY created_at DESC LIMIT 50) recent)",
        {"s": space_id, "now": now, "ago": day_ago},
    ).fetchone()
    assert row is not None
    return Health(*row)
