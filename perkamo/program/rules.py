"""Step 3, earning rules, and what every award goes through: amount → boost factor →
rounding → bounds (docs/program.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from perkamo.program.bounds import after, within
from perkamo.program.evaluation import PER_DAY_KEPT, Award, Evaluation
from perkamo.program.formula import FormulaInputError, evaluate
from perkamo.program.model import (
    AwardDef,
    BoostDef,
    ConditionDef,
    ProfileState,
    Program,
    RuleCounter,
    RuleDef,
    WalletBalance,
)
from perkamo.program.outcome import Skipped
from perkamo.program.paths import holds, lookup

_ZERO, _ONE = Decimal(0), Decimal(1)
_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}


def conditions_hold(conditions: tuple[ConditionDef, ...], scope: Mapping[str, object]) -> bool:
    return all(holds(lookup(scope, c.path), c.op, c.value) for c in conditions)


def apply_rule(run: Evaluation, rule: RuleDef) -> None:
    """Conditions → active window → limits → awards; a capped rule is reported skipped."""
    if not conditions_hold(rule.conditions, run.scope):
        return
    if rule.active_from is not None and run.occurred < rule.active_from:
        return
    if rule.active_until is not None and run.occurred >= rule.active_until:
        return
    counter = run.state.rules.get(rule.key) or RuleCounter()
    # The day (occurred is UTC) counts only for a daily limit.
    day = run.occurred.date().isoformat() if rule.per_user_per_day is not None else ""
    reason = _capped(rule, counter, day, run.occurred)
    if reason is not None:
        run.skipped.append(Skipped(rule=rule.key, reason=reason))
        return
    yielded = False
    for award in rule.awards:
        if award_amount(run, award, "rule", rule.key) is not None:
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


def _capped(rule: RuleDef, counter: RuleCounter, day: str, occurred: datetime) -> str | None:
    """Why the rule's limits stop it from firing now, if they do."""
    if rule.per_user is not None and counter.fired >= rule.per_user:
        return "per_user_limit"
    if rule.per_user_per_day is not None:
        if (
            day not in counter.per_day
            and len(counter.per_day) >= PER_DAY_KEPT
            and day < min(counter.per_day)
        ):
            return "too_old"
        if counter.per_day.get(day, 0) >= rule.per_user_per_day:
            return "per_day_limit"
    if rule.cooldown_seconds is not None and counter.last_fired_at is not None:
        if occurred < after(counter.last_fired_at, rule.cooldown_seconds):
            return "cooldown"
    return None


def award_amount(run: Evaluation, award: AwardDef, source: str, key: str) -> Decimal | None:
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
            run.skipped.append(Skipped(rule=key, wallet=award.wallet, reason="formula_input"))
            return None
    else:
        assert award.amount is not None
        amount = award.amount
    factor = _ONE
    boosts: list[str] = []  # a list of its own per award
    if amount > 0:
        factor, boosts = boost_factor(run.program, run.state, run.event, wallet.key, run)
        amount = amount * factor
    if not within(amount):
        run.skipped.append(_out_of_range(key, award.wallet))
        return None
    amount = amount.quantize(wallet.quantum, rounding=_ROUNDING[award.rounding])
    net = run.nets.get(wallet.key, _ZERO) + amount
    if not _keeps_bounds(run.state.wallets.get(wallet.key), net, wallet.allow_negative):
        run.skipped.append(_out_of_range(key, award.wallet))
        return None
    run.nets[wallet.key] = net
    run.awards.append(Award(source, key, wallet.key, amount, factor, boosts))
    return amount


def _out_of_range(key: str, wallet: str) -> Skipped:
    """Built only when an award is skipped (most are not)."""
    return Skipped(rule=key, wallet=wallet, reason="amount_out_of_range")


def _keeps_bounds(balance: WalletBalance | None, net: Decimal, allow_negative: bool) -> bool:
    """Whether this event's net change keeps the balance and the earned total in bounds
    (a balance clamped at zero cannot leave them downwards). Pending points count as they
    will once released: into both the balance and the earned total."""
    if balance is None:
        balance_before = earned = waiting = _ZERO
    else:
        balance_before, earned, waiting = balance.balance, balance.earned, balance.pending
    new = balance_before + net
    if not allow_negative and new < 0:
        return True
    return within(new + waiting) and within(earned + waiting + max(net, _ZERO))


def boost_applies(
    boost: BoostDef, state: ProfileState, moment: datetime, scope: Mapping[str, object]
) -> bool:
    if boost.starts_at is not None and boost.ends_at is not None:
        return boost.starts_at <= moment < boost.ends_at and conditions_hold(
            boost.conditions, scope
        )
    granted = state.boosts.get(boost.key)
    return granted is not None and granted.granted_at <= moment < granted.expires_at


def boost_factor(
    program: Program, state: ProfileState, event: str, wallet: str, run: Evaluation
) -> tuple[Decimal, list[str]]:
    applicable = [
        b
        for b in program.boosts
        if (b.wallets is None or wallet in b.wallets)
        and (b.events is None or event in b.events)
        and boost_applies(b, state, run.occurred, run.scope)
    ]
    if not applicable:
        return _ONE, []
    if program.stacking == "multiply":
        factor = Decimal(1)
        for b in applicable:
            factor *= b.multiplier
    else:
        factor = max(b.multiplier for b in applicable)
    return min(factor, program.max_multiplier), [b.key for b in applicable]
