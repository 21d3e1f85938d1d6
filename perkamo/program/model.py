"""The shapes the engine works on: the compiled program, a profile's state, an outcome."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec


class WalletBalance(msgspec.Struct, omit_defaults=True):
    balance: Decimal = Decimal(0)
    earned: Decimal = Decimal(0)
    deducted: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)


class ProfileState(msgspec.Struct, omit_defaults=True):
    """Everything the engine derives from a profile's history (stored as the snapshot)."""

    wallets: dict[str, WalletBalance] = {}


class Program(msgspec.Struct, frozen=True):
    """A Space's active program, compiled once per activation and shared by its actors.

    ``versions`` maps each module to its active version label (None: never uploaded).
    """

    versions: dict[str, str | None]
    wallets: tuple[str, ...] = ()


MODULES = ("events", "leveling", "wallets", "perks", "achievements", "boosts")
EMPTY_PROGRAM = Program(versions=dict.fromkeys(MODULES))


class Outcome(msgspec.Struct):
    """What one event changed, in the wire shape of the event response (API.md)."""

    delta: list[dict[str, Any]]
    leveled_up: bool
    unlocked: list[dict[str, str]]
    wallet_state: dict[str, Any]
    level: dict[str, Any] | None
    skipped: list[dict[str, str]] = []
    breakdown: list[dict[str, Any]] = []
