"""Steps 8 and 9: perk triggers on the new state, and the boosts that perks, levels and
streak milestones grant (docs/program.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from perkamo.program.bounds import after
from perkamo.program.evaluation import Evaluation
from perkamo.program.levels import level_number
from perkamo.program.model import (
    BoostDef,
    GrantedBoost,
    PerkDef,
    ProfileState,
    Program,
    UnlockedPerk,
    WalletBalance,
)
from perkamo.program.outcome import Unlocked
from perkamo.program.paths import holds, lookup


def trigger_progress(
    perk: PerkDef, state: ProfileState, program: Program, level: int, traits: Mapping[str, object]
) -> tuple[Decimal, Decimal] | bool:
    """(current, target) for numeric triggers; a boolean for the others."""
    t = perk.trigger
    if t.type == "points_threshold":
        balance = state.wallets.get(t.wallet or "") or WalletBalance()
        value = balance.balance if t.basis == "balance" else balance.earned
        return value, Decimal(t.amount or 0)
    if t.type == "level_reached":
        return Decimal(level), Decimal(t.level or 0)
    if t.type == "event_count":
        return Decimal(state.perk_counts.get(perk.key, 0)), Decimal(t.count or 0)
    if t.type == "streak":
        streak = state.streaks.get(t.streak or "")
        return Decimal(streak.current if streak else 0), Decimal(t.length or 0)
    if t.type == "achievement_completed":
        achieved = state.achievements.get(t.achievement or "")
        return achieved is not None and achieved.times > 0
    assert t.path is not None and t.op is not None
    return holds(lookup({"traits": traits}, t.path), t.op, t.value)


def trigger_holds(
    perk: PerkDef, state: ProfileState, program: Program, level: int, traits: Mapping[str, object]
) -> bool:
    progress = trigger_progress(perk, state, program, level, traits)
    if isinstance(progress, bool):
        return progress
    return progress[0] >= progress[1]


def unlock_perks(run: Evaluation, level: int) -> None:
    for perk in run.program.perks:
        if perk.key in run.state.perks:
            continue
        if trigger_holds(perk, run.state, run.program, level, run.scope["traits"]):
            run.state.perks[perk.key] = UnlockedPerk(run.occurred, dict(perk.trigger_raw))
            run.state.perk_counts.pop(perk.key, None)
            run.new_perks.add(perk.key)
            run.unlocked.append(Unlocked("perk", perk.key, perk.name))


def grant_boosts(run: Evaluation) -> None:
    for boost in run.program.boosts:
        g = boost.grant
        if g is None or boost.duration_seconds is None:
            continue
        fired = (
            (g.on == "perk" and g.perk in run.new_perks)
            or (g.on == "level" and g.level in run.new_levels)
            or (g.on == "streak_milestone" and (g.streak, g.length) in run.milestones)
        )
        if fired:
            grant_boost(run.state, boost, run.occurred)
            run.unlocked.append(Unlocked("boost", boost.key, boost.name))


def level_perks_boosts(run: Evaluation) -> int:
    """Steps 7–9 on the run's state after its balances changed: the level (new levels
    reached are remembered), perk triggers, and the boosts perks and levels grant. Returns
    the level."""
    level_after = level_number(run.state, run.program)
    if level_after > run.state.max_level:
        run.new_levels.update(range(run.state.max_level + 1, level_after + 1))
        run.state.max_level = level_after
    unlock_perks(run, level_after)
    grant_boosts(run)
    return level_after


def unlock_and_grant(run: Evaluation) -> list[Unlocked]:
    """Steps 8–9 on the run's current state; returns everything unlocked so far."""
    unlock_perks(run, level_number(run.state, run.program))
    grant_boosts(run)
    return run.unlocked


def grant_boost(state: ProfileState, boost: BoostDef, moment: datetime) -> None:
    """Grant (or extend) a boost: it applies to events in ``[granted_at, expires_at)``."""
    assert boost.duration_seconds is not None
    expires = after(moment, boost.duration_seconds)
    current = state.boosts.get(boost.key)
    if current is not None and current.expires_at > moment:
        state.boosts[boost.key] = GrantedBoost(
            min(current.granted_at, moment), max(current.expires_at, expires)
        )
    else:
        state.boosts[boost.key] = GrantedBoost(moment, expires)
