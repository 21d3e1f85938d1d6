"""Lots in the console: the "Reverse" action on an event's page (admins, with a reason,
post-redirect-get), pending and expiring points and the ledger's release, expiry and return
entries on the customer's page, expired points out of the liability in analytics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from tests.api_client import app_for
from tests.browser import SHOP
from tests.browser import Browser as ShopPage
from tests.perkamo.console.helpers import Browser, add_operator, text_of

PROGRAM = {
    "wallets": {"wallets": [{"key": "points", "name": "Points", "pending_days": 14,
                             "expiry": {"after_days": 30}}]},
    "events": {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                          "award": [{"wallet": "points", "formula": "{{n}}"}]}]},
    # The demo program's other modules go (they name its streaks and events).
    "leveling": {}, "perks": {}, "achievements": {}, "boosts": {},
}  # fmt: skip


def ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def lots_shop(api) -> None:
    assert (
        await api.post("/v1/admin/config", {"version": "lots", "modules": PROGRAM})
    ).status == 200


async def test_an_admin_reverses_an_event_from_its_page(console, space, pg_url, runtime):
    browser, api = console
    await lots_shop(api)
    # 20 days old: its 14 pending days are over, released within the write; 16 days old…
    for tx, n, days in (("o-1", 60, 20), ("o-2", 25, 1)):
        body = {"user_id": "c", "event": "buy", "transaction_id": tx, "context": {"n": n},
                "occurred_at": ago(days)}  # fmt: skip
        assert (await api.post("/v1/events", body)).status == 200
    page = f"/console/spaces/{space.slug}/events/o-1"
    shown = await browser.get(page)
    assert "Reverse" in shown.text and "Not reversed" not in text_of(shown.text)
    token = shown.csrf()
    refused = await browser.post_and_follow(page + "/reverse", {"csrf_token": token, "reason": ""})
    assert "Say why you reverse the event." in text_of(refused.text)
    done = await browser.post_and_follow(page + "/reverse", {"csrf_token": token,
                                                             "reason": "order returned"})  # fmt: skip
    words = text_of(done.text)
    assert "Reversed event o-1." in words and "order returned" in words
    assert "Taken back: points −60" in words or "Taken back: points -60" in words
    again = await browser.post_and_follow(page + "/reverse", {"csrf_token": token, "reason": "x"})
    assert "already reversed" in text_of(again.text)  # no form any more: a repeat is harmless
    profile = (await api.get("/v1/profile/c")).body
    assert profile["wallets"] == {"points": 0} and profile["events"][1]["status"] == "reversed"
    viewer = Browser(app_for(runtime))
    email, password = add_operator(pg_url, "viewer", "viewer")
    assert (await viewer.login(email, password)).status == 303
    seen = await viewer.get(f"/console/spaces/{space.slug}/events/o-2")
    assert 'name="reason"' not in seen.text  # the form is for admins only
    posted = await viewer.post(f"/console/spaces/{space.slug}/events/o-2/reverse",
                               {"csrf_token": seen.csrf(), "reason": "x"})  # fmt: skip
    assert posted.status == 403


async def test_the_customer_page_shows_pending_expiring_and_the_ledgers_settling(console, space):
    browser, api = console
    await lots_shop(api)
    for tx, n, days in (("o-1", 50, 40), ("o-2", 30, 20), ("o-3", 7, 1)):
        body = {"user_id": "c", "event": "buy", "transaction_id": tx, "context": {"n": n},
                "occurred_at": ago(days)}  # fmt: skip
        assert (await api.post("/v1/events", body)).status == 200
    assert (await api.post("/v1/admin/events/o-3/reverse", {"reason": "returned"})).status == 200
    page = await browser.get(f"/console/spaces/{space.slug}/customers/c")
    words = text_of(page.text)
    assert "30 Points · earned 80 · expired 50" in words, words  # o-1 expired 10 days ago
    expires = (datetime.now(UTC) - timedelta(days=20)).date() + timedelta(days=31)
    assert f"30 expire {expires.isoformat()}" in words
    assert "release points +50 no longer pending" in words  # o-1 released within its write
    assert "expiry points −50 expired" in words
    assert "points -7 pending; return of event buy: returned" in words
    assert "points +7 pending" in words  # o-3 waits 14 days


async def test_analytics_take_expired_points_out_of_the_liability(console, space):
    browser, api = console
    await lots_shop(api)
    body = {"user_id": "a", "event": "buy", "transaction_id": "old", "context": {"n": 50},
            "occurred_at": ago(40)}  # fmt: skip
    assert (await api.post("/v1/events", body)).status == 200
    body = {"user_id": "a", "event": "buy", "transaction_id": "new", "context": {"n": 20}}
    assert (await api.post("/v1/events", body)).status == 200
    page = await browser.get(f"/console/spaces/{space.slug}/analytics")
    words = text_of(page.text)
    # Issued 50 + 20 (20 of them pending: still owed), 50 expired: 20 outstanding.
    assert "20 outstanding now" in words, words
    assert "70 issued, 0 spent or removed, 50 expired" in words


async def test_a_wallets_lot_settings_are_kept_and_edited_by_its_form(console, space, pg_url):
    browser, api = console
    await lots_shop(api)
    wallets = f"/console/spaces/{space.slug}/program/wallets"
    page = await browser.get(wallets + "/edit?kind=wallet&key=points")
    assert page.status == 200 and 'name="pending_days" type="text" value="14"' in page.text
    assert 'name="expiry_after_days" type="text" value="30"' in page.text
    form = {"csrf_token": page.csrf(), "kind": "wallet", "base_version": "lots",
            "original_key": "points", "key": "points", "name": "Points", "spendable": "on",
            "pending_days": "7", "expiry_after_days": "", "expiry_end_of": "quarter",
            "expiry_after_periods": "4", "expiry_timezone": "Europe/Prague",
            "label": "quarterly"}  # fmt: skip
    saved = await browser.post_and_follow(wallets + "/save", form)
    assert "Draft quarterly saved" in saved.text
    both = await browser.post_and_follow(
        wallets + "/save", {**form, "expiry_after_days": "30", "label": "both"}
    )
    assert "needs exactly one of after_days or end_of" in both.text  # refused, said where
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT version, body FROM config_versions WHERE space_id = %s AND"
            " module = 'wallets' AND version IN ('quarterly', 'both')",
            (space.space.id,),
        ).fetchall()
    [(version, body)] = rows
    assert version == "quarterly"
    assert body["wallets"][0] == {
        "key": "points", "name": "Points", "allow_negative": False, "spendable": True,
        "pending_days": 7,
        "expiry": {"end_of": "quarter", "after_periods": 4, "timezone": "Europe/Prague"},
    }  # fmt: skip


async def test_a_browser_sent_event_has_its_own_page_and_reverse(console, space):
    """A server event and a browser's event with the same id: each its own page, reversed
    apart (a browser's ids are its customer's own)."""
    browser, api = console
    await lots_shop(api)
    body = {"user_id": "c", "event": "buy", "transaction_id": "o-1", "context": {"n": 9}}
    assert (await api.post("/v1/events", body)).status == 200
    created = await api.post("/v1/admin/browser-keys", {
        "name": "Shop", "allowed_origins": [SHOP], "allowed_events": ["buy"]})  # fmt: skip
    page_of = ShopPage(api, space, created.body["key"], created.body["id"])
    sent = await page_of.call("POST", "/v1/client/events", await page_of.token("c"),
                              json={"event": "buy", "transaction_id": "o-1",
                                    "context": {"n": 2}})  # fmt: skip
    assert sent.status == 200, sent.body
    listed = await browser.get(f"/console/spaces/{space.slug}/events")
    assert f"/console/spaces/{space.slug}/events/o-1?client=c" in listed.text
    ledger = await browser.get(f"/console/spaces/{space.slug}/customers/c")
    assert f"/console/spaces/{space.slug}/events/o-1?client=c" in ledger.text
    assert f'href="/console/spaces/{space.slug}/events/o-1"' in ledger.text  # the server's
    page = f"/console/spaces/{space.slug}/events/o-1"
    shown = await browser.get(page + "?client=c")
    assert "sent by the customer" in text_of(shown.text) and 'name="client"' in shown.text
    done = await browser.post_and_follow(page + "/reverse", {
        "csrf_token": shown.csrf(), "reason": "cheat", "client": "c"})  # fmt: skip
    words = text_of(done.text)
    assert "Reversed event o-1." in words and "sent by the customer" in words
    assert "points -2 pending" in words, words  # the pending points go first
    server_page = text_of((await browser.get(page)).text)
    assert "Not reversed" not in server_page and "sent by the customer" not in server_page
    assert (await api.get("/v1/profile/c")).body["wallet_details"]["points"]["pending"] == 9
