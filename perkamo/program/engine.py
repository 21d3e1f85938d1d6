"""The pure evaluation engine: ``apply(state, event, program, received_at)``.

No I/O, no clock reads, no randomness: the same event on the same state with the same program
always gives the same outcome, so profile state can be rebuilt by replaying the event log.
Arithmetic runs in a fixed decimal context (34 digits, half-even), so replay is exact.
The input state is never mutated; a new state is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

import msgspec

from perkamo.program.bounds import after, days_before, local_date, within
from perkamo.program.canonical import legacy_canonical_json
from perkamo.program.formula import FormulaInputError, evaluate
from perkamo.program.model import (
    AchievementState,
    AwardDef,
    BoostDef,
    ConditionDef,
    CriterionProgress,
    GrantedBoost,
    Outcome,
    PerkDef,
    ProfileState,
    Program,
    RuleCounter,
    RuleDef,
    StreakDef,
    StreakState,
    UnlockedPerk,
    WalletBalance,
)
from perkamo.program.paths import MISSING, holds, lookup

DECIMALS = Context(
    prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
PER_DAY_KEPT = 8
_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}
_state_encoder = msgspec.json.Encoder(decimal_format="number")
_state_decoder = msgspec.json.Decoder(ProfileState)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """The event as the engine sees it: ``traits`` are the profile's at that moment."""

    event: str
    context: Mapping[str, Any]
    occurred_at: datetime | None
    traits: Mapping[str, Any]


@dataclass(slots=True)
class _Award:
    source: str  # rule | streak_milestone | achievement
    key: str
    wallet: str
    amount: Decimal
    factor: Decimal
    boosts: list[str]


@dataclass(slots=True)
class _Run:
    """Scratch space of one evaluation."""

    state: ProfileState
    program: Program
    event: str
    occurred: datetime
    scope: dict[str, Any]
    awards: list[_Award] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    unlocked: list[dict[str, str]] = field(default_factory=list)
    milestones: set[tuple[str, int]] = field(default_factory=set)
    nets: dict[str, Decimal] = field(default_factory=dict)  # per wallet, awards so far
    new_perks: set[str] = field(default_factory=set)
    new_levels: set[int] = field(default_factory=set)


def copy_state(state: ProfileState) -> ProfileState:
    return _state_decoder.decode(_state_encoder.encode(state))


def apply(
    state: ProfileState, event: EngineEvent, program: Program, received_at: datetime
) -> tuple[ProfileState, Outcome]:
    """Evaluate one event (PROGRAM.md, "Evaluating one event", steps 2–10)."""
    with localcontext(DECIMALS):
        run = _Run(
            state=copy_state(state),
            program=program,
            event=event.event,
            occurred=event.occurred_at or received_at,
            scope={"context": event.context, "traits": event.traits},
        )
        level_before = level_number(run.state, program)
        _count(run)  # 2
        for rule in program.rules:  # 3
            if rule.event in (run.event, "*"):
                _rule(run, rule)
        _milestone_awards(run)  # 4
        _achievements(run)  # 5
        delta, clamps = _apply_awards(run)  # 6
        level_after = level_number(run.state, program)  # 7
        if level_after > run.state.max_level:
            run.new_levels.update(range(run.state.max_level + 1, level_after + 1))
            run.state.max_level = level_after
        _perks(run, level_after)  # 8
        _grants(run)  # 9
        breakdown = [_award_entry(a, program) for a in run.awards] + clamps
        outcome = Outcome(  # 10
            delta=delta,
            leveled_up=level_after > level_before,
            unlocked=run.unlocked,
            wallet_state=wallet_state(run.state, program),
            level=level_document(run.state, program),
            skipped=run.skipped,
            breakdown=breakdown,
        )
        return run.state, outcome


def apply_identify(
    state: ProfileState, traits: Mapping[str, Any], program: Program, received_at: datetime
) -> tuple[ProfileState, list[dict[str, str]]]:
    """What identify evaluates: perk triggers and the boosts they grant (steps 8–9), with the
    server's receive time as ``unlocked_at``."""
    with localcontext(DECIMALS):
        run = _Run(
            state=copy_state(state),
            program=program,
            event="",
            occurred=received_at,
            scope={"context": {}, "traits": traits},
        )
        return run.state, unlock_and_grant(run)


# -- step 2: counters and streaks ------------------------------------------------------------


def _count(run: _Run) -> None:
    for perk in run.program.perks:
        t = perk.trigger
        if t.type == "event_count" and t.event == run.event and perk.key not in run.state.perks:
            run.state.perk_counts[perk.key] = run.state.perk_counts.get(perk.key, 0) + 1
    for streak in run.program.streaks:
        if run.event in streak.events:
            length = _count_streak(run.state, streak, run.occurred)
            if length is not None and any(m[0] == length for m in streak.milestones):
                run.milestones.add((streak.key, length))


def period_start(streak: StreakDef, moment: datetime) -> date:
    local = local_date(moment, streak.zone)
    if streak.period == "week":
        return days_before(local, local.weekday())
    return local


def _count_streak(state: ProfileState, streak: StreakDef, occurred: datetime) -> int | None:
    """Count the event's period; returns the new ``current`` when it grew, else None."""
    st = state.streaks.get(streak.key)
    if st is None:
        st = state.streaks[streak.key] = StreakState(period=streak.period, timezone=streak.timezone)
    elif st.period != streak.period or st.timezone != streak.timezone:
        # A changed period or zone restarts the run; the longest run is kept.
        st.current, st.last_period = 0, None
        st.period, st.timezone = streak.period, streak.timezone
    start = period_start(streak, occurred)
    step = timedelta(days=7 if streak.period == "week" else 1)
    if st.last_period is not None and start <= st.last_period:
        return None  # late: already counted, or an earlier period that does not rewrite the run
    consecutive = st.last_period is not None and start - st.last_period == step
    st.current = st.current + 1 if consecutive else 1
    st.last_period = start
    st.longest = max(st.longest, st.current)
    return st.current


# -- step 3: earning rules -------------------------------------------------------------------


def conditions_hold(conditions: tuple[ConditionDef, ...], scope: Mapping[str, Any]) -> bool:
    return all(holds(lookup(scope, c.path), c.op, c.value) for c in conditions)


def _rule(run: _Run, rule: RuleDef) -> None:
    if not conditions_hold(rule.conditions, run.scope):
        return
    if rule.active_from is not None and run.occurred < rule.active_from:
        return
    if rule.active_until is not None and run.occurred >= rule.active_until:
        return
    counter = run.state.rules.get(rule.key) or RuleCounter()
    day = run.occurred.date().isoformat()  # occurred is UTC
    reason = None
    if rule.per_user is not None and counter.fired >= rule.per_user:
        reason = "per_user_limit"
    elif rule.per_user_per_day is not None:
        if (
            day not in counter.per_day
            and len(counter.per_day) >= PER_DAY_KEPT
            and day < min(counter.per_day)
        ):
            reason = "too_old"
        elif counter.per_day.get(day, 0) >= rule.per_user_per_day:
            reason = "per_day_limit"
    if reason is None and rule.cooldown_seconds is not None and counter.last_fired_at is not None:
        if run.occurred < after(counter.last_fired_at, rule.cooldown_seconds):
            reason = "cooldown"
    if reason is not None:
        run.skipped.append({"rule": rule.key, "reason": reason})
        return
    yielded = False
    for award in rule.awards:
        amount = _award_amount(run, award, "rule", rule.key)
        if amount is not None:
            yielded = True
    if not yielded:
        return
    counter.fired += 1
    if counter.last_fired_at is None or run.occurred > counter.last_fired_at:
        counter.last_fired_at = run.occurred
    if rule.per_user_per_day is not None:
        counter.per_day[day] = counter.per_day.get(day, 0) + 1
        for old in sorted(counter.per_day)[:-PER_DAY_KEPT]:
            del counter.per_day[old]
    run.state.rules[rule.key] = counter


def _award_amount(run: _Run, award: AwardDef, source: str, key: str) -> Decimal | None:
    """Amount → boost factor → rounding → bounds; records the award. None when the award is
    skipped (reported in ``skipped``): a formula input missing, non-numeric or outside the
    decimal context (``formula_input``), or a value or resulting balance outside ±10^15
    (``amount_out_of_range``). A skipped award is in neither ``delta`` nor ``breakdown``."""
    wallet = run.program.wallet(award.wallet)
    assert wallet is not None  # validated at activation
    if award.formula is not None:
        try:
            amount = evaluate(award.formula, run.scope)
        except (FormulaInputError, ArithmeticError):
            _skip(run, key, award.wallet, "formula_input")
            return None
    else:
        assert award.amount is not None
        amount = award.amount
    factor, boosts = Decimal(1), list[str]()
    if amount > 0:
        factor, boosts = boost_factor(run.program, run.state, run.event, wallet.key, run)
        amount = amount * factor
    if not within(amount):
        _skip(run, key, award.wallet, "amount_out_of_range")
        return None
    amount = amount.quantize(wallet.quantum, rounding=_ROUNDING[award.rounding])
    net = run.nets.get(wallet.key, Decimal(0)) + amount
    if not _keeps_bounds(run.state.wallets.get(wallet.key), net, wallet.allow_negative):
        _skip(run, key, award.wallet, "amount_out_of_range")
        return None
    run.nets[wallet.key] = net
    run.awards.append(_Award(source, key, wallet.key, amount, factor, boosts))
    return amount


def _skip(run: _Run, key: str, wallet: str, reason: str) -> None:
    run.skipped.append({"rule": key, "wallet": wallet, "reason": reason})


def _keeps_bounds(balance: WalletBalance | None, net: Decimal, allow_negative: bool) -> bool:
    """Whether this event's net change keeps the balance and the earned total in bounds
    (a balance clamped at zero cannot leave them downwards)."""
    current = balance or WalletBalance()
    new = current.balance + net
    if not allow_negative and new < 0:
        return True
    return within(new) and within(current.earned + max(net, Decimal(0)))


# -- boosts ----------------------------------------------------------------------------------


def boost_applies(
    boost: BoostDef, state: ProfileState, moment: datetime, scope: Mapping[str, Any]
) -> bool:
    if boost.starts_at is not None and boost.ends_at is not None:
        return boost.starts_at <= moment < boost.ends_at and conditions_hold(
            boost.conditions, scope
        )
    granted = state.boosts.get(boost.key)
    return granted is not None and granted.granted_at <= moment < granted.expires_at


def boost_factor(
    program: Program, state: ProfileState, event: str, wallet: str, run: _Run
) -> tuple[Decimal, list[str]]:
    applicable = [
        b
        for b in program.boosts
        if (b.wallets is None or wallet in b.wallets)
        and (b.events is None or event in b.events)
        and boost_applies(b, state, run.occurred, run.scope)
    ]
    if not applicable:
        return Decimal(1), []
    if program.stacking == "multiply":
        factor = Decimal(1)
        for b in applicable:
            factor *= b.multiplier
    else:
        factor = max(b.multiplier for b in applicable)
    return min(factor, program.max_multiplier), [b.key for b in applicable]


# -- steps 4 and 5: streak milestones, achievements ---------------------------------------------


def _milestone_awards(run: _Run) -> None:
    for streak in run.program.streaks:
        for length, awards in streak.milestones:
            if (streak.key, length) in run.milestones:
                run.unlocked.append(
                    {
                        "type": "streak_milestone",
                        "key": f"{streak.key}:{length}",
                        "name": streak.name,
                    }
                )
                for award in awards:
                    _award_amount(run, award, "streak_milestone", f"{streak.key}:{length}")


def _achievements(run: _Run) -> None:
    state = run.state
    completed_before = {k for k, a in state.achievements.items() if a.times > 0}
    for ach in run.program.achievements:
        if not all(r in completed_before for r in ach.requires):
            continue
        current = state.achievements.get(ach.key)
        if current is not None and current.times > 0 and not ach.repeatable:
            continue
        relevant = [
            i
            for i, c in enumerate(ach.criteria)
            if c.event == run.event and conditions_hold(c.conditions, run.scope)
        ]
        if not relevant:
            continue
        current = state.achievements.setdefault(ach.key, AchievementState())
        progress = current.progress[: len(ach.criteria)]
        progress += [CriterionProgress() for _ in range(len(ach.criteria) - len(progress))]
        current.progress = progress
        for i in relevant:
            criterion, p = ach.criteria[i], progress[i]
            if criterion.kind == "count":
                p.count += 1
            else:
                assert criterion.path is not None
                value = lookup(run.scope, criterion.path)
                if value is MISSING:
                    continue
                if criterion.kind == "distinct":
                    token = legacy_canonical_json(value).decode()  # stored tokens' form
                    if token not in p.values and len(p.values) < criterion.target:
                        p.values.append(token)
                elif isinstance(value, int | Decimal) and not isinstance(value, bool):
                    p.total += Decimal(value)
        if all(
            criterion_current(c.kind, p) >= c.target
            for c, p in zip(ach.criteria, progress, strict=True)
        ):
            current.times += 1
            current.completed_at = run.occurred
            if ach.repeatable:
                current.progress = [CriterionProgress() for _ in ach.criteria]
            run.unlocked.append({"type": "achievement", "key": ach.key, "name": ach.name})
            for award in ach.awards:
                _award_amount(run, award, "achievement", ach.key)


def criterion_current(kind: str, progress: CriterionProgress) -> Decimal:
    if kind == "count":
        return Decimal(progress.count)
    if kind == "distinct":
        return Decimal(len(progress.values))
    return progress.total


# -- step 6: wallets ---------------------------------------------------------------------------


def _apply_awards(run: _Run) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nets: dict[str, Decimal] = {}
    for award in run.awards:
        nets[award.wallet] = nets.get(award.wallet, Decimal(0)) + award.amount
    delta: list[dict[str, Any]] = []
    clamps: list[dict[str, Any]] = []
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
                {
                    "type": "clamp",
                    "wallet": wallet.key,
                    "requested": number(requested, wallet.precision),
                    "applied": number(applied, wallet.precision),
                }
            )
        if applied == 0:
            continue
        balance.balance = new
        if applied > 0:
            balance.earned += applied
        else:
            balance.deducted -= applied
        delta.append({"wallet": wallet.key, "amount": number(applied, wallet.precision)})
    return delta, clamps


def number(value: Decimal, precision: int) -> int | Decimal:
    """A wallet amount for JSON: an integer at precision 0, else at most ``precision``
    decimals."""
    if precision == 0:
        return int(value)
    return value.quantize(Decimal(1).scaleb(-precision))


def plain(value: Decimal) -> int | Decimal:
    """An integral decimal as an int (JSON ``2``, not ``2.0`` or ``1E+1``)."""
    return int(value) if value == value.to_integral_value() else value.normalize()


def wallet_state(state: ProfileState, program: Program) -> dict[str, int | Decimal]:
    return {
        w.key: number(
            state.wallets[w.key].balance if w.key in state.wallets else Decimal(0), w.precision
        )
        for w in program.wallets
    }


def _award_entry(award: _Award, program: Program) -> dict[str, Any]:
    wallet = program.wallet(award.wallet)
    assert wallet is not None
    module = "achievements" if award.source == "achievement" else "events"
    entry: dict[str, Any] = {
        "source": award.source,
        "key": award.key,
        "wallet": award.wallet,
        "amount": number(award.amount, wallet.precision),
        "program_version": program.versions.get(module),
    }
    if award.boosts:
        entry["boost"] = {
            "factor": plain(award.factor),
            "boosts": award.boosts,
            "program_version": program.versions.get("boosts"),
        }
    return entry


# -- step 7: levels ----------------------------------------------------------------------------


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


def level_document(state: ProfileState, program: Program) -> dict[str, Any] | None:
    """``{wallet, level, current, nextLevelAt, currentLevelAt, progress}`` or None."""
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
        return {
            "wallet": leveling.wallet,
            "level": level,
            "current": number(value, wallet.precision),
            "nextLevelAt": None if following is None else number(following.at, wallet.precision),
            "currentLevelAt": number(here.at, wallet.precision),
            "progress": plain(progress),
        }


# -- steps 8 and 9: perks, boost grants --------------------------------------------------------


def trigger_progress(
    perk: PerkDef, state: ProfileState, program: Program, level: int, traits: Mapping[str, Any]
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
    perk: PerkDef, state: ProfileState, program: Program, level: int, traits: Mapping[str, Any]
) -> bool:
    progress = trigger_progress(perk, state, program, level, traits)
    if isinstance(progress, bool):
        return progress
    return progress[0] >= progress[1]


def _perks(run: _Run, level: int) -> None:
    for perk in run.program.perks:
        if perk.key in run.state.perks:
            continue
        if trigger_holds(perk, run.state, run.program, level, run.scope["traits"]):
            run.state.perks[perk.key] = UnlockedPerk(run.occurred, dict(perk.trigger_raw))
            run.state.perk_counts.pop(perk.key, None)
            run.new_perks.add(perk.key)
            run.unlocked.append({"type": "perk", "key": perk.key, "name": perk.name})


def unlock_and_grant(run: _Run) -> list[dict[str, str]]:
    """Steps 8–9 on the run's current state; returns everything unlocked so far."""
    _perks(run, level_number(run.state, run.program))
    _grants(run)
    return run.unlocked


def _grants(run: _Run) -> None:
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
            run.unlocked.append({"type": "boost", "key": boost.key, "name": boost.name})


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
