"""The answers to a profile's writes, as the API sends them — and as the event log and the
redemptions keep them: a retried transaction id is answered with the original verbatim, so
the answer is built here, before the commit, from the engine's own outcome (whose names are
the engine's: ``next_level_at`` here becomes the wire's ``nextLevelAt``). The HTTP layer's
route table and OpenAPI document use these same Structs (``perkamo/http/responses.py``)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from perkamo.program.amounts import number, wallet_state
from perkamo.program.json_walk import JsonObject
from perkamo.program.levels import level_state
from perkamo.program.model import ProfileState, Program
from perkamo.program.outcome import (
    BreakdownEntry,
    Delta,
    LevelState,
    Outcome,
    Redemption,
    Settlement,
    Skipped,
    Unlocked,
)


class Shape(msgspec.Struct, forbid_unknown_fields=True):
    """A response object: every field it may carry is declared here."""


class LevelProgress(
    Shape, rename={"next_level_at": "nextLevelAt", "current_level_at": "currentLevelAt"}
):
    wallet: str
    level: int
    current: Decimal
    next_level_at: Decimal | None
    current_level_at: Decimal
    progress: Decimal


class Settled(Shape):
    # What settling at the write's *now* released and expired (amounts at the wallet's
    # precision), and the level changes and unlocks it caused (docs/program.md "Time moves state").
    released: list[Delta] = []
    expired: list[Delta] = []
    leveled_up: bool = False
    unlocked: list[Unlocked] = []


class Changes(Shape):
    """What every event answer carries, applied or not."""

    applied: bool
    duplicate: bool
    delta: list[Delta]
    leveled_up: bool
    unlocked: list[Unlocked]
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None


class EventOutcome(Changes):
    event_id: str
    skipped: list[Skipped]
    breakdown: list[BreakdownEntry]
    program_versions: dict[str, str | None]
    # (Defaults: answers stored before lots existed are answered again with them.)
    pending: list[Delta] = []
    settled: Settled = msgspec.field(default_factory=Settled)
    # True on the answer to an id another system applied (imported at a cut-over).
    imported: bool | msgspec.UnsetType = msgspec.UNSET


class RewardRef(Shape):
    key: str
    name: str


class RedeemResponse(Shape):
    redeemed: bool
    duplicate: bool
    reward: RewardRef
    cost: Delta
    delta: list[Delta]
    effect: JsonObject
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    redemption_id: str
    program_versions: dict[str, str | None]
    settled: Settled = msgspec.field(default_factory=Settled)
    imported: bool | msgspec.UnsetType = msgspec.UNSET  # as for an event


class AdjustResponse(Shape):
    adjusted: bool
    duplicate: bool
    adjustment_id: str
    delta: list[Delta]
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    settled: Settled = msgspec.field(default_factory=Settled)


class ReversedRedemption(Shape):
    transaction_id: str
    reward_key: str
    redeemed_at: str
    cost: Delta
    effect: JsonObject
    status: str  # reversed
    reversed_at: str
    reason: str
    actor: str | None


class ReverseResponse(Shape):
    reversed: bool
    duplicate: bool
    delta: list[Delta]
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    redemption: ReversedRedemption
    settled: Settled = msgspec.field(default_factory=Settled)


class ReversedEvent(Shape):
    transaction_id: str
    event: str
    occurred_at: str
    status: str  # reversed
    reversed_at: str
    reason: str
    actor: str | None
    source: str = "server"  # "client": an event a browser sent


class EventReverseResponse(Shape):
    reversed: bool
    duplicate: bool
    delta: list[Delta]
    pending: list[Delta]
    shortfall: list[Delta]
    leveled_down: bool
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None
    event: ReversedEvent
    settled: Settled


class TickAnswer(Shape):
    """What a tick of the sweeper settled (kept in the tick log; not an API answer)."""

    ticked: bool
    duplicate: bool
    due_at: str
    settled: Settled
    wallet_state: dict[str, Decimal]
    level: LevelProgress | None


def level_progress(level: LevelState | None) -> LevelProgress | None:
    if level is None:
        return None
    return LevelProgress(
        level.wallet,
        level.level,
        level.current,
        level.next_level_at,
        level.current_level_at,
        level.progress,
    )


def settled_answer(settlement: Settlement, program: Program) -> Settled:
    """What settling changed, as answers carry it: per wallet in configuration order, at
    the wallet's precision."""
    if settlement.empty:
        return Settled()
    return Settled(
        released=_per_wallet(settlement.released, program),
        expired=_per_wallet(settlement.expired, program),
        leveled_up=settlement.leveled_up,
        unlocked=settlement.unlocked,
    )


def _per_wallet(amounts: dict[str, Decimal], program: Program) -> list[Delta]:
    return [
        Delta(w.key, number(amounts[w.key], w.precision))
        for w in program.wallets
        if amounts.get(w.key)
    ]


def event_answer(outcome: Outcome, event_id: str, program: Program) -> EventOutcome:
    versions = program.versions
    return EventOutcome(
        applied=True,
        duplicate=False,
        delta=outcome.delta,
        leveled_up=outcome.leveled_up,
        unlocked=outcome.unlocked,
        wallet_state=outcome.wallet_state,
        level=level_progress(outcome.level),
        event_id=event_id,
        skipped=outcome.skipped,
        breakdown=outcome.breakdown,
        program_versions=versions,
        pending=outcome.pending,
        settled=settled_answer(outcome.settled, program),
    )


def redeem_answer(redemption: Redemption, redemption_id: str, program: Program) -> RedeemResponse:
    versions = program.versions
    return RedeemResponse(
        redeemed=True,
        duplicate=False,
        reward=RewardRef(redemption.reward_key, redemption.reward_name),
        cost=redemption.cost,
        delta=[Delta(redemption.cost.wallet, -redemption.cost.amount)],
        effect=redemption.effect,
        unlocked=redemption.unlocked,
        leveled_up=redemption.leveled_up,
        wallet_state=redemption.wallet_state,
        level=level_progress(redemption.level),
        redemption_id=redemption_id,
        program_versions=versions,
        settled=settled_answer(redemption.settled, program),
    )


def imported_event_answer(known_id: str, state: ProfileState, program: Program) -> EventOutcome:
    """The answer to an event whose id another system applied (docs/api.md (moving a
    Space)): a duplicate that changed nothing here, with the profile's balances and level as
    committed."""
    return EventOutcome(
        applied=True, duplicate=True, delta=[], leveled_up=False, unlocked=[],
        wallet_state=wallet_state(state, program),
        level=level_progress(level_state(state, program)), event_id=known_id, skipped=[],
        breakdown=[], program_versions=program.versions, imported=True,
    )  # fmt: skip


def imported_redeem_answer(
    known_id: str, reward_key: str, state: ProfileState, program: Program
) -> RedeemResponse:
    """The answer to a redemption whose id another system applied: like the duplicate of a
    successful redemption of that reward, charging nothing (``delta`` is empty)."""
    reward = next((r for r in program.rewards if r.key == reward_key), None)
    if reward is None:  # not in this program: named by its key, at no cost
        first = program.wallets[0].key if program.wallets else ""
        ref, cost, effect = RewardRef(reward_key, reward_key), Delta(first, Decimal(0)), {}
    else:
        wallet = program.wallet(reward.cost_wallet)
        precision = wallet.precision if wallet is not None else 0
        ref = RewardRef(reward.key, reward.name)
        cost, effect = Delta(reward.cost_wallet, number(reward.cost, precision)), reward.effect
    return RedeemResponse(
        redeemed=True, duplicate=True, reward=ref, cost=cost, delta=[], effect=effect,
        unlocked=[], leveled_up=False, wallet_state=wallet_state(state, program),
        level=level_progress(level_state(state, program)), redemption_id=known_id,
        program_versions=program.versions, imported=True,
    )  # fmt: skip


# Exact decimals everywhere, also inside ``effect`` (any JSON): verbatim means verbatim.
_event_decoder = msgspec.json.Decoder(EventOutcome, float_hook=Decimal)
_redeem_decoder = msgspec.json.Decoder(RedeemResponse, float_hook=Decimal)


def stored_event_answer(raw: bytes | str) -> EventOutcome:
    """An answer as the event log keeps it (for a duplicate, answered verbatim)."""
    return _event_decoder.decode(raw)


def stored_redeem_answer(raw: bytes | str) -> RedeemResponse:
    return _redeem_decoder.decode(raw)


_adjust_decoder = msgspec.json.Decoder(AdjustResponse, float_hook=Decimal)
_reverse_decoder = msgspec.json.Decoder(ReverseResponse, float_hook=Decimal)


def stored_adjust_answer(raw: bytes | str) -> AdjustResponse:
    return _adjust_decoder.decode(raw)


def stored_reverse_answer(raw: bytes | str) -> ReverseResponse:
    return _reverse_decoder.decode(raw)
