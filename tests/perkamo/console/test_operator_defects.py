"""The defects a new operator met (issue 27), each reproduced through the real app as a
browser would meet it; the layout ones (a long id widening a page, the slug pattern, the
header at 390 px) are in the browser walk."""

from __future__ import annotations

import html
import json
import re

import psycopg
import trio

from perkamo.access.admin import set_webhook
from perkamo.cli.main import main
from tests.notifications import notified
from tests.perkamo.console.helpers import text_of
from tests.server_process import demo_program


def audit_rows(pg_url: str, space_id: int, action: str) -> list[tuple]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT actor, target, reason FROM audit_log WHERE space_id = %s AND action = %s"
            " ORDER BY id",
            (space_id, action),
        ).fetchall()


async def test_1_try_works_on_a_fresh_module_page(console, space):
    browser, _ = console
    base = f"/console/spaces/{space.slug}/program/events"
    editor = await browser.get(base)
    version = re.search(r'name="version" value="([^"]+)"', editor.text).group(1)
    body = html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", editor.text, re.S).group(1))
    tried = await browser.post(
        base + "/try",
        {
            "csrf_token": editor.csrf(),
            "version": version,
            "body": body,
            "event": "purchase.completed",
            "context": '{"amount": 12900, "currency": "CZK"}',
        },
    )
    assert tried.status == 200
    assert "has no version" not in tried.text
    assert "the same outcome as the active program" in text_of(tried.text)


async def test_2_try_speaks_in_words_and_numbers_and_keeps_the_form(console, space):
    browser, _ = console
    base = f"/console/spaces/{space.slug}/program/events"
    editor = await browser.get(base)
    events = demo_program()["modules"]["events"]
    events["rules"][0]["award"] = [{"wallet": "points", "amount": 100}]
    typed = json.dumps(events)
    tried = await browser.post(
        base + "/try",
        {
            "csrf_token": editor.csrf(),
            "version": "mine",
            "body": typed,
            "user_id": "nobody-yet",
            "event": "purchase.completed",
            "context": '{"amount": 12900, "currency": "CZK"}',
        },
    )
    words = text_of(tried.text)
    assert "Decimal(" not in tried.text and "{'points'" not in tried.text
    assert "points: +100 instead of +50 (+50)" in words
    assert "“Points for purchases” gives +100 Points" in words
    assert html.unescape(tried.text).count(typed) == 1  # the unsaved body is still there
    assert 'name="user_id" value="nobody-yet"' in tried.text


async def test_3_a_refresh_never_creates_a_second_key_or_misnames_an_expiring_one(
    console, space, pg_url
):
    browser, _ = console
    keys = f"/console/spaces/{space.slug}/keys"
    token = await browser.csrf()
    created = await browser.post(keys, {"csrf_token": token})
    assert created.status == 303  # post → redirect → get
    shown = await browser.get(created.location)
    new = re.search(r'<code id="new-key">(sk_test_\w+)</code>', shown.text).group(1)
    refreshed = await browser.get(created.location)  # F5 on the page the browser shows
    assert new not in refreshed.text  # shown once
    assert len(audit_rows(pg_url, space.space.id, "key.create")) == 1
    key_id = re.search(r"New key (key_\w+)", shown.text).group(1)
    rotate = {"csrf_token": token, "grace": "1d", "reason": "routine"}
    rotated = await browser.post_and_follow(f"{keys}/{key_id}/rotate", rotate)
    assert "rotated: works until" in rotated.text and "sk_test_" in rotated.text
    again = await browser.post_and_follow(f"{keys}/{key_id}/rotate", rotate)  # a resubmit
    assert "already revoked" not in again.text
    assert "already rotated: it stops working" in again.text
    assert len(audit_rows(pg_url, space.space.id, "key.rotate")) == 1


async def test_4_find_reaches_redemptions_adjustments_emails_and_id_prefixes(console, space):
    browser, api = console
    await api.post("/v1/identify", {"user_id": "petra-77", "traits": {"email": "Petra@Shop.io"}})
    body = {
        "user_id": "petra-77",
        "event": "purchase.completed",
        "transaction_id": "o-4",
        "context": {"amount": 50000, "currency": "CZK"},
    }
    assert (await api.post("/v1/events", body)).status == 200
    adjust = {
        "user_id": "petra-77",
        "wallet": "points",
        "amount": 50,
        "reason": "goodwill",
        "transaction_id": "adj-4",
    }
    adjusted = await api.post("/v1/admin/adjustments", adjust)
    redeem = {"user_id": "petra-77", "reward_key": "free_shipping", "transaction_id": "rd-4"}
    assert (await api.post("/v1/rewards/redeem", redeem)).status == 200
    find = f"/console/spaces/{space.slug}/find?q="
    customer = f"/console/spaces/{space.slug}/customers/petra-77"
    assert (await browser.get(find + "rd-4")).location == customer + "#tx-rd-4"
    assert (await browser.get(find + "adj-4")).location == customer + "#tx-adj-4-adjustment"
    by_id = await browser.get(find + adjusted.body["adjustment_id"])
    assert by_id.location == customer + "#tx-adj-4-adjustment"
    for q in ("petra@shop.io", "petra-"):
        found = await browser.get(find + q)
        assert found.status == 303 and "/customers?q=" in found.location
        listed = await browser.get(found.location)
        assert "petra-77" in listed.text


async def test_5_a_redemptions_delivery_leads_to_the_redemption(console, space, pg_url, runtime):
    browser, api = console
    async with notified(runtime):  # the server learns of the endpoint
        with psycopg.connect(pg_url) as conn:
            set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    body = {
        "user_id": "rita",
        "event": "purchase.completed",
        "transaction_id": "o-5",
        "context": {"amount": 50000, "currency": "CZK"},
    }
    assert (await api.post("/v1/events", body)).status == 200
    adjust = {
        "user_id": "rita",
        "wallet": "points",
        "amount": 50,
        "reason": "goodwill",
        "transaction_id": "adj-5",
    }
    assert (await api.post("/v1/admin/adjustments", adjust)).status == 200
    redeem = {"user_id": "rita", "reward_key": "free_shipping", "transaction_id": "rd-5"}
    assert (await api.post("/v1/rewards/redeem", redeem)).status == 200
    listing = await browser.get(f"/console/spaces/{space.slug}/webhooks?type=reward.redeemed")
    link = html.unescape(re.search(r'href="([^"]*find\?q=rd-5[^"]*)"', listing.text).group(1))
    landed = await browser.get(link)
    assert landed.status == 303
    assert landed.location.endswith("/customers/rita#tx-rd-5")
    assert (await browser.get(landed.location.split("#")[0])).status == 200


async def test_6_an_events_delivery_link_lands_on_that_delivery(console, space, pg_url, runtime):
    browser, api = console
    async with notified(runtime):  # the server learns of the endpoint
        with psycopg.connect(pg_url) as conn:
            set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    body = {"user_id": "sam", "event": "app.opened", "transaction_id": "o-6"}
    assert (await api.post("/v1/events", body)).status == 200
    event = await browser.get(f"/console/spaces/{space.slug}/events/o-6")
    link = re.search(r'href="(/console/spaces/[^"]+/webhooks/(dlv_\w+))"', event.text)
    delivery = await browser.get(link.group(1))
    assert delivery.status == 200
    assert f'Delivery <span class="mono"><span class="id" title="{link.group(2)}"' in (
        delivery.text
    )
    assert "Payload as sent" in delivery.text
    assert '"transaction_id":"o-6"' in html.unescape(delivery.text)


async def test_7_a_paused_endpoint_says_paused_with_its_unreachable_attempts(
    console, runtime, space, pg_url
):
    browser, api = console
    async with notified(runtime):  # the server learns of the endpoint
        with psycopg.connect(pg_url) as conn:
            set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")  # nothing listens there
    for n in range(7):
        body = {"user_id": f"u{n}", "event": "app.opened", "transaction_id": f"o-7-{n}"}
        assert (await api.post("/v1/events", body)).status == 200
    runtime.webhooks.kick()
    page = ""
    with trio.fail_after(15):
        while "paused" not in page:
            await trio.sleep(0.2)
            page = (await browser.get(f"/console/spaces/{space.slug}/webhooks")).text
    words = text_of(page)
    assert re.search(r"paused until .+ , after \d+ unreachable attempts in a row", words), words
    assert 'class="badge enabled"' not in page


async def test_9_banners_never_come_from_the_url(console, space):
    browser, _ = console
    lure = "Your session was revoked. Call support at +1 555 0100"
    for path in ("/program", "/keys", "/customers/x", "/webhooks"):
        page = await browser.get(f"/console/spaces/{space.slug}{path}?error={lure}&notice={lure}")
        assert "Call support" not in page.text, path


async def test_11_an_activation_error_is_said_once_and_keeps_the_choice(console, space):
    browser, _ = console
    token = await browser.csrf()
    base = f"/console/spaces/{space.slug}/program"
    refused = await browser.post_and_follow(
        base + "/activate",
        {"csrf_token": token, "module:events": "nope", "reason": "launch the summer rules"},
    )
    assert refused.status == 200
    assert text_of(refused.text).count("Nothing was activated") == 1
    assert 'name="module:events" value="nope"' in refused.text
    assert 'value="launch the summer rules"' in refused.text


async def test_12_every_problem_shows_at_once_and_an_unknown_wallet_warns(console, space):
    browser, _ = console
    base = f"/console/spaces/{space.slug}/program/events"
    token = await browser.csrf()
    rules = [
        {"key": "a", "name": "A", "event": "x", "award": [{"wallet": "points", "amount": "ten"}]},
        {"key": "b", "name": "B", "event": "y", "award": [{"wallet": "points"}]},
        {
            "key": "c",
            "name": "C",
            "event": "z",
            "award": [{"wallet": "points", "amount": 1}],
            "limits": {"per_user": -1},
        },
    ]
    saved = await browser.post_and_follow(
        base, {"csrf_token": token, "version": "three", "body": json.dumps({"rules": rules})}
    )
    for path in (
        "body.rules[0].award[0].amount",
        "body.rules[1].award[0]",
        "body.rules[2].limits.per_user",
    ):
        assert path in saved.text, path
    unknown = {
        "rules": [
            {"key": "a", "name": "A", "event": "x", "award": [{"wallet": "stars", "amount": 1}]}
        ]
    }
    warned = await browser.post_and_follow(
        base, {"csrf_token": token, "version": "stars", "body": json.dumps(unknown)}
    )
    assert "Draft stars saved" in warned.text and "cannot be activated alone" in warned.text
    assert "stars" in text_of(warned.text).split("would fail")[1]


async def test_13_a_transaction_id_named_tail_is_an_event_page(console, space):
    browser, api = console
    body = {"user_id": "tia", "event": "app.opened", "transaction_id": "tail"}
    assert (await api.post("/v1/events", body)).status == 200
    page = await browser.get(f"/console/spaces/{space.slug}/events/tail")
    assert page.status == 200 and page.text.startswith("<!doctype html>")
    assert "Event <span" in page.text


async def test_14_a_refused_adjustment_keeps_the_amount_and_reason(console, space):
    browser, api = console
    await api.post("/v1/identify", {"user_id": "nina", "traits": {}})
    page = await browser.get(f"/console/spaces/{space.slug}/customers/nina")
    tx = re.search(r'name="transaction_id" value="([^"]+)"', page.text).group(1)
    refused = await browser.post_and_follow(
        f"/console/spaces/{space.slug}/customers/nina/adjust",
        {
            "csrf_token": page.csrf(),
            "transaction_id": tx,
            "wallet": "points",
            "amount": "-500",
            "reason": "clawback of order 77",
        },
    )
    assert "The adjustment was not made" in refused.text
    assert 'value="-500"' in refused.text and 'value="clawback of order 77"' in refused.text


async def test_15_the_audit_log_has_api_and_cli_changes(
    console, space, pg_url, monkeypatch, capsys
):
    browser, api = console
    with psycopg.connect(pg_url) as conn:
        prefix = conn.execute(
            "SELECT prefix FROM api_keys WHERE id = %s", (space.key_id,)
        ).fetchone()[0]
    events = {**demo_program()["modules"]["events"], "events": []}
    assert (
        await api.post(
            "/v1/admin/config/events", {"version": "api-v2", "body": events, "active": True}
        )
    ).status == 200
    await api.post("/v1/identify", {"user_id": "ola", "traits": {}})
    adjust = {
        "user_id": "ola",
        "wallet": "points",
        "amount": 5,
        "reason": "api goodwill",
        "transaction_id": "adj-15",
    }
    assert (await api.post("/v1/admin/adjustments", adjust)).status == 200
    monkeypatch.setenv("PERKAMO_DATABASE_URL", pg_url)
    code = await trio.to_thread.run_sync(
        main, ["webhooks", "set", space.slug, "http://127.0.0.1:9/cli-hook"]
    )
    assert code == 0, capsys.readouterr()
    activation = audit_rows(pg_url, space.space.id, "program.activate")
    assert activation[-1][0].startswith("api:") and activation[-1][1] == "events@api-v2"
    assert audit_rows(pg_url, space.space.id, "customer.adjust")[-1][:3] == (
        f"api:{prefix}",
        "adj-15",
        "api goodwill",
    )
    assert audit_rows(pg_url, space.space.id, "webhook.set")[-1][0].startswith("cli:")
    log = text_of((await browser.get(f"/console/audit?space={space.slug}&actor=api:")).text)
    assert "program.activate" in log and "customer.adjust" in log and "webhook.set" not in log


async def test_16_disabling_asks_a_reason_and_enabling_brings_it_back(console, space, pg_url):
    browser, _ = console
    with psycopg.connect(pg_url) as conn:
        set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    hooks = f"/console/spaces/{space.slug}/webhooks"
    page = await browser.get(hooks)
    assert 'data-confirm="Disable the webhook endpoint?' in page.text
    token = page.csrf()
    bare = await browser.post_and_follow(hooks + "/disable", {"csrf_token": token})
    assert "Say why" in bare.text and 'class="badge enabled"' in bare.text
    off = await browser.post_and_follow(
        hooks + "/disable", {"csrf_token": token, "reason": "receiver migrating"}
    )
    assert 'class="badge disabled"' in off.text and "receiver migrating" in off.text
    on = await browser.post_and_follow(hooks + "/enable", {"csrf_token": token})
    assert 'class="badge enabled"' in on.text
    assert audit_rows(pg_url, space.space.id, "webhook.disable")[-1][2] == "receiver migrating"
    assert audit_rows(pg_url, space.space.id, "webhook.enable")


async def test_17_error_pages_keep_the_navigation_and_there_is_a_favicon(console, space):
    browser, _ = console
    missing = await browser.get(f"/console/spaces/{space.slug}/customers/nobody-at-all")
    assert missing.status == 404
    assert "Log out" in missing.text and ">Events</a>" in missing.text
    unknown = await browser.get(f"/console/spaces/{space.slug}/no-such-screen")
    assert unknown.status == 404 and "Log out" in unknown.text
    assert 'rel="icon" href="/console/static/favicon.svg"' in unknown.text
    icon = await browser.get("/console/static/favicon.svg")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")


async def test_19_backtests_refresh_name_their_progress_and_need_a_draft(console, space, pg_url):
    browser, _ = console
    base = f"/console/spaces/{space.slug}/backtests"
    refused = await browser.post_and_follow(
        base, {"csrf_token": await browser.csrf(), "module:events": "demo"}
    )
    assert "Choose a draft" in refused.text
    report = {
        "profiles": 2,
        "events": 10,
        "baseline_mismatches": 0,
        "redemptions_refused": 0,
        "wallets": {
            "points": {
                "baseline_awarded": 100,
                "candidate_awarded": 150,
                "baseline_balance": 80,
                "candidate_balance": 130,
            }
        },
        "rules": {"purchase_points": {"baseline": {"points": 100}, "candidate": {"points": 150}}},
        "levels": {"baseline": {"1": 2}, "candidate": {"1": 1, "2": 1}},
        "perks_unlocked": {"welcome_member": {"baseline": 1, "candidate": 2}},
        "achievements_completed": {"regular_customer": {"baseline": 0, "candidate": 1}},
        "top_changes": [],
    }
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO backtests (id, space_id, status, program, events_done, events_total,"
            " report) VALUES ('bt_done19', %s, 'done', '{\"events\": \"x\"}', 10, 10, %s),"
            " ('bt_run19', %s, 'running', '{\"events\": \"x\"}', 0, 0, NULL)",
            (space.space.id, json.dumps(report), space.space.id),
        )
    try:
        page = await browser.get(base)
        assert '<meta http-equiv="refresh"' in page.text  # refreshes while one runs
        words = text_of(page.text)
        assert "0 / 0" not in words and "counting the window's events" in words
        assert "welcome_member" in words and "regular_customer" in words
        assert "+50 (+50.0 %)" in words  # the change column
    finally:
        with psycopg.connect(pg_url) as conn:
            conn.execute("DELETE FROM backtests WHERE id IN ('bt_done19', 'bt_run19')")
