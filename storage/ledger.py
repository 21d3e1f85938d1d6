"""The ledger view of a Space: balances recomputed from the event log and redemptions, next
to the balances stored in the profile snapshots. The JSON shapes are the domain's: the
caller names the paths (``AnswerPaths``, ``WalletPaths``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

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
    """Per user and wallet: what events added, redemptions cost, adjustments added and
    reversals refunded."""

    deltas: Totals
    costs: Totals
    adjustments: Totals
    refunds: Totals


def ledger_totals(conn: Conn, space_id: int, paths: AnswerPaths) -> Ledger:
    deltas: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT e.user_id, d ->> %(w)s, sum((d ->> %(a)s)::numeric)"
        " FROM events e, json_array_elements(e.outcome -> %(delta)s) AS d"
        " WHERE e.space_id = %(s)s GROUP BY 1, 2",
        {"w": paths.wallet, "a": paths.amount, "delta": paths.delta, "s": space_id},
    ):
        deltas[(user, wallet)] = Decimal(total)
    costs: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT user_id, outcome -> %(cost)s ->> %(w)s,"
        " sum((outcome -> %(cost)s ->> %(a)s)::numeric)"
        " FROM redemptions WHERE space_id = %(s)s GROUP BY 1, 2",
        {"w": paths.wallet, "a": paths.amount, "cost": paths.cost, "s": space_id},
    ):
        costs[(user, wallet)] = Decimal(total)
    adjustments: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT user_id, wallet, sum(amount) FROM adjustments WHERE space_id = %s GROUP BY 1, 2",
        (space_id,),
    ):
        adjustments[(user, wallet)] = Decimal(total)
    refunds: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT v.user_id, r.outcome -> %(cost)s ->> %(w)s,"
        " sum((r.outcome -> %(cost)s ->> %(a)s)::numeric)"
        " FROM reversals v JOIN redemptions r"
        " ON r.space_id = v.space_id AND r.transaction_id = v.transaction_id"
        " WHERE v.space_id = %(s)s GROUP BY 1, 2",
        {"w": paths.wallet, "a": paths.amount, "cost": paths.cost, "s": space_id},
    ):
        refunds[(user, wallet)] = Decimal(total)
    return Ledger(deltas, costs, adjustments, refunds)


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
