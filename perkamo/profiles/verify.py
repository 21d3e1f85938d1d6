"""``perkamo verify``: every profile's balances recomputed from the ledger (event deltas,
redemption costs, adjustments and reversal refunds) must equal its stored snapshot."""

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
    ledger = ledger_totals(conn, space.id, ANSWERS)
    profiles, balances, spent = stored_balances(conn, space.id, WALLETS)
    mismatches = []
    zero = Decimal(0)
    keys = (
        set(ledger.deltas) | set(ledger.costs) | set(ledger.adjustments) | set(ledger.refunds)
        | set(balances) | set(spent)
    )  # fmt: skip
    for key in sorted(keys):
        refund = ledger.refunds.get(key, zero)
        expected_spent = ledger.costs.get(key, zero) - refund
        expected_balance = (
            ledger.deltas.get(key, zero) - expected_spent + ledger.adjustments.get(key, zero)
        )
        for what, stored, expected in (
            ("balance", balances.get(key, zero), expected_balance),
            ("spent", spent.get(key, zero), expected_spent),
        ):
            if stored != expected:
                mismatches.append(Mismatch(space.slug, key[0], key[1], what, stored, expected))
    return Report(space.slug, profiles, mismatches)
