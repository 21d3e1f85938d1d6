"""Returns: reversing an event (docs/program.md "Returns: reversing an event"), pure like
``apply``. A returned or cancelled order takes back what its event gave.

For each wallet the event changed positively (its ``delta`` plus what went into pending):
first from the lot its points went into — at most the event's amount, at most what remains,
pending or available as that lot is — then what of the rest had expired is not taken again,
and only what was spent is taken from the wallet in spending order; a wallet that does not
allow negatives gives what it has and the rest is the ``shortfall``. ``earned`` falls by
what the event had added to it (never below 0), so a level on that basis may drop; perks
stay, achievements and streaks are not un-counted. A wallet the event changed negatively
gets that amount back, as a lot available at once that does not raise ``earned``. A wallet
without lots follows the same rules on its plain balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from perkamo.errors import Code
from perkamo.program.adjustments import SupportRefused, evaluation_of
from perkamo.program.amounts import number, wallet_state
from perkamo.program.bounds import within
from perkamo.program.evaluation import DECIMALS
from perkamo.program.levels import level_number, level_state
from perkamo.program.lots import (
    ZERO,
    add_available,
    event_lot,
    expired_share,
    new_lot,
    spend,
    take,
)
from perkamo.program.model import ProfileState, Program, WalletBalance, WalletDef
from perkamo.program.outcome import Delta, LevelState, Settlement, Unlocked
from perkamo.program.perks import level_perks_boosts
from perkamo.program.settling import profile_now, settle


@dataclass(frozen=True, slots=True)
class EventRecord:
    """What returning an event needs to know of it: when it occurred (its lots' dates) and,
    per wallet, what it changed in the balance and what went into pending lots."""

    transaction_id: str
    occurred_at: datetime
    delta: Mapping[str, Decimal]
    pending: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class EventReturn:
    delta: list[Delta]  # balance changes
    pending: list[Delta]  # pending amounts taken back (negative)
    shortfall: list[Delta]  # what a wallet could not give back
    leveled_down: bool
    unlocked: list[Unlocked]  # settling's, and a refund's perk thresholds
    wallet_state: dict[str, Decimal]
    level: LevelState | None
    settled: Settlement


@dataclass(slots=True)
class _Taken:
    balance: Decimal = ZERO
    pending: Decimal = ZERO
    shortfall: Decimal = ZERO


def reverse_event(
    state: ProfileState,
    record: EventRecord,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
) -> tuple[ProfileState, EventReturn]:
    """Take back what the event gave, on the profile settled at ``received_at``."""
    with localcontext(DECIMALS):
        level_before = level_number(state, program)
        run = evaluation_of(state, program, received_at, traits)
        settled = settle(run.state, program, received_at, traits)
        now = profile_now(run.state, received_at)
        delta: list[Delta] = []
        pending: list[Delta] = []
        shortfall: list[Delta] = []
        for wallet in program.wallets:
            given = record.delta.get(wallet.key, ZERO) + record.pending.get(wallet.key, ZERO)
            if given == 0:
                continue
            w = run.state.wallets.setdefault(wallet.key, WalletBalance())
            if given < 0:
                if not within(w.balance + w.pending - given):  # bounded like an adjustment
                    raise SupportRefused(
                        Code.VALIDATION_ERROR,
                        "Returning the event would take the balance outside ±10^15.",
                        details=[
                            {"path": "transaction_id", "message": "the result is out of range"}
                        ],
                    )
                _refund(w, wallet, -given, record.transaction_id, now)
                delta.append(Delta(wallet.key, number(-given, wallet.precision)))
                continue
            taken = _take_back(w, wallet, record, given, now)
            for found, out in ((-taken.balance, delta), (-taken.pending, pending),
                               (taken.shortfall, shortfall)):  # fmt: skip
                if found != 0:
                    out.append(Delta(wallet.key, number(found, wallet.precision)))
        level_perks_boosts(run)
        return run.state, EventReturn(
            delta=delta,
            pending=pending,
            shortfall=shortfall,
            leveled_down=level_number(run.state, program) < level_before,
            unlocked=settled.unlocked + run.unlocked,
            wallet_state=wallet_state(run.state, program),
            level=level_state(run.state, program),
            settled=settled,
        )


def _take_back(
    w: WalletBalance, wallet: WalletDef, record: EventRecord, given: Decimal, now: datetime
) -> _Taken:
    taken = _Taken()
    at_once = record.delta.get(wallet.key, ZERO)  # a debt it paid, or all without pending
    rest, added = given, given  # ``added``: what the event added to ``earned``
    if wallet.has_lots:
        index, available, expires = event_lot(w, wallet, record.occurred_at, now)
        waiting = wallet.pending_days > 0 and available > now
        never = expires is not None and expires <= available  # expired before available
        if waiting or (never and wallet.pending_days > 0):
            added = max(at_once, ZERO)
        if index is not None:
            share = min(rest, w.lots[index].remaining)
            lot = take(w, index, share)
            rest -= share
            if lot.pending:
                w.pending -= share
                taken.pending += share
            else:
                w.balance -= share
                taken.balance += share
        if rest > 0 and expires is not None and expires <= now:
            rest -= expired_share(w, expires, rest)
    if rest > 0:  # spent meanwhile: taken from the wallet in spending order
        has = max(w.balance, ZERO)
        paying = rest if wallet.allow_negative else min(rest, has)
        if wallet.has_lots:
            spend(w, min(paying, has))
        w.balance -= paying
        taken.balance += paying
        taken.shortfall = rest - paying
    w.earned = max(w.earned - added, ZERO)
    w.deducted += taken.balance
    return taken


def _refund(w: WalletBalance, wallet: WalletDef, amount: Decimal, tx: str, now: datetime) -> None:
    """A negative change given back: available at once, not raising ``earned``."""
    if wallet.has_lots:
        add_available(w, new_lot(wallet, "refund:" + tx, amount, now, at_once=True))
    else:
        w.balance += amount
    w.deducted = max(w.deducted - amount, ZERO)
