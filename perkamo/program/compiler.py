"""Compile a whole program: the modules checked one by one (checks.py) and together
(references.py), then built into the immutable :class:`Program` every profile shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec

from perkamo.program import schema as s
from perkamo.program.checks import InvalidConfig, Problem, curve_levels, parse_module
from perkamo.program.formula import parse
from perkamo.program.json_walk import JsonObject
from perkamo.program.model import (
    AchievementDef,
    AwardDef,
    BoostDef,
    ConditionDef,
    CriterionDef,
    ExpiryDef,
    LevelDef,
    LevelingDef,
    PerkDef,
    Program,
    RewardDef,
    RuleDef,
    StreakDef,
    WalletDef,
)
from perkamo.program.references import cross_references
from perkamo.program.timefmt import parse_rfc3339


def _award_defs(awards: list[s.Award]) -> tuple[AwardDef, ...]:
    return tuple(
        AwardDef(
            a.wallet,
            None if a.amount is None else Decimal(a.amount),
            None if a.formula is None else parse(a.formula),
            a.rounding,
        )
        for a in awards
    )


def _condition_defs(conditions: list[s.Condition]) -> tuple[ConditionDef, ...]:
    return tuple(ConditionDef(c.path, c.op, c.value) for c in conditions)


def _time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def compile_program(
    modules: Mapping[str, tuple[str, object]], paths: dict[str, str] | None = None
) -> Program:
    """``modules`` maps module → (version, body) for the active (or to-be-active) modules.

    Raises InvalidConfig with the problems of every module, including cross-module references
    (``paths`` says where each module's body sits in the request, for the details).
    """
    paths = paths or {m: m for m in s.MODULES}
    parsed: JsonObject = {}
    problems: list[Problem] = []
    for module in s.MODULES:
        if module in modules:
            try:
                parsed[module] = parse_module(module, modules[module][1], paths[module])
            except InvalidConfig as exc:
                problems.extend(exc.problems)
    if problems:
        raise InvalidConfig(problems)
    m = _Parsed(
        parsed.get("wallets", s.WalletsModule()),
        parsed.get("events", s.EventsModule()),
        parsed.get("leveling", s.LevelingModule()),
        parsed.get("perks", s.PerksModule()),
        parsed.get("achievements", s.AchievementsModule()),
        parsed.get("boosts", s.BoostsModule()),
    )
    problems.extend(
        cross_references(m.wallets, m.events, m.leveling, m.perks, m.achievements, m.boosts, paths)
    )
    if problems:
        raise InvalidConfig(problems)
    wallets = tuple(_wallet(w) for w in m.wallets.wallets)
    return Program(
        versions={name: modules[name][0] if name in modules else None for name in s.MODULES},
        bodies={name: modules[name][1] for name in modules},
        wallets=wallets,
        rewards=tuple(_reward(r) for r in m.wallets.rewards),
        catalog=tuple((e.key, e.name or e.key, e.description) for e in m.events.events),
        rules=tuple(_rule(r) for r in m.events.rules),
        streaks=tuple(_streak(st) for st in m.events.streaks),
        leveling=_leveling(m.leveling, wallets, paths["leveling"]),
        perks=tuple(_perk(p) for p in m.perks.perks),
        achievements=tuple(_achievement(a) for a in m.achievements.achievements),
        boosts=tuple(_boost(b) for b in m.boosts.boosts),
        stacking=m.boosts.stacking,
        max_multiplier=Decimal(m.boosts.max_multiplier),
    )


def _wallet(w: s.Wallet) -> WalletDef:
    expiry = None
    if w.expiry is not None:
        e = w.expiry
        expiry = ExpiryDef(e.after_days, e.end_of, e.after_periods or 0)
    timezone = w.expiry.timezone if w.expiry is not None else "UTC"
    return WalletDef(
        w.key, w.name, w.precision, w.allow_negative, w.spendable, w.description, expiry,
        w.pending_days, timezone,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Parsed:
    wallets: s.WalletsModule
    events: s.EventsModule
    leveling: s.LevelingModule
    perks: s.PerksModule
    achievements: s.AchievementsModule
    boosts: s.BoostsModule


def _leveling(
    leveling: s.LevelingModule, wallets: tuple[WalletDef, ...], path: str
) -> LevelingDef | None:
    if leveling.wallet is None:
        return None
    if leveling.levels is not None:
        levels = tuple(LevelDef(lv.level, Decimal(lv.at), lv.name) for lv in leveling.levels)
        return LevelingDef(leveling.wallet, leveling.basis, levels)
    assert leveling.curve is not None
    precision = next(w.precision for w in wallets if w.key == leveling.wallet)
    try:
        curve = curve_levels(leveling.curve, precision)
    except ValueError as exc:
        raise InvalidConfig([Problem(f"{path}.curve", str(exc))]) from None
    levels = tuple(LevelDef(n, at, None) for n, at in curve)
    for previous, current in zip(levels, levels[1:], strict=False):
        if current.at <= previous.at:
            message = f"thresholds must strictly increase after rounding (level {current.level})"
            raise InvalidConfig([Problem(f"{path}.curve", message)])
    return LevelingDef(leveling.wallet, leveling.basis, levels)


def _reward(r: s.Reward) -> RewardDef:
    return RewardDef(
        key=r.key,
        name=r.name,
        description=r.description,
        cost_wallet=r.cost.wallet,
        cost=Decimal(r.cost.amount),
        effect=r.effect,
        level_at_least=r.requires.level_at_least if r.requires else None,
        perks=tuple(r.requires.perks) if r.requires else (),
        per_user=r.limits.per_user if r.limits else None,
        per_user_per_day=r.limits.per_user_per_day if r.limits else None,
        active=r.active,
    )


def _rule(r: s.Rule) -> RuleDef:
    return RuleDef(
        key=r.key,
        name=r.name,
        event=r.event,
        conditions=_condition_defs(r.conditions),
        awards=_award_defs(r.award),
        per_user=r.limits.per_user if r.limits else None,
        per_user_per_day=r.limits.per_user_per_day if r.limits else None,
        cooldown_seconds=r.limits.cooldown_seconds if r.limits else None,
        active_from=_time(r.active_from),
        active_until=_time(r.active_until),
    )


def _streak(st: s.Streak) -> StreakDef:
    return StreakDef(
        key=st.key,
        name=st.name,
        events=frozenset(st.events),
        period=st.period,
        timezone=st.timezone,
        zone=ZoneInfo(st.timezone),
        milestones=tuple((ms.length, _award_defs(ms.award)) for ms in st.milestones),
    )


def _perk(p: s.Perk) -> PerkDef:
    return PerkDef(
        key=p.key,
        name=p.name,
        description=p.description,
        trigger=p.trigger,
        trigger_raw=msgspec.to_builtins(p.trigger),
        metadata=p.metadata,
    )


def _achievement(a: s.Achievement) -> AchievementDef:
    return AchievementDef(
        key=a.key,
        name=a.name,
        description=a.description,
        criteria=tuple(
            CriterionDef(
                event=c.event,
                kind="sum" if c.sum else ("distinct" if c.distinct else "count"),
                path=c.sum or c.distinct,
                target=Decimal(c.target or 0) if c.sum else Decimal(c.count or 0),
                conditions=_condition_defs(c.conditions),
            )
            for c in a.criteria
        ),
        requires=tuple(a.requires),
        awards=_award_defs(a.award),
        repeatable=a.repeatable,
    )


def _boost(b: s.Boost) -> BoostDef:
    return BoostDef(
        key=b.key,
        name=b.name,
        multiplier=Decimal(b.multiplier),
        wallets=None if b.wallets is None else frozenset(b.wallets),
        events=None if b.events is None else frozenset(b.events),
        starts_at=_time(b.schedule.starts_at) if b.schedule else None,
        ends_at=_time(b.schedule.ends_at) if b.schedule else None,
        grant=b.grant,
        duration_seconds=b.duration_seconds,
        conditions=_condition_defs(b.conditions),
    )
