"""docs/api.md "Failure isolation" (defect D1 of the robustness issue): an unexpected error while
applying one write fails that write alone — in a batch, that item's ``internal_error`` inside
the 200 — and every other item, profile and queued write of the same profile is answered
normally. A 500 is never the answer for a request whose items were committed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import trio

from perkamo.profiles.commands import event as event_command
from tests.api_client import app_for
from tests.spaces import committed

PROGRAM = {
    "version": "v1",
    "modules": {
        "wallets": {"wallets": [{"key": "points", "name": "Points"}]},
        "events": {
            "rules": [
                {"key": "per_amount", "name": "Per amount", "event": "purchase.completed",
                 "award": [{"wallet": "points", "formula": "{{amount}} / 100", "rounding": "floor"}]},
                {"key": "opened", "name": "Opened", "event": "app.opened",
                 "award": [{"wallet": "points", "amount": 1}]},
            ]
        },
    },
}  # fmt: skip


def ev(user: str, event: str, tx: str, **context: Any) -> dict[str, Any]:
    return {"user_id": user, "event": event, "transaction_id": tx, "context": context}


async def test_the_reported_batch_is_answered_item_by_item(api, space, pg_url):
    """The report: one good item and one whose award left the decimal context answered 500
    for the whole batch, although the good one was committed."""
    assert (await api.post("/v1/admin/config", PROGRAM)).status == 200
    raw = (
        b'{"events": [{"user_id": "c2", "event": "app.opened", "transaction_id": "ok-1"},'
        b' {"user_id": "c3", "event": "purchase.completed", "transaction_id": "o2",'
        b' "context": {"amount": 1e40}}]}'
    )
    answer = await api.post(
        "/v1/events:batch", data=raw, headers={"content-type": "application/json"}
    )
    assert answer.status == 200
    good, extreme = answer.body["results"]
    assert good["applied"] and good["delta"] == [{"wallet": "points", "amount": 1}]
    assert extreme["applied"] and extreme["delta"] == [] and extreme["breakdown"] == []
    assert extreme["skipped"] == [
        {"rule": "per_amount", "wallet": "points", "reason": "formula_input"}
    ]
    assert committed(pg_url, space.space.id) == {"ok-1": 1, "o2": 1}
    # A fixed award out of range is refused at upload instead of failing every event later.
    fixed = {"rules": [{"key": "r", "name": "R", "event": "e", "award": [{"wallet": "points", "amount": Decimal("1e40")}]}]}  # fmt: skip
    body = msgspec.json.Encoder(decimal_format="number").encode({"version": "v2", "body": fixed})
    refused = await api.post(
        "/v1/admin/config/events", data=body, headers={"content-type": "application/json"}
    )
    assert (refused.status, refused.body["error"]) == (400, "invalid_config")


def explode_on(event_name: str, monkeypatch) -> None:
    """A defect inside the engine, for one event name only."""
    real = event_command.apply

    def apply(state, event, program, received_at):
        if event.event == event_name:
            raise RuntimeError("a defect")
        return real(state, event, program, received_at)

    monkeypatch.setattr(event_command, "apply", apply)


async def test_a_defect_fails_only_its_batch_item(api, space, pg_url, monkeypatch):
    assert (await api.post("/v1/admin/config", PROGRAM)).status == 200
    explode_on("explode", monkeypatch)
    items = [
        ev("u1", "app.opened", "a1"),
        ev("u1", "explode", "a2"),
        ev("u1", "app.opened", "a3"),
        ev("u2", "app.opened", "a4"),
        ev("u2", "explode", "a5"),
    ]
    answer = await api.post("/v1/events:batch", {"events": items})
    assert answer.status == 200
    results = answer.body["results"]
    assert [r.get("error", {}).get("error") for r in results] == [
        None, "internal_error", None, None, "internal_error",
    ]  # fmt: skip
    assert [r["wallet_state"] for r in results if "error" not in r] == [
        {"points": 1}, {"points": 2}, {"points": 1},
    ]  # fmt: skip
    assert committed(pg_url, space.space.id) == {"a1": 1, "a3": 1, "a4": 1}
    # The profile reloads from storage before its next write and carries on.
    later = await api.post("/v1/events", ev("u1", "app.opened", "a6"))
    assert later.body["wallet_state"] == {"points": 3}
    profile = (await api.get("/v1/profile/u1")).body
    assert [e["transaction_id"] for e in profile["events"]] == ["a6", "a3", "a1"]
    monkeypatch.undo()
    retried = await api.post("/v1/events", ev("u1", "explode", "a2"))
    assert retried.status == 200 and retried.body["duplicate"] is False


async def test_concurrent_writes_of_one_profile_survive_a_defect_in_one(
    runtime, space, pg_url, monkeypatch
):
    """29 good events and one that hits a defect, all at once for one user: the 29 are
    answered 200 and committed, the bad one alone is a 500."""
    client = app_for(runtime).test_client()
    headers = {"x-perkamo-api-key": space.key, "content-type": "application/json"}
    await client.post(
        "/v1/admin/config",
        data=msgspec.json.encode(PROGRAM),
        headers=headers,
        scope_base={"raw_path": b"/v1/admin/config"},
    )
    explode_on("explode", monkeypatch)
    statuses: dict[str, int] = {}

    async def send(n: int) -> None:
        tx = f"c{n}"
        body = ev("hot", "explode" if n == 17 else "app.opened", tx)
        response = await client.post(
            "/v1/events",
            data=msgspec.json.encode(body),
            headers=headers,
            scope_base={"raw_path": b"/v1/events"},
        )
        statuses[tx] = response.status_code
        if response.status_code != 200:
            assert msgspec.json.decode(await response.get_data())["error"] == "internal_error"

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(send, n)
    assert statuses.pop("c17") == 500
    assert set(statuses.values()) == {200}
    assert set(committed(pg_url, space.space.id)) == set(statuses)
    with psycopg.connect(pg_url) as conn:
        balance = conn.execute(
            "SELECT state -> 'wallets' -> 'points' ->> 'balance' FROM profiles"
            " WHERE space_id = %s AND user_id = 'hot'",
            (space.space.id,),
        ).fetchone()
    assert balance is not None and int(balance[0]) == 29
