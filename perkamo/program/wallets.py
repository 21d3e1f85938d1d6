"""Step 6: the summed awards applied per wallet, clamped where negatives are not allowed
(docs/program.md, "Wallet bookkeeping")."""

from __future__ import annotations

from decimal import Decimal

from perkamo.program.amounts import number, plain
from perkamo.program.evaluation import Award, Evaluation
from perkamo.program.lots import ZERO, add_pending, new_lot, pay_debt, place, spend
from perkamo.program.model import Program, WalletBalance, WalletDef
from perkamo.program.outcome import BoostApplied, BreakdownEntry, Delta


def apply_awards(run: Evaluation) -> tuple[list[Delta], list[BreakdownEntry], list[Delta]]:
    """(delta, clamps, pending): one delta per wallet whose balance changed, in
    configuration order; in a wallet with lots, a positive change creates a lot (pending
    for ``pending_days``: then in ``pending``, not in ``delta``) and a negative one spends
    the available lots."""
    nets: dict[str, Decimal] = {}
    for award in run.awards:
        nets[award.wallet] = nets.get(award.wallet, Decimal(0)) + award.amount
    delta: list[Delta] = []
    clamps: list[BreakdownEntry] = []
    pending: list[Delta] = []
    for wallet in run.program.wallets:
        if wallet.key not in nets:
            continue
        requested = nets[wallet.key]
        balance = run.state.wallets.setdefault(wallet.key, WalletBalance())
        new = balance.balance + requested
        if not wallet.allow_negative and requested < 0 and new < 0:
            new = min(balance.balance, Decimal(0)) if balance.balance < 0 else Decimal(0)
        applied = new - balance.balance
        if applied != requested:
            clamps.append(
                BreakdownEntry(
                    type="clamp",
                    wallet=wallet.key,
                    requested=number(requested, wallet.precision),
                    applied=number(applied, wallet.precision),
                )
            )
        if applied == 0:
            continue
        if wallet.has_lots:
            applied, waiting = _into_lots(run, wallet, balance, applied)
            if waiting:
                pending.append(Delta(wallet.key, number(waiting, wallet.precision)))
            if applied == 0:
                continue
        else:
            balance.balance = new
            if applied > 0:
                balance.earned += applied
            else:
                balance.deducted -= applied
        delta.append(Delta(wallet.key, number(applied, wallet.precision)))
    return delta, clamps, pending


def _into_lots(
    run: Evaluation, wallet: WalletDef, w: WalletBalance, applied: Decimal
) -> tuple[Decimal, Decimal]:
    """An applied net change in a wallet with lots: (its balance change, what went into a
    pending lot). A positive change pays a debt first; the rest is a lot earned at the
    event's ``occurred_at`` (``earned`` grows once it is available)."""
    if applied < 0:
        spend(w, -applied)
        w.balance += applied
        w.deducted -= applied
        return applied, ZERO
    paid = pay_debt(w, applied)
    w.earned += paid
    rest = applied - paid
    if rest == 0:
        return paid, ZERO
    at_once = wallet.pending_days == 0
    lot = new_lot(wallet, run.transaction_id, rest, run.occurred, at_once=at_once)
    run.lots_made = True
    if not at_once:
        add_pending(w, lot)
        return paid, rest
    w.balance += rest
    w.earned += rest
    place(w, lot)
    return applied, ZERO


def award_entry(award: Award, program: Program) -> BreakdownEntry:
    """One award in the breakdown: which rule, milestone or achievement, program version
    and boost produced it."""
    wallet = program.wallet(award.wallet)
    assert wallet is not None
    module = "achievements" if award.source == "achievement" else "events"
    entry = BreakdownEntry(
        source=award.source,
        key=award.key,
        wallet=award.wallet,
        amount=number(award.amount, wallet.precision),
        program_version=program.versions.get(module),
    )
    if award.boosts:
        entry.boost = BoostApplied(
            plain(award.factor), award.boosts, program.versions.get("boosts")
        )
    return entry
