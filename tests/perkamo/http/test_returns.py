"""``POST /v1/admin/events/{transaction_id}/reverse`` (docs/api.md "Support operations",
docs/program.md "Returns: reversing an event"): the answer, its idempotency, 404
``event_not_found``, the profile's events entry, the ``event.reversed`` webhook, the scope,
``perkamo reverse-event``, ``perkamo verify``, and a browser-sent event reversed apart from
a server event of the same id."""

from __future__ import annotations

import json

import psycopg
import trio

from perkamo.access import admin
from perkamo.cli.main import main
from tests.api_client import Api, app_for
from tests.browser import SHOP, Browser
from tests.spaces import make_space

PROGRAM = {
    "wallets": {
        "wallets": [{"key": "points", "name": "Points", "expiry": {"after_days": 365}}],
        "rewards": [{"key": "gift", "name": "Gift", "cost": {"wallet": "points", "amount": 25},
                     "effect": {"type": "gift"}}],
    },
    "events": {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                          "award": [{"wallet": "points", "formula": "{{n}}"}]}]},
    "leveling": {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 100}]},
}  # fmt: skip


async def shop(api: Api) -> Api:
    answer = await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
    assert answer.status == 200, answer.body
    return api


async def earn(api: Api, user: str, n: int, tx: str) -> None:
    body = {"user_id": user, "event": "buy", "transaction_id": tx, "context": {"n": n}}
    assert (await api.post("/v1/events", body)).status == 200


async def test_a_return_takes_back_what_is_left_and_records_the_shortfall(api, space, pg_url):
    await shop(api)
    with psycopg.connect(pg_url) as conn:  # deliveries to a closed port: only their bodies
        admin.set_webhook(conn, space.slug, "http://127.0.0.1:9/hooks")
    await earn(api, "c", 120, "order-1")
    redeemed = await api.post(
        "/v1/rewards/redeem", {"user_id": "c", "reward_key": "gift", "transaction_id": "g1"}
    )
    assert redeemed.status == 200
    answer = await api.post(
        "/v1/admin/events/order-1/reverse", {"reason": "returned", "actor": "ann"}
    )
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["reversed"] is True and body["duplicate"] is False
    assert body["delta"] == [{"wallet": "points", "amount": -95}]  # what was left of 120
    assert body["shortfall"] == [{"wallet": "points", "amount": 25}]  # the gift was spent
    assert body["pending"] == [] and body["leveled_down"] is True
    assert body["wallet_state"] == {"points": 0} and body["level"]["level"] == 1
    event = body["event"]
    assert (event["transaction_id"], event["event"], event["status"]) == (
        "order-1",
        "buy",
        "reversed",
    )
    assert (event["reason"], event["actor"]) == ("returned", "ann")
    repeat = await api.post("/v1/admin/events/order-1/reverse", {"reason": "another reason"})
    assert repeat.status == 200 and repeat.body == {**body, "duplicate": True}
    profile = (await api.get("/v1/profile/c")).body
    entry = profile["events"][0]
    assert entry["transaction_id"] == "order-1" and entry["status"] == "reversed"
    assert entry["reversed_at"] == event["reversed_at"]
    assert profile["wallet_details"]["points"]["earned"] == 0
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT body FROM webhook_deliveries WHERE space_id = %s AND event_type = %s",
            (space.space.id, "event.reversed"),
        ).fetchall()
        audit = conn.execute(
            "SELECT action, target, reason FROM audit_log WHERE space_id = %s"
            " AND action = 'customer.reverse_event'",
            (space.space.id,),
        ).fetchall()
    [(text,)] = rows
    data = json.loads(text)["data"]
    assert (data["user_id"], data["transaction_id"]) == ("c", "order-1")
    assert data["delta"] == body["delta"] and data["shortfall"] == body["shortfall"]
    assert data["wallet_state"] == {"points": 0} and data["event"]["reason"] == "returned"
    assert audit == [("customer.reverse_event", "order-1", "returned")]
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0
    metrics = (await api.get("/v1/program")).body["metrics"]
    assert metrics["reversals"] == 1  # returns count with redemption reversals


async def test_an_unknown_or_refused_event_is_not_found(api, space):
    await shop(api)
    missing = await api.post("/v1/admin/events/nope/reverse", {"reason": "x"})
    assert missing.status == 404 and missing.body["error"] == "event_not_found"
    refused = await api.post("/v1/events", {"user_id": "c", "event": "buy",
                                            "transaction_id": "bad", "context": {"n": "x"},
                                            "occurred_at": "2999-01-01T00:00:00Z"})  # fmt: skip
    assert refused.status == 400
    answer = await api.post("/v1/admin/events/bad/reverse", {"reason": "x"})
    assert answer.status == 404 and answer.body["error"] == "event_not_found"
    empty = await api.post("/v1/admin/events/nope/reverse", {"reason": ""})
    assert empty.status == 400


async def test_reversing_needs_the_support_scope(runtime, pg_url):
    space = make_space(pg_url, scopes=["events:write", "profile:read"])
    api = Api(app_for(runtime), space.key)
    answer = await api.post("/v1/admin/events/x/reverse", {"reason": "x"})
    assert answer.status == 403


async def test_perkamo_reverse_event_from_the_command_line(api, space, pg_url, capsys):
    await shop(api)
    await earn(api, "c", 40, "order-9")
    common = ["--database-url", pg_url]
    code = await trio.to_thread.run_sync(
        lambda: main(["reverse-event", space.slug, "order-9", "--reason", "returned", *common])
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "reversed event order-9 of c: points -40" in out and "balances now: points 0" in out
    again = await trio.to_thread.run_sync(
        lambda: main(
            ["reverse-event", space.slug, "order-9", "--reason", "again", "--json", *common]
        )  # fmt: skip
    )
    assert again == 0 and '"duplicate":true' in capsys.readouterr().out
    missing = await trio.to_thread.run_sync(
        lambda: main(["reverse-event", space.slug, "nope", "--reason", "x", *common])
    )
    assert missing == 2 and "event_not_found" in capsys.readouterr().err
    assert (await api.get("/v1/profile/c")).body["wallets"] == {"points": 0}


async def test_a_browser_sent_event_is_reversed_apart_from_a_server_event_of_the_same_id(
    api, space
):
    await shop(api)
    created = await api.post("/v1/admin/browser-keys", {
        "name": "Shop", "allowed_origins": [SHOP], "allowed_events": ["buy"]})  # fmt: skip
    assert created.status == 201, created.body
    browser = Browser(api, space, created.body["key"], created.body["id"])
    await earn(api, "c", 10, "order-1")
    sent = await browser.call("POST", "/v1/client/events", await browser.token("c"),
                              json={"event": "buy", "transaction_id": "order-1",
                                    "context": {"n": 4}})  # fmt: skip
    assert sent.status == 200 and sent.body["duplicate"] is False, sent.body

    no_user = await api.post("/v1/admin/events/order-1/reverse",
                             {"reason": "r", "source": "client"})  # fmt: skip
    assert no_user.status == 400 and no_user.body["error"] == "validation_error"
    elsewhere = await api.post("/v1/admin/events/order-1/reverse",
                               {"reason": "r", "source": "client", "user_id": "d"})  # fmt: skip
    assert elsewhere.status == 404 and elsewhere.body["error"] == "event_not_found"
    not_theirs = await api.post("/v1/admin/events/order-1/reverse",
                                {"reason": "r", "user_id": "d"})  # fmt: skip
    assert not_theirs.status == 404 and not_theirs.body["error"] == "event_not_found"

    bad = await api.post("/v1/admin/events/order-1/reverse?source=browser&user_id=c",
                         {"reason": "r"})  # fmt: skip
    assert bad.status == 400 and bad.body["details"][0]["path"] == "source"
    # Named in the query, as the API names it (the body's fields say the same).
    client = await api.post("/v1/admin/events/order-1/reverse?source=client&user_id=c",
                            {"reason": "r"})  # fmt: skip
    assert client.status == 200, client.body
    assert client.body["delta"] == [{"wallet": "points", "amount": -4}]
    assert client.body["event"]["source"] == "client"
    assert client.body["wallet_state"] == {"points": 10}
    again = await api.post("/v1/admin/events/order-1/reverse",
                           {"reason": "x", "source": "client", "user_id": "c"})  # fmt: skip
    assert again.body == {**client.body, "duplicate": True}

    server = await api.post("/v1/admin/events/order-1/reverse", {"reason": "r"})
    assert server.status == 200 and server.body["duplicate"] is False
    assert server.body["delta"] == [{"wallet": "points", "amount": -10}]
    assert server.body["event"]["source"] == "server"
    statuses = {(e["source"], e["status"]) for e in (await api.get("/v1/profile/c")).body["events"]}
    assert statuses == {("client", "reversed"), ("server", "reversed")}
