"""The ledger view of a Space: balances recomputed from the event log and redemptions, next
to the balances stored in the profile snapshots."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

Totals = dict[tuple[str, str], Decimal]  # (user_id, wallet) -> amount


def ledger_totals(conn: Conn, space_id: int) -> tuple[Totals, Totals]:
    """(sum of event deltas, sum of redemption costs) per user and wallet."""
    deltas: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT e.user_id, d ->> 'wallet', sum((d ->> 'amount')::numeric)"
        " FROM events e, json_array_elements(e.outcome -> 'delta') AS d"
        " WHERE e.space_id = %s GROUP BY 1, 2",
        (space_id,),
    ):
        deltas[(user, wallet)] = Decimal(total)
    costs: Totals = {}
    for user, wallet, total in conn.execute(
        "SELECT user_id, outcome -> 'cost' ->> 'wallet',"
        " sum((outcome -> 'cost' ->> 'amount')::numeric)"
        " FROM redemptions WHERE space_id = %s GROUP BY 1, 2",
        (space_id,),
    ):
        costs[(user, wallet)] = Decimal(total)
    return deltas, costs


def stored_balances(conn: Conn, space_id: int) -> tuple[int, Totals, Totals]:
    """(profiles, stored balance, stored spent) per user and wallet."""
    balances: Totals = {}
    spent: Totals = {}
    for user, wallet, balance, spent_total in conn.execute(
        "SELECT p.user_id, w.key, coalesce((w.value ->> 'balance')::numeric, 0),"
        " coalesce((w.value ->> 'spent')::numeric, 0)"
        " FROM profiles p, jsonb_each(p.state -> 'wallets') AS w WHERE p.space_id = %s",
        (space_id,),
    ):
        balances[(user, wallet)] = Decimal(balance)
        spent[(user, wallet)] = Decimal(spent_total)
    row = conn.execute("SELECT count(*) FROM profiles WHERE space_id = %s", (space_id,)).fetchone()
    assert row is not None
    return int(row[0]), balances, spent
