"""Redeeming a reward: a pure function like ``apply`` (no I/O, no clock reads)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import localcontext

from perkamo.errors import Code, PerkamoError
from perkamo.program.amounts import number, wallet_state
from perkamo.program.evaluation import DECIMALS, PER_DAY_KEPT, Evaluation, copy_state
from perkamo.program.levels import level_number, level_state
from perkamo.program.lots import spend
from perkamo.program.model import (
    ProfileState,
    Program,
    RedemptionCounter,
    RewardDef,
    TakenPart,
    WalletBalance,
)
from perkamo.program.outcome import Delta, Redemption, Unlocked
from perkamo.program.perks import grant_boost, unlock_and_grant
from perkamo.program.settling import settle


class RedemptionRefused(PerkamoError):
    """A business rule refused the redemption; nothing changes and the id is not consumed."""


def redeem(
    state: ProfileState,
    reward_key: str,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
    transaction_id: str = "",
) -> tuple[ProfileState, Redemption]:
    """Subtract the reward's cost and return ``(new state, what it changed)``. The profile
    is settled at ``received_at`` first; in a wallet with lots the cost is taken from the
    available lots in spending order, and what it took from each is recorded under the
    redemption's ``transaction_id`` (its reversal gives it back).

    Raises RedemptionRefused: unknown_reward, requirements_not_met, redemption_limit_reached,
    insufficient_balance (checked in that order, on the settled profile).
    """
    with localcontext(DECIMALS):
        level_before = level_number(state, program)
        run = Evaluation(
            state=copy_state(state),
            program=program,
            event="",
            occurred=received_at,
            scope={"context": {}, "traits": traits},
        )
        settled = settle(run.state, program, received_at, traits)
        reward = _redeemable(run.state, reward_key, program, received_at)
        wallet = program.wallet(reward.cost_wallet)
        assert wallet is not None  # validated at activation
        spent = run.state.wallets.setdefault(wallet.key, WalletBalance())
        if wallet.has_lots:
            record_takes(run.state, transaction_id, spend(spent, reward.cost))
        spent.balance -= reward.cost
        spent.spent += reward.cost
        counter = run.state.redemptions.setdefault(reward.key, RedemptionCounter())
        counter.count += 1
        day = received_at.date().isoformat()
        counter.per_day[day] = counter.per_day.get(day, 0) + 1
        for old in sorted(counter.per_day)[:-PER_DAY_KEPT]:
            del counter.per_day[old]
        if reward.effect.get("type") == "boost":
            boost = next(b for b in program.boosts if b.key == reward.effect.get("boost"))
            grant_boost(run.state, boost, received_at)
            run.unlocked.append(Unlocked("boost", boost.key, boost.name))
        unlocked = settled.unlocked + unlock_and_grant(run)
        return run.state, Redemption(
            reward_key=reward.key,
            reward_name=reward.name,
            cost=Delta(wallet.key, number(reward.cost, wallet.precision)),
            effect=reward.effect,
            unlocked=unlocked,
            leveled_up=level_number(run.state, program) > level_before,
            wallet_state=wallet_state(run.state, program),
            level=level_state(run.state, program),
            settled=settled,
        )


TAKES_KEPT = 50  # redemptions whose lots a reversal gives back exactly


def record_takes(state: ProfileState, transaction_id: str, parts: list[TakenPart]) -> None:
    """What a redemption took from each lot, for its reversal: the latest TAKES_KEPT
    redemptions (an older one's reversal gives its cost back as one lot)."""
    if not transaction_id or not parts:
        return
    state.takes[transaction_id] = parts
    while len(state.takes) > TAKES_KEPT:
        del state.takes[next(iter(state.takes))]


def _redeemable(
    state: ProfileState, reward_key: str, program: Program, received_at: datetime
) -> RewardDef:
    """The reward, if this profile may redeem it now; else RedemptionRefused, checked in the
    documented order: unknown reward, requirements, limits, balance."""
    reward = next((r for r in program.rewards if r.key == reward_key and r.active), None)
    if reward is None:
        raise RedemptionRefused(Code.UNKNOWN_REWARD, f"There is no active reward {reward_key!r}.")
    level_before = level_number(state, program)
    if reward.level_at_least is not None and level_before < reward.level_at_least:
        raise RedemptionRefused(
            Code.REQUIREMENTS_NOT_MET,
            f"{reward.name} needs level {reward.level_at_least}; the profile is at level "
            f"{level_before}.",
        )
    missing = [p for p in reward.perks if p not in state.perks]
    if missing:
        raise RedemptionRefused(
            Code.REQUIREMENTS_NOT_MET, f"{reward.name} needs the perk {missing[0]!r}."
        )
    counter = state.redemptions.get(reward.key) or RedemptionCounter()
    day = received_at.date().isoformat()
    if reward.per_user is not None and counter.count >= reward.per_user:
        raise RedemptionRefused(
            Code.REDEMPTION_LIMIT_REACHED,
            f"{reward.name} can be redeemed {reward.per_user} time(s) per user.",
        )
    if (
        reward.per_user_per_day is not None
        and counter.per_day.get(day, 0) >= reward.per_user_per_day
    ):
        raise RedemptionRefused(
            Code.REDEMPTION_LIMIT_REACHED,
            f"{reward.name} can be redeemed {reward.per_user_per_day} time(s) per day.",
        )
    wallet = program.wallet(reward.cost_wallet)
    assert wallet is not None  # validated at activation
    balance = state.wallets.get(wallet.key, WalletBalance()).balance
    if balance < reward.cost:
        raise RedemptionRefused(
            Code.INSUFFICIENT_BALANCE,
            f"Not enough {wallet.name}: the balance is "
            f"{number(balance, wallet.precision)}, {reward.name} costs "
            f"{number(reward.cost, wallet.precision)}.",
        )

    return reward
