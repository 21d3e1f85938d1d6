"""``GET /v1/profile/{user_id}``: the profile document, rendered by a pure function from the
stored state, the program and the server's clock at read time (passed in). The state is
shown settled at that time (pending points released, points expired) without writing it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from perkamo.http.responses import (
    AchievementInProgress,
    Achievements,
    ActiveBoost,
    CompletedAchievement,
    CriterionProgress,
    Expiring,
    NextPerk,
    OpenAchievement,
    PerkEntry,
    ProfileDocument,
    Progress,
    RecentAdjustment,
    RecentEvent,
    RecentRedemption,
    StreakEntry,
    WalletDetails,
)
from perkamo.profiles.answers import level_progress
from perkamo.profiles.commands import ProfileView
from perkamo.profiles.history import HistoryEvent, HistoryRedemption
from perkamo.program import ProfileState, Program, settle_at
from perkamo.program.achievements import criterion_current
from perkamo.program.amounts import number, plain, wallet_state
from perkamo.program.json_walk import JsonObject
from perkamo.program.levels import level_number, level_state
from perkamo.program.model import WalletBalance
from perkamo.program.perks import trigger_progress
from perkamo.program.rules import boost_applies
from perkamo.program.streaks import period_start
from perkamo.program.timefmt import format_rfc3339

_NUMERIC_TRIGGERS = ("points_threshold", "level_reached", "event_count", "streak")
EXPIRING_LISTED = 3
ZERO = Decimal(0)


def profile_document(
    space_slug: str, user_id: str, view: ProfileView, program: Program, now: datetime
) -> ProfileDocument:
    state, _ = settle_at(view.state, program, now, view.traits)
    level = level_number(state, program)
    return ProfileDocument(
        tenant=space_slug,
        user_id=user_id,
        traits=view.traits,
        wallets=wallet_state(state, program),
        wallet_details=wallet_details(state, program),
        level=level_progress(level_state(state, program)),
        perks=_perks(state, program),
        next_perks=_next_perks(state, program, level, view.traits),
        achievements=_achievements(state, program),
        flags=_flags(state, program, level),
        events=[_recent_event(e) for e in view.recent_events],
        redemptions=[_recent_redemption(r) for r in view.recent_redemptions],
        adjustments=[
            RecentAdjustment(
                a.adjustment_id,
                a.transaction_id,
                a.wallet,
                a.amount,
                a.reason,
                a.actor,
                format_rfc3339(a.created_at),
            )  # fmt: skip
            for a in view.recent_adjustments
        ],
        streaks=_streaks(state, program, now),
        active_boosts=_active_boosts(state, program, now, view.traits),
        created_at=format_rfc3339(view.created_at),
        updated_at=format_rfc3339(view.updated_at),
    )


def _recent_event(e: HistoryEvent) -> RecentEvent:
    entry = RecentEvent(e.event, e.transaction_id, format_rfc3339(e.occurred_at), e.delta, e.source)
    if e.reversed_at is not None:
        entry.status, entry.reversed_at = "reversed", format_rfc3339(e.reversed_at)
    return entry


def wallet_details(state: ProfileState, program: Program) -> dict[str, WalletDetails]:
    """Every configured wallet's figures; ``expiring``: the available points by expiry
    date, the three soonest (docs/program.md "Points that wait and points that expire")."""
    details = {}
    for wallet in program.wallets:
        w = state.wallets.get(wallet.key) or WalletBalance()
        expiring: dict[datetime, Decimal] = {}
        for lot in w.lots:
            if not lot.pending and lot.expires_at is not None and lot.remaining > 0:
                expiring[lot.expires_at] = expiring.get(lot.expires_at, ZERO) + lot.remaining
        p = wallet.precision
        details[wallet.key] = WalletDetails(
            balance=number(w.balance, p),
            pending=number(w.pending, p),
            earned=number(w.earned, p),
            spent=number(w.spent, p),
            expired=number(w.expired, p),
            expiring=[
                Expiring(number(expiring[at], p), format_rfc3339(at))
                for at in sorted(expiring)[:EXPIRING_LISTED]
            ],
        )
    return details


def _recent_redemption(r: HistoryRedemption) -> RecentRedemption:
    reversed_at = None if r.reversed_at is None else format_rfc3339(r.reversed_at)
    return RecentRedemption(
        r.reward_key,
        r.transaction_id,
        format_rfc3339(r.redeemed_at),
        r.cost,
        r.effect,
        "redeemed" if reversed_at is None else "reversed",
        reversed_at,
    )


def _perks(state: ProfileState, program: Program) -> list[PerkEntry]:
    configured = {p.key: p for p in program.perks}
    unlocked = sorted(
        ((key, perk) for key, perk in state.perks.items() if key in configured),
        key=lambda item: item[1].unlocked_at,
    )
    return [
        PerkEntry(
            key,
            configured[key].name,
            configured[key].description,
            format_rfc3339(perk.unlocked_at),
            {**configured[key].metadata, "trigger": perk.trigger},
        )
        for key, perk in unlocked
    ]


def _next_perks(
    state: ProfileState, program: Program, level: int, traits: JsonObject
) -> list[NextPerk]:
    """Numeric triggers closest first (ties in configuration order), then the others."""
    numeric: list[tuple[Decimal, int, NextPerk]] = []
    others: list[NextPerk] = []
    for index, perk in enumerate(program.perks):
        if perk.key in state.perks:
            continue
        entry = NextPerk(perk.key, perk.name, perk.description)
        progress = trigger_progress(perk, state, program, level, traits)
        if perk.trigger.type in _NUMERIC_TRIGGERS and not isinstance(progress, bool):
            current, target = progress
            entry.progress = Progress(plain(current), plain(target))
            ratio = current / target if target else Decimal(0)
            numeric.append((-ratio, index, entry))
        else:
            others.append(entry)
    return [entry for _, _, entry in sorted(numeric, key=lambda t: (t[0], t[1]))] + others


def _achievements(state: ProfileState, program: Program) -> Achievements:
    listed = Achievements([], [], [])
    done = {k for k, a in state.achievements.items() if a.times > 0}
    for ach in program.achievements:
        current = state.achievements.get(ach.key)
        if current is not None and current.times > 0:
            assert current.completed_at is not None
            completed_at = format_rfc3339(current.completed_at)
            listed.completed.append(
                CompletedAchievement(ach.key, ach.name, completed_at, current.times)
            )
            if not ach.repeatable:
                continue
        if not all(r in done for r in ach.requires):
            continue
        progress = current.progress if current is not None else []
        values = [
            criterion_current(c.kind, progress[i]) if i < len(progress) else Decimal(0)
            for i, c in enumerate(ach.criteria)
        ]
        if any(v > 0 for v in values):
            criteria = [
                CriterionProgress(i, plain(v), plain(c.target))
                for i, (c, v) in enumerate(zip(ach.criteria, values, strict=True))
            ]
            listed.in_progress.append(AchievementInProgress(ach.key, ach.name, criteria))
        elif current is None or current.times == 0:
            listed.unlocked.append(OpenAchievement(ach.key, ach.name, ach.description))
    return listed


def _flags(state: ProfileState, program: Program, level: int) -> dict[str, dict[str, bool]]:
    has_levels = program.leveling is not None
    return {
        "levels": {f"level_{level}": True} if has_levels else {},
        "has_level_at_least": (
            {f"level_{k}": True for k in range(1, level + 1)} if has_levels else {}
        ),
        "perks": {p.key: True for p in program.perks if p.key in state.perks},
    }


def _streaks(state: ProfileState, program: Program, now: datetime) -> list[StreakEntry]:
    result = []
    for streak in program.streaks:
        st = state.streaks.get(streak.key)
        if st is None or st.last_period is None:
            continue
        if st.period != streak.period or st.timezone != streak.timezone:
            continue  # restarted by a configuration change; nothing counted since
        this_period = period_start(streak, now)
        step = timedelta(days=7 if streak.period == "week" else 1)
        if st.last_period >= this_period:
            status, current = "active", st.current
        elif this_period - st.last_period == step:
            status, current = "at_risk", st.current
        else:
            status, current = "broken", 0
        result.append(
            StreakEntry(
                streak.key,
                streak.name,
                streak.period,
                current,
                st.longest,
                st.last_period.isoformat(),
                status,
            )  # fmt: skip
        )
    return result


def _active_boosts(
    state: ProfileState, program: Program, now: datetime, traits: JsonObject
) -> list[ActiveBoost]:
    scope = {"context": {}, "traits": traits}
    result = []
    for boost in program.boosts:
        if not boost_applies(boost, state, now, scope):
            continue
        scheduled = boost.ends_at is not None
        expires = boost.ends_at if scheduled else state.boosts[boost.key].expires_at
        assert expires is not None
        result.append(
            ActiveBoost(
                key=boost.key,
                name=boost.name,
                multiplier=plain(boost.multiplier),
                wallets=sorted(boost.wallets) if boost.wallets is not None else None,
                events=sorted(boost.events) if boost.events is not None else None,
                source="schedule" if scheduled else "granted",
                expires_at=format_rfc3339(expires),
            )
        )
    return result
