"""The ledger view of a Space: balances recomputed from the profile log, next to the
balances stored in the profile snapshots. The JSON shapes are the domain's: the
caller names the paths (``AnswerPaths``, ``WalletPaths``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from storage.log_tables import LOG_TABLES
from storage.stats import WalletPaths

Conn = psycopg.Connection[Any]

Totals = dict[tuple[str, str], Decimal]  # (user_id, wallet) -> amount


@dataclass(frozen=True, slots=True)
class AnswerPaths:
    """Where a stored answer keeps its changes: an event's list of ``{wallet, amount}``
    deltas, a redemption's ``{wallet, amount}`` cost; the amounts that went into pending
    lots, and what settling released (pending → balance) and expired (balance → gone)."""

    delta: str
    cost: str
    wallet: str
    amount: str
    pending: str
    settled: str
    released: str
    expired: str


@dataclass(frozen=True, slots=True)
class Ledger:
    """Per user and wallet, what the log says: the balance (every log table's changes, and
    what settling released and expired), the spent total (redemptions' costs less what
    reversals refunded) and the pending total (what went into pending lots, less what was
    released or taken back)."""

    balances: Totals
    spent: Totals
    pending: Totals


# Every log table's (user_id, wallet, balance change, spent change, pending change), summed
# per user and wallet (log_tables.py: a new kind of write brings its own blocks).
_ANSWERS = sql.SQL(" UNION ALL ").join(t.answers for t in LOG_TABLES if t.answers is not None)
_LEDGER = sql.SQL(
    "SELECT user_id, wallet, sum(b), sum(sp), sum(pd)"
    " FROM ({}) l(user_id, wallet, b, sp, pd) GROUP BY 1, 2"
).format(  # fmt: skip
    sql.SQL(" UNION ALL ").join([
        *(sql.SQL("SELECT *, 0::numeric FROM ({}) c").format(t.ledger)
          for t in LOG_TABLES if t.ledger is not None),
        sql.SQL("""SELECT a.user_id, r ->> %(w)s, (r ->> %(a)s)::numeric, 0::numeric,
                   -(r ->> %(a)s)::numeric
            FROM ({}) a(user_id, outcome),
                 json_array_elements(a.outcome -> %(settled)s -> %(released)s) AS r""").format(
            _ANSWERS),
        sql.SQL("""SELECT a.user_id, x ->> %(w)s, -(x ->> %(a)s)::numeric, 0::numeric,
                   0::numeric
            FROM ({}) a(user_id, outcome),
                 json_array_elements(a.outcome -> %(settled)s -> %(expired)s) AS x""").format(
            _ANSWERS),
        sql.SQL("""SELECT a.user_id, p ->> %(w)s, 0::numeric, 0::numeric, (p ->> %(a)s)::numeric
            FROM ({}) a(user_id, outcome),
                 json_array_elements(a.outcome -> %(pending)s) AS p""").format(_ANSWERS),
    ])
)  # fmt: skip


def ledger_totals(conn: Conn, space_id: int, paths: AnswerPaths) -> Ledger:
    params = {"s": space_id, "delta": paths.delta, "cost": paths.cost, "w": paths.wallet,
              "a": paths.amount, "pending": paths.pending, "settled": paths.settled,
              "released": paths.released, "expired": paths.expired}  # fmt: skip
    ledger = Ledger({}, {}, {})
    for user, wallet, balance, spent_total, pending in conn.execute(_LEDGER, params):
        ledger.balances[(user, wallet)] = Decimal(balance)
        ledger.spent[(user, wallet)] = Decimal(spent_total)
        ledger.pending[(user, wallet)] = Decimal(pending)
    return ledger


@dataclass(frozen=True, slots=True)
class Stored:
    """What the profile snapshots of a Space say, per user and wallet."""

    profiles: int
    balances: Totals
    spent: Totals
    pending: Totals


def stored_balances(conn: Conn, space_id: int, paths: WalletPaths) -> Stored:
    """The stored balance, spent and pending totals per user and wallet."""
    stored = Stored(0, {}, {}, {})
    for user, wallet, balance, spent_total, pending in conn.execute(
        "SELECT p.user_id, w.key, coalesce((w.value ->> %(b)s)::numeric, 0),"
        " coalesce((w.value ->> %(sp)s)::numeric, 0), coalesce((w.value ->> %(pd)s)::numeric, 0)"
        " FROM profiles p, jsonb_each(p.state -> %(ws)s) AS w WHERE p.space_id = %(s)s",
        {"b": paths.balance, "sp": paths.spent, "pd": paths.pending, "ws": paths.wallets,
         "s": space_id},
    ):  # fmt: skip
        stored.balances[(user, wallet)] = Decimal(balance)
        stored.spent[(user, wallet)] = Decimal(spent_total)
        stored.pending[(user, wallet)] = Decimal(pending)
    row = conn.execute("SELECT count(*) FROM profiles WHERE space_id = %s", (space_id,)).fetchone()
    assert row is not None
    return Stored(int(row[0]), stored.balances, stored.spent, stored.pending)


def states_with_lots(conn: Conn, space_id: int, paths: WalletPaths) -> list[tuple[str, str]]:
    """(user_id, state as JSON text) of the Space's profiles that keep lots."""
    rows = conn.execute(
        "SELECT p.user_id, p.state::text FROM profiles p WHERE p.space_id = %(s)s AND EXISTS"
        " (SELECT 1 FROM jsonb_each(p.state -> %(ws)s) w WHERE w.value ? %(lots)s)",
        {"s": space_id, "ws": paths.wallets, "lots": paths.lots},
    ).fetchall()
    return [(str(user), str(state)) for user, state in rows]
