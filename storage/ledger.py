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
    deltas, a redemption's ``{wallet, amount}`` cost."""

    delta: str
    cost: str
    wallet: str
    amount: str


@dataclass(frozen=True, slots=True)
class Ledger:
    """Per user and wallet, what the log says: the balance (every log table's changes) and
    the spent total (redemptions' costs less what reversals refunded)."""

    balances: Totals
    spent: Totals


# Every log table's (user_id, wallet, balance change, spent change), summed per user and
# wallet (log_tables.py: a new kind of write that moves balances brings its own block).
_LEDGER = sql.SQL(
    "SELECT user_id, wallet, sum(b), sum(sp) FROM ({}) l(user_id, wallet, b, sp) GROUP BY 1, 2"
).format(  # fmt: skip
    sql.SQL(" UNION ALL ").join(t.ledger for t in LOG_TABLES if t.ledger is not None)
)


def ledger_totals(conn: Conn, space_id: int, paths: AnswerPaths) -> Ledger:
    params = {"s": space_id, "delta": paths.delta, "cost": paths.cost, "w": paths.wallet,
              "a": paths.amount}  # fmt: skip
    balances: Totals = {}
    spent: Totals = {}
    for user, wallet, balance, spent_total in conn.execute(_LEDGER, params):
        balances[(user, wallet)] = Decimal(balance)
        spent[(user, wallet)] = Decimal(spent_total)
    return Ledger(balances, spent)


def stored_balances(conn: Conn, space_id: int, paths: WalletPaths) -> tuple[int, Totals, Totals]:
    """(profiles, stored balance, stored spent) per user and wallet."""
    balances: Totals = {}
    spent: Totals = {}
    for user, wallet, balance, spent_total in conn.execute(
        "SELECT p.user_id, w.key, coalesce((w.value ->> %(b)s)::numeric, 0),"
        " coalesce((w.value ->> %(sp)s)::numeric, 0)"
        " FROM profiles p, jsonb_each(p.state -> %(ws)s) AS w WHERE p.space_id = %(s)s",
        {"b": paths.balance, "sp": paths.spent, "ws": paths.wallets, "s": space_id},
    ):
        balances[(user, wallet)] = Decimal(balance)
        spent[(user, wallet)] = Decimal(spent_total)
    row = conn.execute("SELECT count(*) FROM profiles WHERE space_id = %s", (space_id,)).fetchone()
    assert row is not None
    return int(row[0]), balances, spent
