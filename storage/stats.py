"""Aggregate figures about a Space, for the program document. The shape of a profile's
stored state is the domain's: its wallet totals are read at the JSON paths the caller
names (``WalletPaths``), so renaming a field cannot silently break a query here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class WalletPaths:
    """Where a profile's state keeps its wallets (an object keyed by wallet) and, in each,
    the fields summed."""

    wallets: str
    balance: str
    earned: str
    spent: str
    pending: str
    lots: str


@dataclass(frozen=True, slots=True)
class WebhookHealth:
    enabled: bool
    url: str
    queued: int  # pending or retrying deliveries
    failed_last_24h: int
    last_delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class SpaceStats:
    profiles: int
    events: int
    redemptions: int
    adjustments: int
    reversals: int
    last_event_at: datetime | None
    events_last_24h: int
    keys_in_use: int
    issued: dict[str, Decimal]  # per wallet: every profile's earned and pending totals
    spent: dict[str, Decimal]
    webhook: WebhookHealth | None


def wallet_sums(conn: Conn, space_id: int, paths: WalletPaths, field: str) -> dict[str, Decimal]:
    """Per wallet, the sum over the Space's profiles of one field of the wallet's state."""
    rows = conn.execute(
        "SELECT w.key, sum((w.value ->> %s)::numeric)"
        " FROM profiles p, jsonb_each(p.state -> %s) AS w"
        " WHERE p.space_id = %s GROUP BY w.key",
        (field, paths.wallets, space_id),
    ).fetchall()
    return {key: total or Decimal(0) for key, total in rows}


def space_stats(conn: Conn, space_id: int, now: datetime, paths: WalletPaths) -> SpaceStats:
    row = conn.execute(
        "SELECT count(*), max(received_at),"
        " count(*) FILTER (WHERE received_at >= %s)"
        " FROM events WHERE space_id = %s",
        (now - timedelta(hours=24), space_id),
    ).fetchone()
    assert row is not None
    events, last_event_at, last_24h = row
    return SpaceStats(
        profiles=_count(conn, "SELECT count(*) FROM profiles WHERE space_id = %s", space_id),
        events=events,
        redemptions=_count(conn, "SELECT count(*) FROM redemptions WHERE space_id = %s", space_id),
        adjustments=_count(conn, "SELECT count(*) FROM adjustments WHERE space_id = %s", space_id),
        reversals=_count(  # of redemptions and of events (returns)
            conn,
            "WITH s AS (SELECT %s::bigint AS id)"
            " SELECT (SELECT count(*) FROM reversals, s WHERE space_id = s.id)"
            " + (SELECT count(*) FROM event_reversals, s WHERE space_id = s.id)",
            space_id,
        ),
        last_event_at=last_event_at,
        events_last_24h=last_24h,
        keys_in_use=_count(
            conn,
            "SELECT count(*) FROM api_keys WHERE space_id = %s"
            " AND (revoked_at IS NULL OR revoked_at > now())",
            space_id,
        ),
        issued=_plus(
            wallet_sums(conn, space_id, paths, paths.earned),
            wallet_sums(conn, space_id, paths, paths.pending),
        ),
        spent=wallet_sums(conn, space_id, paths, paths.spent),
        webhook=_webhook(conn, space_id, now),
    )


def _plus(a: dict[str, Decimal], b: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: a.get(k, Decimal(0)) + b.get(k, Decimal(0)) for k in a.keys() | b.keys()}


def _count(conn: Conn, query: Any, space_id: int) -> int:
    row = conn.execute(query, (space_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _webhook(conn: Conn, space_id: int, now: datetime) -> WebhookHealth | None:
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
    return None if row is None else WebhookHealth(*row)
