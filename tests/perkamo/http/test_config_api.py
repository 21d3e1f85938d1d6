"""The configuration API: validation with JSON paths, immutable versions, drafts, atomic
activation, and its effect on the next event."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import trio

from perkamo.configuration import demo_program
from perkamo.runtime import CONFIG_CHANNEL, open_runtime
from perkamo.settings import Settings
from tests.api_client import Api, app_for
from tests.notifications import notified

W = {"wallets": [{"key": "points", "name": "Points"}]}
RULE = {"key": "r", "name": "R", "event": "e", "award": [{"wallet": "points", "amount": 10}]}


def demo_modules() -> dict[str, Any]:
    return demo_program()[1]


def with_rule(**changes: Any) -> dict[str, Any]:
    return {"rules": [{**RULE, **changes}]}


# (id, module, body, path that must be reported). Uploaded alone onto a Space whose active
# program is W (wallets) — so cross-module references are checked against it.
INVALID = [
    ("unknown-field", "wallets", {"wallets": [{"key": "p", "name": "P", "colour": "red"}]}, "body.wallets[0].colour"),
    ("wrong-type", "wallets", {"wallets": [{"key": "p", "name": 5}]}, "body.wallets[0].name"),
    ("missing-name", "wallets", {"wallets": [{"key": "p"}]}, "body.wallets[0].name"),
    ("precision-range", "wallets", {"wallets": [{"key": "p", "name": "P", "precision": 7}]}, "body.wallets[0].precision"),
    ("bad-key", "wallets", {"wallets": [{"key": "Points!", "name": "P"}]}, "body.wallets[0].key"),
    ("duplicate-wallet", "wallets", {"wallets": [{"key": "p", "name": "P"}, {"key": "p", "name": "Q"}]}, "body.wallets[1].key"),
    ("string-amount", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": "100"}, "effect": {"type": "t"}}]}, "body.rewards[0].cost.amount"),
    ("reward-cost-zero", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 0}, "effect": {"type": "t"}}]}, "body.rewards[0].cost.amount"),
    ("reward-unknown-wallet", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "q", "amount": 1}, "effect": {"type": "t"}}]}, "body.rewards[0].cost.wallet"),
    ("reward-unspendable", "wallets", {"wallets": [{"key": "p", "name": "P", "spendable": False}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 1}, "effect": {"type": "t"}}]}, "body.rewards[0].cost.wallet"),
    ("reward-no-effect-type", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 1}, "effect": {}}]}, "body.rewards[0].effect.type"),
    ("reward-unknown-boost", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 1}, "effect": {"type": "boost", "boost": "nope"}}]}, "body.rewards[0].effect.boost"),
    ("reward-level-without-leveling", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 1}, "effect": {"type": "t"}, "requires": {"level_at_least": 2}}]}, "body.rewards[0].requires.level_at_least"),
    ("rule-unknown-wallet", "events", with_rule(award=[{"wallet": "gems", "amount": 1}]), "body.rules[0].award[0].wallet"),
    ("rule-amount-and-formula", "events", with_rule(award=[{"wallet": "points", "amount": 1, "formula": "2"}]), "body.rules[0].award[0]"),
    ("rule-neither-amount-nor-formula", "events", with_rule(award=[{"wallet": "points"}]), "body.rules[0].award[0]"),
    ("rule-formula-syntax", "events", with_rule(award=[{"wallet": "points", "formula": "{{amount}} */ 2"}]), "body.rules[0].award[0].formula"),
    ("rule-formula-name", "events", with_rule(award=[{"wallet": "points", "formula": "exec(1)"}]), "body.rules[0].award[0].formula"),
    ("rule-no-award", "events", with_rule(award=[]), "body.rules[0].award"),
    ("rule-bad-op", "events", with_rule(conditions=[{"path": "context.x", "op": "like", "value": 1}]), "body.rules[0].conditions[0].op"),
    ("rule-bad-path", "events", with_rule(conditions=[{"path": "x", "op": "eq", "value": 1}]), "body.rules[0].conditions[0].path"),
    ("rule-in-needs-list", "events", with_rule(conditions=[{"path": "context.x", "op": "in", "value": 1}]), "body.rules[0].conditions[0].value"),
    ("rule-event-with-space", "events", with_rule(event="purchase completed"), "body.rules[0].event"),
    ("rule-bad-window", "events", with_rule(active_from="2026-06-02T00:00:00Z", active_until="2026-06-01T00:00:00Z"), "body.rules[0].active_until"),
    ("rule-window-no-zone", "events", with_rule(active_from="2026-06-02T00:00:00"), "body.rules[0].active_from"),
    ("rule-limit-zero", "events", with_rule(limits={"per_user": 0}), "body.rules[0].limits.per_user"),
    ("rule-bad-rounding", "events", with_rule(award=[{"wallet": "points", "amount": 1, "rounding": "up"}]), "body.rules[0].award[0].rounding"),
    ("duplicate-rule", "events", {"rules": [RULE, RULE]}, "body.rules[1].key"),
    ("streak-zone-directory", "events", {"streaks": [{"key": "s", "name": "S", "events": ["e"], "period": "day", "timezone": "America"}]}, "body.streaks[0].timezone"),
    ("streak-bad-zone", "events", {"streaks": [{"key": "s", "name": "S", "events": ["e"], "period": "day", "timezone": "Mars/Base"}]}, "body.streaks[0].timezone"),
    ("streak-bad-period", "events", {"streaks": [{"key": "s", "name": "S", "events": ["e"], "period": "month"}]}, "body.streaks[0].period"),
    ("streak-colon-key", "events", {"streaks": [{"key": "s:1", "name": "S", "events": ["e"], "period": "day"}]}, "body.streaks[0].key"),
    ("streak-milestone-wallet", "events", {"streaks": [{"key": "s", "name": "S", "events": ["e"], "period": "day", "milestones": [{"length": 2, "award": [{"wallet": "gems", "amount": 1}]}]}]}, "body.streaks[0].milestones[0].award[0].wallet"),
    ("levels-not-consecutive", "leveling", {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 3, "at": 10}]}, "body.levels[1].level"),
    ("levels-first-not-zero", "leveling", {"wallet": "points", "levels": [{"level": 1, "at": 5}]}, "body.levels[0].at"),
    ("levels-not-increasing", "leveling", {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 0}]}, "body.levels[1].at"),
    ("levels-unknown-wallet", "leveling", {"wallet": "gems", "levels": [{"level": 1, "at": 0}]}, "body.wallet"),
    ("levels-and-curve", "leveling", {"wallet": "points", "levels": [{"level": 1, "at": 0}], "curve": {"type": "linear", "step": 10, "max_level": 3}}, "body"),
    ("curve-flat-after-rounding", "leveling", {"wallet": "points", "curve": {"type": "exponential", "base": 1, "factor": 1.1, "max_level": 5}}, "body.curve"),
    ("perk-unknown-streak", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "streak", "streak": "nope", "length": 3}}]}, "body.perks[0].trigger.streak"),
    ("perk-unknown-wallet", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "points_threshold", "wallet": "gems", "amount": 3}}]}, "body.perks[0].trigger.wallet"),
    ("perk-missing-amount", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "points_threshold", "wallet": "points"}}]}, "body.perks[0].trigger.amount"),
    ("perk-unknown-trigger", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "moon_phase"}}]}, "body.perks[0].trigger.type"),
    ("perk-unknown-achievement", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "achievement_completed", "achievement": "nope"}}]}, "body.perks[0].trigger.achievement"),
    ("perk-level-without-leveling", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "level_reached", "level": 2}}]}, "body.perks[0].trigger.level"),
    ("achievement-two-kinds", "achievements", {"achievements": [{"key": "a", "name": "A", "criteria": [{"event": "e", "count": 1, "sum": "context.x", "target": 1}]}]}, "body.achievements[0].criteria[0]"),
    ("achievement-unknown-requirement", "achievements", {"achievements": [{"key": "a", "name": "A", "requires": ["b"], "criteria": [{"event": "e", "count": 1}]}]}, "body.achievements[0].requires[0]"),
    ("achievement-cycle", "achievements", {"achievements": [{"key": "a", "name": "A", "requires": ["b"], "criteria": [{"event": "e", "count": 1}]}, {"key": "b", "name": "B", "requires": ["a"], "criteria": [{"event": "e", "count": 1}]}]}, "body.achievements[0].requires"),
    ("achievement-award-wallet", "achievements", {"achievements": [{"key": "a", "name": "A", "criteria": [{"event": "e", "count": 1}], "award": [{"wallet": "gems", "amount": 1}]}]}, "body.achievements[0].award[0].wallet"),
    ("boost-multiplier-one", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 1, "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z"}}]}, "body.boosts[0].multiplier"),
    ("boost-schedule-and-grant", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "schedule": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z"}, "grant": {"on": "reward"}, "duration_seconds": 5}]}, "body.boosts[0]"),
    ("boost-grant-no-duration", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "grant": {"on": "reward"}}]}, "body.boosts[0].duration_seconds"),
    ("boost-unknown-wallet", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "wallets": ["gems"], "grant": {"on": "reward"}, "duration_seconds": 5}]}, "body.boosts[0].wallets[0]"),
    ("boost-unknown-perk", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "grant": {"on": "perk", "perk": "nope"}, "duration_seconds": 5}]}, "body.boosts[0].grant.perk"),
    # Every "must not" of docs/program.md's validation section: no "*" outside a rule's event.
    ("streak-star-event", "events", {"streaks": [{"key": "s", "name": "S", "events": ["app.opened", "*"], "period": "day"}]}, "body.streaks[0].events[1]"),
    ("criterion-star-event", "achievements", {"achievements": [{"key": "a", "name": "A", "criteria": [{"event": "*", "count": 1}]}]}, "body.achievements[0].criteria[0].event"),
    ("boost-star-event", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "events": ["*"], "grant": {"on": "reward"}, "duration_seconds": 5}]}, "body.boosts[0].events[0]"),
    ("perk-star-event-count", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "event_count", "event": "*", "count": 2}}]}, "body.perks[0].trigger.event"),
    ("catalog-control-character", "events", {"events": [{"key": "a\u0085b"}]}, "body.events[0].key"),
    ("rule-event-control-character", "events", with_rule(event="a\u007fb"), "body.rules[0].event"),
    ("boost-grant-level-zero", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "grant": {"on": "level", "level": 0}, "duration_seconds": 5}]}, "body.boosts[0].grant.level"),
    # Bounds: every amount, cost and threshold within ±10^15.
    ("award-beyond-bound", "events", with_rule(award=[{"wallet": "points", "amount": 1e40}]), "body.rules[0].award[0].amount"),
    ("award-negative-beyond-bound", "events", with_rule(award=[{"wallet": "points", "amount": -1000000000000001}]), "body.rules[0].award[0].amount"),
    ("cost-beyond-bound", "wallets", {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "x", "name": "X", "cost": {"wallet": "p", "amount": 1e16}, "effect": {"type": "t"}}]}, "body.rewards[0].cost.amount"),
    ("level-threshold-beyond-bound", "leveling", {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 1e20}]}, "body.levels[1].at"),
    ("curve-beyond-bound", "leveling", {"wallet": "points", "curve": {"type": "exponential", "base": 100, "factor": 1000, "max_level": 50}}, "body.curve"),
    ("linear-curve-beyond-bound", "leveling", {"wallet": "points", "curve": {"type": "linear", "step": 1e14, "max_level": 20}}, "body.curve"),
    ("perk-threshold-beyond-bound", "perks", {"perks": [{"key": "p", "name": "P", "trigger": {"type": "points_threshold", "wallet": "points", "amount": 1e300}}]}, "body.perks[0].trigger.amount"),
    ("sum-target-beyond-bound", "achievements", {"achievements": [{"key": "a", "name": "A", "criteria": [{"event": "e", "sum": "context.x", "target": 1e16}]}]}, "body.achievements[0].criteria[0].target"),
    ("multiplier-beyond-bound", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 1e16, "grant": {"on": "reward"}, "duration_seconds": 5}]}, "body.boosts[0].multiplier"),
    ("duration-beyond-bound", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "grant": {"on": "reward"}, "duration_seconds": 10**16}]}, "body.boosts[0].duration_seconds"),
    ("cooldown-beyond-bound", "events", with_rule(limits={"cooldown_seconds": 10**16}), "body.rules[0].limits.cooldown_seconds"),
    ("window-before-the-calendar", "events", with_rule(active_from="0001-01-01T00:00:00+01:00"), "body.rules[0].active_from"),
    ("boost-schedule-backwards", "boosts", {"boosts": [{"key": "b", "name": "B", "multiplier": 2, "schedule": {"starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}}]}, "body.boosts[0].schedule.ends_at"),
]  # fmt: skip


@pytest.fixture
async def configured(api) -> Api:
    answer = await api.post("/v1/admin/config/wallets", {"version": "v0", "body": W})
    assert answer.status == 200, answer.body
    return api


def test_the_table_is_large_enough():
    assert len(INVALID) >= 30


@pytest.mark.parametrize(
    ("module", "body", "path"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
async def test_invalid_configuration_reports_its_path(configured, module, body, path):
    answer = await configured.post(f"/v1/admin/config/{module}", {"version": "v1", "body": body})
    assert answer.status == 400, answer.body
    assert answer.body["error"] == "invalid_config"
    assert path in [d["path"] for d in answer.body["details"]], answer.body["details"]
    # Nothing changed: the module's previous state stands.
    state = await configured.get(f"/v1/admin/config/{module}")
    expected = ["v0"] if module == "wallets" else []  # the fixture's wallets upload
    assert [v["version"] for v in state.body["versions"]] == expected
    assert state.body["active_version"] == (expected[0] if expected else None)


@pytest.mark.parametrize(
    "module", ["wallets", "events", "leveling", "perks", "achievements", "boosts"]
)
async def test_each_demo_module_is_valid(api, module):
    modules = demo_modules()
    answer = await api.post("/v1/admin/config", {"version": "d1", "modules": modules})
    assert answer.status == 200, answer.body
    state = await api.get(f"/v1/admin/config/{module}")
    assert state.body["active_version"] == "d1"
    assert state.body["body"] == json.loads(json.dumps(modules[module]))


async def test_version_lifecycle(configured):
    first = await configured.post("/v1/admin/config/events", {"version": "e1", "body": with_rule()})
    assert first.status == 200 and first.body["active"] is True
    assert len(first.body["checksum"]) == 64 and first.body["activated_at"].endswith("Z")
    same = await configured.post("/v1/admin/config/events", {"version": "e1", "body": with_rule()})
    assert same.status == 200 and same.body["checksum"] == first.body["checksum"]
    changed = await configured.post(
        "/v1/admin/config/events", {"version": "e1", "body": with_rule(name="Renamed")}
    )
    assert (changed.status, changed.body["error"]) == (400, "version_conflict")
    # A draft is stored but changes nothing.
    draft = await configured.post(
        "/v1/admin/config/events",
        {
            "version": "e2",
            "active": False,
            "body": with_rule(award=[{"wallet": "points", "amount": 99}]),
        },
    )
    assert draft.status == 200 and draft.body["active"] is False
    assert draft.body["activated_at"] is None
    state = await configured.get("/v1/admin/config/events")
    assert state.body["active_version"] == "e1"
    assert [v["version"] for v in state.body["versions"]] == ["e1", "e2"]
    assert (
        await configured.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "a"})
    ).body["delta"][0]["amount"] == 10
    # Activating the draft: the same request with active true; the next event sees it.
    again = await configured.post(
        "/v1/admin/config/events",
        {
            "version": "e2",
            "active": True,
            "body": with_rule(award=[{"wallet": "points", "amount": 99}]),
        },
    )
    assert again.status == 200 and again.body["active"] is True
    out = await configured.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "b"})
    assert out.body["delta"] == [{"wallet": "points", "amount": 99}]
    assert out.body["wallet_state"] == {"points": 109}
    assert out.body["breakdown"][0]["program_version"] == "e2"


async def test_a_draft_is_validated_on_its_own(api):
    # References another module's key that is not active: fine for a draft...
    draft = await api.post(
        "/v1/admin/config/events", {"version": "x", "active": False, "body": with_rule()}
    )
    assert draft.status == 200, draft.body
    # ...but its own shape is still checked.
    bad = await api.post(
        "/v1/admin/config/events", {"version": "y", "active": False, "body": {"rulez": []}}
    )
    assert bad.body["error"] == "invalid_config"


async def test_multi_module_is_all_or_nothing(api):
    modules = demo_modules()
    broken = copy.deepcopy(modules)
    broken["perks"]["perks"][1]["trigger"]["streak"] = "missing"
    answer = await api.post("/v1/admin/config", {"version": "m1", "modules": broken})
    assert answer.status == 400
    assert answer.body["details"][0]["path"] == "modules.perks.perks[1].trigger.streak"
    for module in modules:
        assert (await api.get(f"/v1/admin/config/{module}")).body["active_version"] is None
    good = await api.post("/v1/admin/config", {"version": "m1", "modules": modules})
    assert good.status == 200
    assert set(good.body["modules"]) == set(modules)
    # A rename no single module can do: the wallet and everything naming it, in one step.
    renamed = json.loads(json.dumps(modules).replace('"points"', '"coins"'))
    answer = await api.post("/v1/admin/config", {"version": "m2", "modules": renamed})
    assert answer.status == 200, answer.body
    conflict = await api.post("/v1/admin/config", {"version": "m1", "modules": renamed})
    assert conflict.body["error"] == "version_conflict"
    assert (await api.get("/v1/admin/config/wallets")).body["active_version"] == "m2"


async def test_module_errors(api):
    unknown = await api.post("/v1/admin/config/rewards", {"version": "v", "body": {}})
    assert (unknown.status, unknown.body["error"]) == (404, "unknown_module")
    assert (await api.get("/v1/admin/config/rewards")).body["error"] == "unknown_module"
    never = await api.get("/v1/admin/config/boosts")
    assert never.body == {"module": "boosts", "active_version": None, "versions": [], "body": None}
    for body in (
        {"body": W},
        {"version": "", "body": W},
        {"version": "v"},
        {"version": "v", "body": []},
    ):
        answer = await api.post("/v1/admin/config/wallets", body)
        assert (answer.status, answer.body["error"]) == (400, "validation_error"), body


async def test_config_needs_the_admin_scope(runtime, pg_url):
    from tests.spaces import make_space

    writer = make_space(pg_url, scopes=["events:write", "profile:read"])
    api = Api(app_for(runtime), writer.key)
    answer = await api.post("/v1/admin/config/wallets", {"version": "v", "body": W})
    assert (answer.status, answer.body["error"]) == (403, "insufficient_scope")


async def test_another_process_sees_an_activation(pg_url, space, tmp_path):
    async with (
        open_runtime(Settings(data_dir=tmp_path), pg_url) as first,
        open_runtime(Settings(data_dir=tmp_path), pg_url) as second,
    ):
        a, b = Api(app_for(first), space.key), Api(app_for(second), space.key)
        await a.post("/v1/admin/config/wallets", {"version": "v0", "body": W})
        await a.post("/v1/admin/config/events", {"version": "e1", "body": with_rule()})
        out = await b.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "1"})
        assert out.body["delta"] == [{"wallet": "points", "amount": 10}]
        changed = with_rule(award=[{"wallet": "points", "amount": 7}])
        async with notified(second, CONFIG_CHANNEL):  # reaches the other runtime's catalog
            await a.post("/v1/admin/config/events", {"version": "e2", "body": changed})
        assert second.programs.cached(space.space.id) is None
        out = await b.post("/v1/events", {"user_id": "v", "event": "e", "transaction_id": "2"})
        assert out.body["delta"] == [{"wallet": "points", "amount": 7}]


async def test_a_program_is_compiled_once_and_shared_by_every_profile(pg_url, space, tmp_path):
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as uploader:
        api = Api(app_for(uploader), space.key)
        await api.post("/v1/admin/config", {"version": "d1", "modules": demo_modules()})
        assert uploader.programs.compilations == 0  # the activation installed it, compiled
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as fresh:  # a cold catalog
        api = Api(app_for(fresh), space.key)

        async def buy(n: int) -> None:
            body = {"user_id": f"u{n}", "event": "purchase.completed", "transaction_id": str(n)}
            assert (await api.post("/v1/events", body)).body["delta"][0]["amount"] == 50

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(buy, n)
        assert fresh.programs.compilations == 1  # twenty profiles, one compilation
        first = await fresh.programs.get(space.space.id)
        assert await fresh.programs.get(space.space.id) is first  # the same object is shared
