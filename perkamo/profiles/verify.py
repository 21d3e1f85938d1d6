"""``perkamo verify``: every profile's balances recomputed from the ledger (what every kind
of logged write changed, and what settling released and expired) must equal its stored
snapshot; in a wallet with lots, the lots' remainders must equal the balance (the available
ones) and the pending total (the pending ones), which the ledger sums to as well."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import msgspec

from perkamo.profiles.paths import ANSWERS, WALLETS
from perkamo.program import ProfileState
from storage.database import Conn
from storage.ledger import ledger_totals, states_with_lots, stored_balances
from storage.spaces import SpaceRecord

ZERO = Decimal(0)
_state_decoder = msgspec.json.Decoder(ProfileState, float_hook=Decimal)


@dataclass(frozen=True, slots=True)
class Mismatch:
    space: str
    user_id: str
    wallet: str
    what: str  # balance | spent | pending | available lots | pending lots | lot remainder
    stored: Decimal
    ledger: Decimal  # what the ledger (for lots: the snapshot's own totals) says


@dataclass(frozen=True, slots=True)
class Report:
    space: str
    profiles: int
    mismatches: list[Mismatch]


def verify_space(conn: Conn, space: SpaceRecord) -> Report:
    ledger = ledger_totals(conn, space.id, ANSWERS)
    stored = stored_balances(conn, space.id, WALLETS)
    mismatches = []
    keys = (
        set(ledger.balances) | set(ledger.spent) | set(ledger.pending)
        | set(stored.balances) | set(stored.spent) | set(stored.pending)
    )  # fmt: skip
    for key in sorted(keys):
        for what, mine, expected in (
            ("balance", stored.balances.get(key, ZERO), ledger.balances.get(key, ZERO)),
            ("spent", stored.spent.get(key, ZERO), ledger.spent.get(key, ZERO)),
            ("pending", stored.pending.get(key, ZERO), ledger.pending.get(key, ZERO)),
        ):
            if mine != expected:
                mismatches.append(Mismatch(space.slug, key[0], key[1], what, mine, expected))
    for user, text in states_with_lots(conn, space.id, WALLETS):
        mismatches.extend(_lots(space.slug, user, _state_decoder.decode(text)))
    return Report(space.slug, stored.profiles, mismatches)


def _lots(space: str, user: str, state: ProfileState) -> list[Mismatch]:
    """The lots against the wallet's own totals: available remainders = the balance (0 for
    a debt), pending remainders = ``pending``; no lot empty or negative."""
    found = []
    for key, w in state.wallets.items():
        if not w.lots:
            continue
        available = sum((lot.remaining for lot in w.lots if not lot.pending), ZERO)
        pending = sum((lot.remaining for lot in w.lots if lot.pending), ZERO)
        for lot in w.lots:
            if lot.remaining <= 0:  # an empty lot is dropped; a negative one is corrupt
                found.append(Mismatch(space, user, key, "lot remainder", lot.remaining, ZERO))
        if available != max(w.balance, ZERO):
            found.append(Mismatch(space, user, key, "available lots", available, w.balance))
        if pending != w.pending:
            found.append(Mismatch(space, user, key, "pending lots", pending, w.pending))
    return found
