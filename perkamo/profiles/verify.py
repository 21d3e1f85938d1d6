"""``perkamo verify``: every profile's balances recomputed from the ledger (what every kind
of logged write changed) must equal its stored snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from perkamo.profiles.paths import ANSWERS, WALLETS
from storage.database import Conn
from storage.ledger import ledger_totals, stored_balances
from storage.spaces import SpaceRecord


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
    keys = set(ledger.balances) | set(ledger.spent) | set(balances) | set(spent)
    for key in sorted(keys):
        for what, stored, expected in (
            ("balance", balances.get(key, zero), ledger.balances.get(key, zero)),
            ("spent", spent.get(key, zero), ledger.spent.get(key, zero)),
        ):
            if stored != expected:
                mismatches.append(Mismatch(space.slug, key[0], key[1], what, stored, expected))
    return Report(space.slug, profiles, mismatches)
