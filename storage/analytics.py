"""Program analytics from aggregates kept as the ledger is written (migration 0012's
triggers, 0024's for lots): points issued, spent and expired per wallet per day, customers
active and new per day, each rule's awards per day — a page reads a few hundred rows, never
the event log. Level distribution depends on the program, so it is a rollup recomputed in
the background."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class WalletDay:
    day: date
    wallet: str
    issued: Decimal
    spent: Decimal
    expired: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Activity:
    day: date
    active: int
    new: int


@dataclass(frozen=True, slots=True)
class RuleTotal:
    rule: str
    wallet: str
    awarded: Decimal
    firings: int


@dataclass(frozen=True, slots=True)
class Analytics:
    opening: dict[str, Decimal]  # per wallet: outstanding before the first day shown
    wallet_days: list[WalletDay]
    activity: list[Activity]
    rules: list[RuleTotal]  # over the days shown, largest first


def analytics(conn: Conn, space_id: int, start: date, top_rules: int = 10) -> Analytics:
    opening = {
        wallet: total
        for wallet, total in conn.execute(
            "SELECT wallet, sum(issued - spent - expired) FROM ledger_daily"
            " WHERE space_id = %s AND day < %s GROUP BY wallet",
            (space_id, start),
        )
    }
    days = [
        WalletDay(*row)
        for row in conn.execute(
            "SELECT day, wallet, issued, spent, expired FROM ledger_daily"
            " WHERE space_id = %s AND day >= %s ORDER BY day, wallet",
            (space_id, start),
        )
    ]
    activity = [
        Activity(*row)
        for row in conn.execute(
            "SELECT day, active, new FROM activity_daily WHERE space_id = %s AND day >= %s"
            " ORDER BY day",
            (space_id, start),
        )
    ]
    rules = [
        RuleTotal(*row)
        for row in conn.execute(
            "SELECT rule, wallet, sum(awarded), sum(firings)::bigint FROM rule_daily"
            " WHERE space_id = %s AND day >= %s GROUP BY rule, wallet"
            " ORDER BY sum(awarded) DESC, rule LIMIT %s",
            (space_id, start, top_rules),
        )
    ]
    return Analytics(opening, days, activity, rules)


@dataclass(frozen=True, slots=True)
class LevelRollup:
    computed_at: datetime
    version: str | None
    counts: dict[str, int]  # level -> customers


def level_rollup(conn: Conn, space_id: int) -> LevelRollup | None:
    row = conn.execute(
        "SELECT computed_at, version, counts FROM level_rollup WHERE space_id = %s", (space_id,)
    ).fetchone()
    return None if row is None else LevelRollup(row[0], row[1], dict(row[2]))


def compute_levels(
    conn: Conn,
    space_id: int,
    wallets_path: str,
    wallet: str,
    basis: str,
    thresholds: list[Decimal],
    version: str | None,
) -> LevelRollup:
    """Customers per level (thresholds ascending, the first 0) from every profile's basis
    value, stored as the Space's rollup. One pass over the profiles: run it in the
    background, never for a page."""
    rows = conn.execute(
        "SELECT width_bucket(coalesce((state -> %s -> %s ->> %s)::numeric, 0), %s::numeric[]),"
        " count(*) FROM profiles WHERE space_id = %s GROUP BY 1",
        (wallets_path, wallet, basis, thresholds, space_id),
    ).fetchall()
    counts = {str(max(int(level), 1)): 0 for level, _ in rows}
    for level, count in rows:
        counts[str(max(int(level), 1))] += int(count)
    found = conn.execute(
        "INSERT INTO level_rollup (space_id, computed_at, version, counts)"
        " VALUES (%s, now(), %s, %s) ON CONFLICT (space_id) DO UPDATE"
        " SET computed_at = EXCLUDED.computed_at, version = EXCLUDED.version,"
        " counts = EXCLUDED.counts RETURNING computed_at",
        (space_id, version, Jsonb(counts)),
    ).fetchone()
    assert found is not None
    return LevelRollup(found[0], version, counts)
