"""Amounts as the API writes them: at the wallet's precision, integral values without a
fraction or an exponent (``50``, never ``50.0`` or ``5E+1``)."""

from __future__ import annotations

from decimal import Decimal

from perkamo.program.model import ProfileState, Program


def number(value: Decimal, precision: int) -> Decimal:
    """A wallet amount: integral at precision 0, else exactly ``precision`` decimals."""
    if precision == 0:
        return Decimal(int(value))
    return value.quantize(Decimal(1).scaleb(-precision))


def plain(value: Decimal) -> Decimal:
    """An integral value without exponent (``2``, not ``2.0`` or ``1E+1``), else normalised."""
    return Decimal(int(value)) if value == value.to_integral_value() else value.normalize()


def wallet_state(state: ProfileState, program: Program) -> dict[str, Decimal]:
    """Every configured wallet's balance (0 when untouched)."""
    return {
        w.key: number(
            state.wallets[w.key].balance if w.key in state.wallets else Decimal(0), w.precision
        )
        for w in program.wallets
    }


def decimal_places(value: Decimal) -> int:
    """The decimal places of the value, not of its notation: ``150.0`` and ``1.5E+2`` have
    none, ``1.50`` has one. Exact for any finite value (no context rounding)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    zeros = 0
    for digit in reversed(digits):
        if digit != 0:
            break
        zeros += 1
    return max(0, -(exponent + zeros))
