"""Aggregate figures about a Space, for the program document."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def space_stats(conn: Conn, space_id: int, now: datetime) -> dict[str, Any]:
    row = conn.execute(
        "SELECT count(*), max(received_at),"
        " count(*) FILTER (WHERE received_at >= %s)"
        " FROM events WHERE space_id = %s",
        (now - timedelta(hours=24), space_id),
    ).fetchone()
    assert row is not None
    events, last_event_at, last_24h = row
    profiles = conn.execute(
        "SELECT count(*) FROM profiles WHERE space_id = %s", (space_id,)
    ).fetchone()
    assert profiles is not None
    keys = conn.execute(
        "SELECT count(*) FROM api_keys WHERE space_id = %s AND revoked_at IS NULL", (space_id,)
    ).fetchone()
    assert keys is not None
    issued = conn.execute(
        "SELECT w.key, sum((w.value ->> 'earned')::numeric)"
        " FROM profiles p, jsonb_each(p.state -> 'wallets') AS w"
        " WHERE p.space_id = %s GROUP BY w.key",
        (space_id,),
    ).fetchall()
    spent = conn.execute(
        "SELECT w.key, sum((w.value ->> 'spent')::numeric)"
        " FROM profiles p, jsonb_each(p.state -> 'wallets') AS w"
        " WHERE p.space_id = %s GROUP BY w.key",
        (space_id,),
    ).fetchall()
    redemptions = conn.execute(
        "SELECT count(*) FROM redemptions WHERE space_id = %s", (space_id,)
    ).fetchone()
    assert redemptions is not None
    return {
        "webhook": _webhook(conn, space_id, now),
        "redemptions": redemptions[0],
        "spent": {key: total or Decimal(0) for key, total in spent},
        "events": events,
        "last_event_at": last_event_at,
        "events_last_24h": last_24h,
        "profiles": profiles[0],
        "keys_in_use": keys[0],
        "issued": {key: total or Decimal(0) for key, total in issued},
    }


def _webhook(conn: Conn, space_id: int, now: datetime) -> dict[str, Any] | None:
    """The Space's endpoint and how its deliveries fare; None when none is registered."""
    row = conn.execute(
        "SELECT e.enabled, e.url,"
        " count(d.id) FILTER (WHERE d.status IN ('pending', 'retrying')),"
        " count(d.id) FILTER (WHERE d.status = 'failed' AND d.created_at >= %s),"
        " max(d.delivered_at)"
        " FROM webhook_endpoints e"
        " LEFT JOIN webhook_deliveries d ON d.space_id = e.space_id"
        " WHERE e.space_id = %s GROUP BY e.enabled, e.url",
        (now - timedelta(hours=24), space_id),
    ).fetchone()
    if row is None:
        return None
    enabled, url, queued, failed, last = row
    return {
        "enabled": enabled,
        "url": url,
        "queued": queued,
        "failed_last_24h": failed,
        "last_delivered_at": last,
    }
