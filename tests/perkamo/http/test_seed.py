"""The seed's example, end to end over HTTP with the demo program."""

from __future__ import annotations

from typing import Any

from perkamo.configuration import activate_demo

SEED_EVENT_RESPONSE = {
    "applied": True,
    "duplicate": False,
    "delta": [{"wallet": "points", "amount": 50}],
    "leveled_up": False,
    "unlocked": [{"type": "perk", "key": "welcome_member", "name": "Welcome member"}],
    "wallet_state": {"points": 50},
    "level": {"wallet": "points", "level": 1, "current": 50, "nextLevelAt": 100,
              "currentLevelAt": 0, "progress": 0.5},
}  # fmt: skip


def restricted(value: Any, shape: Any) -> Any:
    """``value`` restricted to the keys of ``shape`` (extra keys are allowed)."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {k: restricted(value.get(k), v) for k, v in shape.items()}
    if isinstance(shape, list) and isinstance(value, list) and len(shape) == len(value):
        return [restricted(v, s) for v, s in zip(value, shape, strict=True)]
    return value


def same_types(value: Any, shape: Any) -> bool:
    if isinstance(shape, dict):
        return all(same_types(value[k], v) for k, v in shape.items())
    if isinstance(shape, list):
        return all(same_types(v, s) for v, s in zip(value, shape, strict=True))
    return type(value) is type(shape)


async def test_seed_example_field_for_field(api, runtime, space):
    assert await activate_demo(runtime.db, runtime.programs, space.space.id)
    ident = await api.post(
        "/v1/identify",
        {
            "tenant": space.slug,
            "user_id": "customer_123",
            "traits": {"plan": "premium", "country": "CZ"},
        },
    )
    assert ident.status == 200
    event = {
        "tenant": space.slug,
        "user_id": "customer_123",
        "event": "purchase.completed",
        "transaction_id": "order_1092",
        "context": {"amount": 12900, "currency": "CZK"},
        "occurred_at": "2026-06-01T10:00:00.000Z",
    }
    answer = await api.post("/v1/events", event)
    assert answer.status == 200
    assert restricted(answer.body, SEED_EVENT_RESPONSE) == SEED_EVENT_RESPONSE
    assert same_types(answer.body, SEED_EVENT_RESPONSE)  # 50 an int, 0.5 a number, level an int

    profile = (await api.get("/v1/profile/customer_123")).body
    assert profile["wallets"] == {"points": 50}
    assert profile["level"] == SEED_EVENT_RESPONSE["level"]
    assert profile["traits"] == {"plan": "premium", "country": "CZ"}
    assert [p["key"] for p in profile["perks"]] == ["welcome_member"]
    assert profile["perks"][0]["unlocked_at"] == "2026-06-01T10:00:00.000Z"
    assert profile["perks"][0]["metadata"] == {
        "trigger": {"type": "points_threshold", "wallet": "points", "amount": 30}
    }
    assert profile["next_perks"][0]["key"] == "active_user"
    assert profile["next_perks"][0]["name"] == "Active user"
    assert profile["next_perks"][0]["description"] == (
        "Daily habit perk for apps like progress trackers or banking."
    )
    assert profile["flags"] == {
        "levels": {"level_1": True},
        "has_level_at_least": {"level_1": True},
        "perks": {"welcome_member": True},
    }
    assert [a["key"] for a in profile["achievements"]["in_progress"]] == ["regular_customer"]
    assert profile["events"][0]["transaction_id"] == "order_1092"
    assert profile["streaks"] == [] and profile["active_boosts"] == []

    program = (await api.get("/v1/program")).body
    assert [r["event"] for r in program["blueprint"]["earningRules"]][0] == "purchase.completed"
    assert program["versions"]["wallets"] == "2026-06-01"
    assert program["metrics"]["issued"] == {"points": 50}
    assert program["usage"]["meters"]["events"]["used"] == 1


async def test_a_streak_shows_in_the_profile_and_unlocks_the_habit_perk(api, runtime, space):
    assert await activate_demo(runtime.db, runtime.programs, space.space.id)
    for day in range(1, 8):
        out = await api.post(
            "/v1/events",
            {"user_id": "daily", "event": "app.opened", "transaction_id": f"open-{day}",
             "occurred_at": f"2026-06-{day:02d}T08:00:00Z"},
        )  # fmt: skip
    assert [u["key"] for u in out.body["unlocked"]] == ["daily_active:7", "active_user"]
    assert out.body["delta"] == [{"wallet": "points", "amount": 20}]
    streak = (await api.get("/v1/profile/daily")).body["streaks"][0]
    assert streak["current"] == 0 and streak["status"] == "broken"  # June is long past
    assert streak["longest"] == 7 and streak["last_period"] == "2026-06-07"
