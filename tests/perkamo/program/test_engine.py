"""The pure engine, module by module (docs/program.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from perkamo.program import EngineEvent, ProfileState, apply, apply_identify, compile_program
from perkamo.program.model import Program

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # a Monday
POINTS = {"wallets": [{"key": "points", "name": "Points"}]}


def program(**modules: Any) -> Program:
    bodies = {"wallets": POINTS, **modules}
    return compile_program({m: ("v1", b) for m, b in bodies.items()})


class Profile:
    """Drives events through the engine, keeping the state like an actor would."""

    def __init__(self, prog: Program, traits: dict[str, Any] | None = None) -> None:
        self.program = prog
        self.state = ProfileState()
        self.traits = traits or {}

    def send(self, event: str, at: datetime = T0, **context: Any) -> SimpleNamespace:
        """The outcome as plain data (the engine's own names; decimals kept exact)."""
        before = self.state
        self.state, outcome = apply(
            self.state, EngineEvent(event, context, at, self.traits), self.program, at
        )
        assert before is not self.state
        return SimpleNamespace(**msgspec.to_builtins(outcome, builtin_types=(Decimal,)))

    def balance(self, wallet: str = "points") -> Decimal:
        w = self.state.wallets.get(wallet)
        return w.balance if w else Decimal(0)


def rule(key: str = "r", event: str = "e", **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "event": event, "award": [{"wallet": "points", "amount": 10}],
            **extra}  # fmt: skip


# -- rules --------------------------------------------------------------------------------


def test_fixed_award_and_unmatched_event():
    p = Profile(program(events={"rules": [rule()]}))
    out = p.send("e")
    assert out.delta == [{"wallet": "points", "amount": 10}]
    assert out.wallet_state == {"points": 10}
    assert p.send("other").delta == []
    assert p.balance() == 10


def test_star_rule_matches_every_event():
    p = Profile(program(events={"rules": [rule(event="*")]}))
    p.send("a")
    p.send("b")
    assert p.balance() == 20


@pytest.mark.parametrize(
    ("op", "value", "context", "fires"),
    [
        ("eq", "CZK", {"c": "CZK"}, True),
        ("eq", "CZK", {"c": "EUR"}, False),
        ("eq", 1, {"c": True}, False),  # a boolean never equals a number
        ("eq", 1, {"c": Decimal("1.0")}, True),  # numbers compare as decimals
        ("ne", "x", {}, True),  # missing path: ne holds
        ("gt", 5, {"c": 6}, True),
        ("gt", 5, {"c": "6"}, False),  # number vs string: false, not an error
        ("gte", "b", {"c": "b"}, True),
        ("lt", 5, {"c": 4}, True),
        ("lte", 5, {"c": 6}, False),
        ("in", ["a", "b"], {"c": "b"}, True),
        ("not_in", ["a"], {}, True),
        ("exists", None, {"c": None}, True),  # null counts as present
        ("exists", None, {}, False),
        ("not_exists", None, {}, True),
        ("contains", "ric", {"c": "pricing"}, True),
        ("contains", 2, {"c": [1, 2]}, True),
        ("contains", "x", {"c": 5}, False),
    ],
)
def test_conditions(op, value, context, fires):
    cond = {"path": "context.c", "op": op, "value": value}
    p = Profile(program(events={"rules": [rule(conditions=[cond])]}))
    assert bool(p.send("e", **context).delta) is fires


def test_condition_on_traits_and_list_index():
    conds = [
        {"path": "traits.plan", "op": "eq", "value": "premium"},
        {"path": "context.items.1.sku", "op": "eq", "value": "B"},
    ]
    p = Profile(program(events={"rules": [rule(conditions=conds)]}), traits={"plan": "premium"})
    assert p.send("e", items=[{"sku": "A"}, {"sku": "B"}]).delta
    p.traits = {"plan": "free"}
    assert not p.send("e", items=[{"sku": "A"}, {"sku": "B"}]).delta


def test_active_window_is_half_open():
    r = rule(active_from="2026-06-01T00:00:00Z", active_until="2026-06-02T00:00:00Z")
    p = Profile(program(events={"rules": [r]}))
    assert not p.send("e", at=datetime(2026, 5, 31, 23, 59, tzinfo=UTC)).delta
    assert p.send("e", at=datetime(2026, 6, 1, 0, 0, tzinfo=UTC)).delta
    assert not p.send("e", at=datetime(2026, 6, 2, 0, 0, tzinfo=UTC)).delta


def test_lifetime_limit():
    p = Profile(program(events={"rules": [rule(limits={"per_user": 2})]}))
    p.send("e")
    p.send("e")
    out = p.send("e")
    assert out.delta == [] and out.skipped == [{"rule": "r", "reason": "per_user_limit"}]
    assert p.balance() == 20


def test_per_day_limit_counts_utc_days_of_occurred_at():
    p = Profile(program(events={"rules": [rule(limits={"per_user_per_day": 1})]}))
    assert p.send("e", at=T0).delta
    out = p.send("e", at=T0 + timedelta(hours=13))  # 23:00 UTC, same day
    assert out.skipped == [{"rule": "r", "reason": "per_day_limit"}]
    assert p.send("e", at=T0 + timedelta(hours=14)).delta  # next UTC day


def test_per_day_counts_keep_eight_days_and_older_events_are_too_old():
    p = Profile(program(events={"rules": [rule(limits={"per_user_per_day": 5})]}))
    for day in range(10):
        p.send("e", at=T0 + timedelta(days=day))
    assert len(p.state.rules["r"].per_day) == 8
    out = p.send("e", at=T0)  # day 0 is older than the kept days
    assert out.skipped == [{"rule": "r", "reason": "too_old"}]
    assert p.send("e", at=T0 + timedelta(days=5)).delta  # kept day, under its limit


def test_cooldown_and_events_before_the_last_firing():
    p = Profile(program(events={"rules": [rule(limits={"cooldown_seconds": 60})]}))
    assert p.send("e", at=T0).delta
    assert p.send("e", at=T0 + timedelta(seconds=59)).skipped[0]["reason"] == "cooldown"
    assert p.send("e", at=T0 - timedelta(hours=1)).skipped[0]["reason"] == "cooldown"
    assert p.send("e", at=T0 + timedelta(seconds=60)).delta


def test_formula_award_and_missing_input_is_skipped_not_failed():
    award = [{"wallet": "points", "formula": "{{amount}} / 100"}, {"wallet": "points", "amount": 1}]
    p = Profile(program(events={"rules": [rule(award=award)]}))
    assert p.send("e", amount=12900).delta == [{"wallet": "points", "amount": 130}]
    out = p.send("e")
    assert out.delta == [{"wallet": "points", "amount": 1}]
    assert out.skipped == [{"rule": "r", "wallet": "points", "reason": "formula_input"}]
    out = p.send("e", amount="lots")
    assert out.skipped[0]["reason"] == "formula_input"


def test_division_by_zero_is_a_formula_input_skip():
    award = [{"wallet": "points", "formula": "10 / {{n}}"}]
    p = Profile(program(events={"rules": [rule(award=award)]}))
    out = p.send("e", n=0)
    assert out.delta == [] and out.skipped[0]["reason"] == "formula_input"
    assert "r" not in p.state.rules  # it did not fire: no award was yielded


@pytest.mark.parametrize(
    ("rounding", "amount", "expected"),
    [
        ("floor", "1.239", "1.23"),
        ("floor", "-1.231", "-1.24"),
        ("ceil", "1.231", "1.24"),
        ("round", "1.235", "1.24"),
        ("round", "1.245", "1.25"),  # half away from zero, not banker's
        ("round", "-1.235", "-1.24"),
    ],
)
def test_rounding_to_wallet_precision(rounding, amount, expected):
    wallets = {"wallets": [{"key": "cash", "name": "Cash", "precision": 2, "allow_negative": True}]}
    award = [{"wallet": "cash", "formula": amount, "rounding": rounding}]
    p = Profile(program(wallets=wallets, events={"rules": [rule(award=award)]}))
    out = p.send("e")
    assert out.delta == [{"wallet": "cash", "amount": Decimal(expected)}]


def test_exact_decimals_never_drift():
    wallets = {"wallets": [{"key": "cash", "name": "Cash", "precision": 2}]}
    award = [{"wallet": "cash", "amount": Decimal("0.1")}]
    p = Profile(program(wallets=wallets, events={"rules": [rule(award=award)]}))
    for _ in range(30):
        p.send("e")
    assert p.balance("cash") == Decimal("3.0")


def test_negative_awards_clamp_at_zero_unless_allowed():
    award = [{"wallet": "points", "amount": -30}]
    p = Profile(program(events={"rules": [rule(), rule("take", "spend", award=award)]}))
    p.send("e")
    out = p.send("spend")
    assert out.delta == [{"wallet": "points", "amount": -10}]
    assert {"type": "clamp", "wallet": "points", "requested": -30, "applied": -10} in out.breakdown
    assert p.balance() == 0
    assert p.state.wallets["points"].earned == 10
    assert p.state.wallets["points"].deducted == 10


def test_awards_of_one_event_are_summed_per_wallet_in_configuration_order():
    wallets = {"wallets": [{"key": "xp", "name": "XP"}, {"key": "points", "name": "Points"}]}
    rules = [
        rule("a", award=[{"wallet": "points", "amount": 5}]),
        rule("b", award=[{"wallet": "xp", "amount": 1}, {"wallet": "points", "amount": 5}]),
        rule("c", award=[{"wallet": "xp", "amount": 2}, {"wallet": "xp", "amount": -3}]),
    ]
    p = Profile(program(wallets=wallets, events={"rules": rules}))
    out = p.send("e")
    assert out.delta == [{"wallet": "points", "amount": 10}]  # xp nets to 0: no entry
    assert out.wallet_state == {"xp": 0, "points": 10}


# -- streaks ------------------------------------------------------------------------------


def streaks(period: str = "day", tz: str = "UTC", milestones=None) -> dict[str, Any]:
    return {
        "streaks": [
            {
                "key": "s",
                "name": "Streak",
                "events": ["open"],
                "period": period,
                "timezone": tz,
                "milestones": milestones or [],
            }  # fmt: skip
        ]
    }


def test_daily_streak_gap_and_longest():
    p = Profile(program(events=streaks()))
    for day in (0, 1, 2, 4):
        p.send("open", at=T0 + timedelta(days=day))
    st = p.state.streaks["s"]
    assert (st.current, st.longest) == (1, 3)


def test_streak_counts_local_days_in_its_time_zone():
    p = Profile(program(events=streaks(tz="Europe/Prague")))  # UTC+2 in June
    p.send("open", at=datetime(2026, 6, 1, 21, 30, tzinfo=UTC))  # 23:30 local, June 1
    p.send("open", at=datetime(2026, 6, 1, 22, 30, tzinfo=UTC))  # 00:30 local, June 2
    assert p.state.streaks["s"].current == 2
    assert str(p.state.streaks["s"].last_period) == "2026-06-02"


def test_weekly_streak_weeks_start_on_monday():
    p = Profile(program(events=streaks(period="week")))
    p.send("open", at=datetime(2026, 6, 7, 23, 0, tzinfo=UTC))  # Sunday
    p.send("open", at=datetime(2026, 6, 8, 1, 0, tzinfo=UTC))  # Monday: next week
    p.send("open", at=datetime(2026, 6, 10, 1, 0, tzinfo=UTC))  # same week: no change
    st = p.state.streaks["s"]
    assert (st.current, str(st.last_period)) == (2, "2026-06-08")


def test_late_events_do_not_rewrite_the_run():
    p = Profile(program(events=streaks()))
    p.send("open", at=T0 + timedelta(days=3))
    p.send("open", at=T0 + timedelta(days=1))  # late, earlier uncounted period
    p.send("open", at=T0 + timedelta(days=3, hours=5))  # late for a counted period
    st = p.state.streaks["s"]
    assert (st.current, str(st.last_period)) == (1, "2026-06-04")


def test_streak_milestone_awards_once_per_run_and_is_boosted():
    ms = [{"length": 3, "award": [{"wallet": "points", "amount": 20}]}]
    p = Profile(program(events=streaks(milestones=ms)))
    outs = [p.send("open", at=T0 + timedelta(days=d)) for d in range(5)]
    assert [o.delta for o in outs[:2]] == [[], []]
    assert outs[2].unlocked == [{"type": "streak_milestone", "key": "s:3", "name": "Streak"}]
    assert outs[2].delta == [{"wallet": "points", "amount": 20}]
    assert outs[3].unlocked == [] and outs[4].unlocked == []
    # a new run reaches the milestone again
    for d in (7, 8, 9):
        out = p.send("open", at=T0 + timedelta(days=d))
    assert out.unlocked[0]["key"] == "s:3"


def test_changing_a_streak_period_restarts_the_run_but_keeps_longest():
    p = Profile(program(events=streaks()))
    for d in range(3):
        p.send("open", at=T0 + timedelta(days=d))
    p.program = program(events=streaks(period="week"))
    p.send("open", at=T0 + timedelta(days=3))
    st = p.state.streaks["s"]
    assert (st.current, st.longest, st.period) == (1, 3, "week")


# -- achievements ---------------------------------------------------------------------------


def achievements(*items: dict[str, Any]) -> dict[str, Any]:
    return {"achievements": list(items)}


def test_count_achievement_completes_with_award_and_unlock():
    a = {"key": "three", "name": "Three", "criteria": [{"event": "buy", "count": 3}],
         "award": [{"wallet": "points", "amount": 25}]}  # fmt: skip
    p = Profile(program(achievements=achievements(a)))
    p.send("buy")
    p.send("buy")
    out = p.send("buy")
    assert out.unlocked == [{"type": "achievement", "key": "three", "name": "Three"}]
    assert out.delta == [{"wallet": "points", "amount": 25}]
    assert p.send("buy").unlocked == []  # not repeatable


def test_distinct_achievement_counts_values_once_and_bounds_state():
    a = {
        "key": "d",
        "name": "D",
        "criteria": [{"event": "lesson", "distinct": "context.id", "count": 3}],
    }
    p = Profile(program(achievements=achievements(a)))
    for lesson in (1, 1, 2, 1.0, 2):
        assert p.send("lesson", id=lesson).unlocked == []
    p.send("lesson")  # no id: not counted
    assert p.send("lesson", id="3").unlocked[0]["key"] == "d"


def test_sum_achievement_with_conditions():
    a = {"key": "big", "name": "Big", "criteria": [
        {"event": "buy", "sum": "context.amount", "target": 100,
         "conditions": [{"path": "context.currency", "op": "eq", "value": "CZK"}]}]}  # fmt: skip
    p = Profile(program(achievements=achievements(a)))
    p.send("buy", amount=60, currency="CZK")
    p.send("buy", amount=60, currency="EUR")
    assert p.state.achievements["big"].progress[0].total == 60
    assert p.send("buy", amount=40, currency="CZK").unlocked[0]["key"] == "big"


def test_prerequisites_count_only_events_after_completion():
    first = {"key": "first", "name": "First", "criteria": [{"event": "a", "count": 1}]}
    second = {"key": "second", "name": "Second", "requires": ["first"],
              "criteria": [{"event": "a", "count": 2}]}  # fmt: skip
    p = Profile(program(achievements=achievements(first, second)))
    out = p.send("a")  # completes first; does not count toward second
    assert [u["key"] for u in out.unlocked] == ["first"]
    assert "second" not in p.state.achievements
    p.send("a")
    assert p.send("a").unlocked[0]["key"] == "second"


def test_repeatable_achievement_restarts_and_counts_times():
    a = {"key": "r", "name": "R", "repeatable": True, "criteria": [{"event": "a", "count": 2}]}
    p = Profile(program(achievements=achievements(a)))
    results = [bool(p.send("a").unlocked) for _ in range(6)]
    assert results == [False, True, False, True, False, True]
    assert p.state.achievements["r"].times == 3


# -- levels ---------------------------------------------------------------------------------

LEVELS = {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 100},
                                         {"level": 3, "at": 250}, {"level": 4, "at": 500}]}  # fmt: skip


def test_multi_level_jump_and_level_document():
    award = [{"wallet": "points", "formula": "{{n}}"}]
    p = Profile(program(leveling=LEVELS, events={"rules": [rule(award=award)]}))
    out = p.send("e", n=50)
    assert out.leveled_up is False
    assert out.level == {"wallet": "points", "level": 1, "current": 50, "next_level_at": 100,
                         "current_level_at": 0, "progress": Decimal("0.5")}  # fmt: skip
    out = p.send("e", n=270)
    assert out.leveled_up is True and out.level["level"] == 3
    assert out.level["progress"] == Decimal("0.28")
    out = p.send("e", n=1000)
    assert out.level["level"] == 4 and out.level["next_level_at"] is None
    assert out.level["progress"] == 1


def test_earned_basis_ignores_spending_and_balance_basis_does_not():
    award = [{"wallet": "points", "formula": "{{n}}"}]
    rules = {"rules": [rule(award=award)]}
    for basis, expected in (("earned", 2), ("balance", 1)):
        p = Profile(program(leveling={**LEVELS, "basis": basis}, events=rules))
        p.send("e", n=150)
        p.send("e", n=-100)
        assert p.send("e", n=0).level["level"] == expected


def test_curves():
    linear = {"wallet": "points", "curve": {"type": "linear", "step": 100, "max_level": 5}}
    p = Profile(
        program(
            leveling=linear, events={"rules": [rule(award=[{"wallet": "points", "amount": 350}])]}
        )
    )
    assert p.send("e").level["level"] == 4
    expo = {
        "wallet": "points",
        "curve": {"type": "exponential", "base": 100, "factor": 1.5, "max_level": 5},
    }
    prog = program(leveling=expo)
    assert [lv.at for lv in prog.leveling.levels] == [0, 100, 150, 225, 337]


# -- perks ----------------------------------------------------------------------------------


def perk(key: str, trigger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": key.title(), "trigger": trigger, **extra}


def test_perk_triggers_and_stickiness():
    perks = {"perks": [
        perk("rich", {"type": "points_threshold", "wallet": "points", "amount": 30}),
        perk("saver", {"type": "points_threshold", "wallet": "points", "amount": 15, "basis": "balance"}),
        perk("silver", {"type": "level_reached", "level": 2}),
        perk("regular", {"type": "event_count", "event": "e", "count": 3}),
        perk("vip", {"type": "trait", "path": "traits.plan", "op": "eq", "value": "vip"}),
    ]}  # fmt: skip
    award = [{"wallet": "points", "formula": "{{n}}"}]
    prog = program(perks=perks, leveling=LEVELS, events={"rules": [rule(award=award)]})
    p = Profile(prog)
    assert p.send("e", n=20).unlocked == [{"type": "perk", "key": "saver", "name": "Saver"}]
    assert [u["key"] for u in p.send("e", n=-10).unlocked] == []
    assert [u["key"] for u in p.send("e", n=100).unlocked] == ["rich", "silver", "regular"]
    assert p.send("e", n=-200).unlocked == []
    assert set(p.state.perks) == {"rich", "saver", "silver", "regular"}  # sticky
    assert p.state.perks["saver"].trigger == {"type": "points_threshold", "wallet": "points",
                                              "amount": 15, "basis": "balance"}  # fmt: skip
    state, unlocked, _ = apply_identify(p.state, {"plan": "vip"}, prog, T0 + timedelta(days=1))
    assert msgspec.to_builtins(unlocked) == [{"type": "perk", "key": "vip", "name": "Vip"}]
    assert state.perks["vip"].unlocked_at == T0 + timedelta(days=1)


def test_streak_and_achievement_perks():
    perks = {"perks": [
        perk("habit", {"type": "streak", "streak": "s", "length": 2}),
        perk("star", {"type": "achievement_completed", "achievement": "one"}),
    ]}  # fmt: skip
    ach = achievements({"key": "one", "name": "One", "criteria": [{"event": "open", "count": 1}]})
    p = Profile(program(perks=perks, events=streaks(), achievements=ach))
    out = p.send("open", at=T0)
    assert [(u["type"], u["key"]) for u in out.unlocked] == [
        ("achievement", "one"),
        ("perk", "star"),
    ]
    out = p.send("open", at=T0 + timedelta(days=1))
    assert [u["key"] for u in out.unlocked] == ["habit"]


# -- boosts ---------------------------------------------------------------------------------


def boosts(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"boosts": list(items), **extra}


def test_scheduled_boost_window_wallet_event_and_conditions():
    b = {"key": "weekend", "name": "W", "multiplier": 2, "wallets": ["points"], "events": ["e"],
         "schedule": {"starts_at": "2026-06-06T00:00:00Z", "ends_at": "2026-06-08T00:00:00Z"},
         "conditions": [{"path": "traits.plan", "op": "eq", "value": "premium"}]}  # fmt: skip
    p = Profile(program(events={"rules": [rule(), rule("o", "other")]}, boosts=boosts(b)),
                traits={"plan": "premium"})  # fmt: skip
    assert p.send("e", at=datetime(2026, 6, 5, tzinfo=UTC)).delta[0]["amount"] == 10
    out = p.send("e", at=datetime(2026, 6, 6, tzinfo=UTC))
    assert out.delta[0]["amount"] == 20
    assert out.breakdown[0]["boost"]["boosts"] == ["weekend"]
    assert p.send("other", at=datetime(2026, 6, 6, tzinfo=UTC)).delta[0]["amount"] == 10
    assert p.send("e", at=datetime(2026, 6, 8, tzinfo=UTC)).delta[0]["amount"] == 10
    p.traits = {"plan": "free"}
    assert p.send("e", at=datetime(2026, 6, 7, tzinfo=UTC)).delta[0]["amount"] == 10


def test_boosts_multiply_only_positive_awards():
    b = {"key": "x", "name": "X", "multiplier": 3,
         "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z"}}  # fmt: skip
    rules = [rule(), rule("take", "spend", award=[{"wallet": "points", "amount": -5}])]
    p = Profile(program(events={"rules": rules}, boosts=boosts(b)))
    assert p.send("e").delta[0]["amount"] == 30
    assert p.send("spend").delta[0]["amount"] == -5


@pytest.mark.parametrize(("stacking", "cap", "expected"), [("max", 10, 30), ("multiply", 10, 60),
                                                          ("multiply", 4, 40)])  # fmt: skip
def test_stacking_and_cap(stacking, cap, expected):
    window = {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z"}
    items = [{"key": "a", "name": "A", "multiplier": 2, "schedule": window},
             {"key": "b", "name": "B", "multiplier": 3, "schedule": window}]  # fmt: skip
    p = Profile(program(events={"rules": [rule()]},
                        boosts=boosts(*items, stacking=stacking, max_multiplier=cap)))  # fmt: skip
    assert p.send("e").delta[0]["amount"] == expected


def test_granted_boost_starts_next_event_extends_and_expires():
    perks = {"perks": [perk("vip", {"type": "event_count", "event": "e", "count": 1})]}
    b = {"key": "fire", "name": "Fire", "multiplier": 2, "grant": {"on": "perk", "perk": "vip"},
         "duration_seconds": 3600}  # fmt: skip
    p = Profile(program(events={"rules": [rule()]}, perks=perks, boosts=boosts(b)))
    out = p.send("e", at=T0)
    assert out.delta[0]["amount"] == 10  # granted by this event: applies from the next one
    assert [u["type"] for u in out.unlocked] == ["perk", "boost"]
    assert p.send("e", at=T0 + timedelta(minutes=59)).delta[0]["amount"] == 20
    assert p.send("e", at=T0 + timedelta(hours=1)).delta[0]["amount"] == 10  # expired
    assert p.send("e", at=T0 - timedelta(minutes=1)).delta[0]["amount"] == 10  # before grant


def test_level_and_milestone_grants():
    items = [
        {"key": "lv", "name": "Lv", "multiplier": 2, "grant": {"on": "level", "level": 2},
         "duration_seconds": 60},
        {"key": "ms", "name": "Ms", "multiplier": 2,
         "grant": {"on": "streak_milestone", "streak": "s", "length": 1}, "duration_seconds": 60},
    ]  # fmt: skip
    events = {
        **streaks(milestones=[{"length": 1}]),
        "rules": [rule(award=[{"wallet": "points", "amount": 150}])],
    }
    p = Profile(program(events=events, leveling=LEVELS, boosts=boosts(*items)))
    out = p.send("e")
    assert {"type": "boost", "key": "lv", "name": "Lv"} in out.unlocked
    assert p.send("e").unlocked == []  # level 2 was already reached: no second grant
    out = p.send("open")
    assert [u["key"] for u in out.unlocked] == ["s:1", "ms"]


def test_determinism_and_input_state_is_not_mutated():
    prog = program(events={"rules": [rule()]}, leveling=LEVELS)
    state = ProfileState()
    event = EngineEvent("e", {}, T0, {})
    first = apply(state, event, prog, T0)
    second = apply(state, event, prog, T0)
    assert state == ProfileState()
    assert first == second
