"""``perkamo verify``: every profile's balances recomputed from the ledger (event deltas and
redemption costs) must equal its stored snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from perkamo.profiles.paths import ANSWERS, WALLETS
from storage.ledger import ledger_totals, stored_balances
from storage.spaces import SpaceRecord

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Mismatch:
    space: str
    user_id: str
    wallet: str
    what: str  # "balance" | "spent"
    stored: Decimal
    ledger: Decimal


@dataclass(frozen=True, slots=True)
class Report:
    space: str
    profiles: int
    mismatches: list[Mismatch]


def verify_space(conn: Conn, space: SpaceRecord) -> Report:
    deltas, costs = ledger_totals(conn, space.id, ANSWERS)
    profiles, balances, spent = stored_balances(conn, space.id, WALLETS)
    mismatches = []
    for key in sorted(set(deltas) | set(costs) | set(balances) | set(spent)):
        expected_balance = deltas.get(key, Decimal(0)) - costs.get(key, Decimal(0))
        expected_spent = costs.get(key, Decimal(0))
        for what, stored, ledger in (
            ("balance", balances.get(key, Decimal(0)), expected_balance),
            ("spent", spent.get(key, Decimal(0)), expected_spent),
        ):
            if stored != ledger:
                mismatches.append(Mismatch(space.slug, key[0], key[1], what, stored, ledger))
    return Report(space.slug, profiles, mismatches)
