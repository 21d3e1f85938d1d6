"""Step 6: the summed awards applied per wallet, clamped where negatives are not allowed
(docs/program.md, "Wallet bookkeeping")."""

from __future__ import annotations

from decimal import Decimal

from perkamo.program.amounts import number, plain
from perkamo.program.evaluation import Award, Evaluation
from perkamo.program.model import Program, WalletBalance
from perkamo.program.outcome import BoostApplied, BreakdownEntry, Delta


def apply_awards(run: Evaluation) -> tuple[list[Delta], list[BreakdownEntry]]:
    """(delta, clamps): one delta per wallet that changed, in configuration order."""
    nets: dict[str, Decimal] = {}
    for award in run.awards:
        nets[award.wallet] = nets.get(award.wallet, Decimal(0)) + award.amount
    delta: list[Delta] = []
    clamps: list[BreakdownEntry] = []
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
        balance.balance = new
        if applied > 0:
            balance.earned += applied
        else:
            balance.deducted -= applied
        delta.append(Delta(wallet.key, number(applied, wallet.precision)))
    return delta, clamps


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
