"""Validate the modules of a program together: every reference from one module to another
(a rule awarding a wallet, a perk on a streak, a reward granting a boost) must resolve."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from perkamo.program import schema as s
from perkamo.program.checks import Problem


def cross_references(
    wallets: s.WalletsModule,
    events: s.EventsModule,
    leveling: s.LevelingModule,
    perks: s.PerksModule,
    achievements: s.AchievementsModule,
    boosts: s.BoostsModule,
    paths: dict[str, str],
) -> Iterable[Problem]:
    """Every unresolved reference, at the JSON path it is at (``paths``: where each module's
    body sits in the request)."""
    known = _Known(
        wallets={w.key for w in wallets.wallets},
        streaks={st.key: st for st in events.streaks},
        perks={p.key for p in perks.perks},
        achievements={a.key for a in achievements.achievements},
        boosts={b.key: b for b in boosts.boosts},
        leveling=leveling.wallet is not None,
    )
    yield from _award_wallets(known, events, achievements, paths)
    if leveling.wallet is not None and leveling.wallet not in known.wallets:
        yield Problem(f"{paths['leveling']}.wallet", f"unknown wallet {leveling.wallet!r}")
    yield from _rewards(known, wallets, paths["wallets"])
    yield from _perks(known, perks, paths["perks"])
    yield from _boosts(known, boosts, paths["boosts"])


@dataclass(frozen=True, slots=True)
class _Known:
    wallets: set[str]
    streaks: dict[str, s.Streak]
    perks: set[str]
    achievements: set[str]
    boosts: dict[str, s.Boost]
    leveling: bool


def _award_wallets(
    known: _Known, events: s.EventsModule, achievements: s.AchievementsModule, paths: dict[str, str]
) -> Iterable[Problem]:
    def awards(items: list[s.Award], path: str) -> Iterable[Problem]:
        for i, a in enumerate(items):
            if a.wallet not in known.wallets:
                yield Problem(f"{path}[{i}].wallet", f"unknown wallet {a.wallet!r}")

    ev = paths["events"]
    for i, r in enumerate(events.rules):
        yield from awards(r.award, f"{ev}.rules[{i}].award")
    for i, st in enumerate(events.streaks):
        for j, ms in enumerate(st.milestones):
            yield from awards(ms.award, f"{ev}.streaks[{i}].milestones[{j}].award")
    for i, a in enumerate(achievements.achievements):
        yield from awards(a.award, f"{paths['achievements']}.achievements[{i}].award")


def _rewards(known: _Known, wallets: s.WalletsModule, path: str) -> Iterable[Problem]:
    for i, reward in enumerate(wallets.rewards):
        here = f"{path}.rewards[{i}]"
        if reward.requires is not None:
            if reward.requires.level_at_least is not None and not known.leveling:
                yield Problem(f"{here}.requires.level_at_least", "needs a leveling module")
            for j, perk in enumerate(reward.requires.perks):
                if perk not in known.perks:
                    yield Problem(f"{here}.requires.perks[{j}]", f"unknown perk {perk!r}")
        if reward.effect.get("type") == "boost":
            target = reward.effect.get("boost")
            boost = known.boosts.get(target) if isinstance(target, str) else None
            if boost is None:
                yield Problem(f"{here}.effect.boost", f"unknown boost {target!r}")
            elif boost.grant is None or boost.grant.on != "reward":
                yield Problem(f"{here}.effect.boost", f"boost {target!r} needs grant.on reward")


def _perks(known: _Known, perks: s.PerksModule, path: str) -> Iterable[Problem]:
    for i, p in enumerate(perks.perks):
        t, here = p.trigger, f"{path}.perks[{i}].trigger"
        if t.type == "points_threshold" and t.wallet is not None and t.wallet not in known.wallets:
            yield Problem(f"{here}.wallet", f"unknown wallet {t.wallet!r}")
        if t.type == "level_reached" and not known.leveling:
            yield Problem(f"{here}.level", "needs a leveling module")
        if t.type == "streak" and t.streak is not None and t.streak not in known.streaks:
            yield Problem(f"{here}.streak", f"unknown streak {t.streak!r}")
        if t.type == "achievement_completed" and t.achievement not in known.achievements:
            yield Problem(f"{here}.achievement", f"unknown achievement {t.achievement!r}")


def _boosts(known: _Known, boosts: s.BoostsModule, path: str) -> Iterable[Problem]:
    for i, b in enumerate(boosts.boosts):
        here = f"{path}.boosts[{i}]"
        for j, wallet in enumerate(b.wallets or ()):
            if wallet not in known.wallets:
                yield Problem(f"{here}.wallets[{j}]", f"unknown wallet {wallet!r}")
        g = b.grant
        if g is None:
            continue
        if g.on == "perk" and g.perk is not None and g.perk not in known.perks:
            yield Problem(f"{here}.grant.perk", f"unknown perk {g.perk!r}")
        if g.on == "level" and not known.leveling:
            yield Problem(f"{here}.grant.level", "needs a leveling module")
        if g.on == "streak_milestone" and g.streak is not None:
            streak = known.streaks.get(g.streak)
            if streak is None:
                yield Problem(f"{here}.grant.streak", f"unknown streak {g.streak!r}")
            elif g.length not in {ms.length for ms in streak.milestones}:
                yield Problem(f"{here}.grant.length", "no such milestone on that streak")
