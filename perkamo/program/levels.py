"""Step 7: levels are derived from a wallet's earned total or balance, so a changed leveling
module is reflected on the next read (docs/program.md)."""

from __future__ import annotations

from decimal import Decimal, localcontext

from perkamo.program.amounts import number, plain
from perkamo.program.evaluation import DECIMALS
from perkamo.program.model import ProfileState, Program
from perkamo.program.outcome import LevelState


def level_basis(state: ProfileState, program: Program) -> Decimal:
    assert program.leveling is not None
    balance = state.wallets.get(program.leveling.wallet)
    if balance is None:
        return Decimal(0)
    return balance.earned if program.leveling.basis == "earned" else balance.balance


def level_number(state: ProfileState, program: Program) -> int:
    if program.leveling is None:
        return 1
    value = level_basis(state, program)
    level = 1
    for lv in program.leveling.levels:
        if lv.at <= value:
            level = lv.level
    return level


def level_state(state: ProfileState, program: Program) -> LevelState | None:
    """The level and the progress towards the next one; None without a leveling module."""
    if program.leveling is None:
        return None
    with localcontext(DECIMALS):
        leveling = program.leveling
        wallet = program.wallet(leveling.wallet)
        assert wallet is not None
        value = level_basis(state, program)
        level = level_number(state, program)
        here = leveling.levels[level - 1]
        following = leveling.levels[level] if level < len(leveling.levels) else None
        if following is None:
            progress = Decimal(1)
        else:
            span = following.at - here.at
            progress = min(max((value - here.at) / span, Decimal(0)), Decimal(1))
            progress = progress.quantize(Decimal("0.001"))
        return LevelState(
            wallet=leveling.wallet,
            level=level,
            current=number(value, wallet.precision),
            next_level_at=None if following is None else number(following.at, wallet.precision),
            current_level_at=number(here.at, wallet.precision),
            progress=plain(progress),
        )
