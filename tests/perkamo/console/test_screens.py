"""The console's screens do what docs/operations.md (the console) lists, through the real app: Spaces and keys,
Events (filters, statuses, one event), Customers (search, profile, ledger, support
actions), Program (drafts, errors at their path, diff, try, activate), Back-tests,
Webhooks, Usage, Find and the Audit log."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

import psycopg
import trio

from perkamo.access.admin import set_webhook
from tests.api_client import Api, app_for
from tests.server_process import demo_program


def audit(pg_url: str, action: str) -> list[tuple]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT actor, target, reason FROM audit_log WHERE action = %s ORDER BY id", (action,)
        ).fetchall()


async def test_spaces_and_keys(console, runtime, pg_url):
    browser, _ = console
    token = await browser.csrf()
    made = await browser.post(
        "/console/spaces",
        {"slug": "shop-x", "name": "Shop X", "environment": "test", "csrf_token": token},
    )
    assert made.status == 303 and made.location == "/console/spaces/shop-x/keys"
    assert "shop-x" in (await browser.get("/console/spaces")).text
    created = await browser.post_and_follow(
        "/console/spaces/shop-x/keys",
        {"csrf_token": token, "scope:events:write": "on", "scope:profile:read": "on"},
    )
    secret = re.search(r'<code id="new-key">(sk_test_\w+)</code>', created.text)
    assert created.status == 200 and secret, created.text[:800]
    key_id = re.search(r"New key (key_\w+)", created.text).group(1)
    assert secret.group(1) not in (await browser.get("/console/spaces/shop-x/keys")).text
    api = Api(app_for(runtime), secret.group(1))
    assert (await api.get("/v1/usage")).status == 200
    rotated = await browser.post_and_follow(
        f"/console/spaces/shop-x/keys/{key_id}/rotate",
        {"csrf_token": token, "grace": "1h", "reason": "leaked"},
    )
    replacement = re.search(r'<code id="new-key">(sk_test_\w+)</code>', rotated.text).group(1)
    assert (await api.get("/v1/usage")).status == 200  # the old key works for its grace hour
    assert (await Api(app_for(runtime), replacement).get("/v1/usage")).status == 200
    revoked = await browser.post(
        f"/console/spaces/shop-x/keys/{key_id}/revoke", {"csrf_token": token, "reason": "done"}
    )
    assert revoked.status == 303
    with trio.fail_after(5):
        while (await api.get("/v1/usage")).status != 401:
            await trio.sleep(0.05)
    assert [r[2] for r in audit(pg_url, "key.rotate") if r[1] == key_id] == ["leaked"]
    assert [r[0] for r in audit(pg_url, "key.revoke") if r[1] == key_id] == [browser.email]


async def test_events_list_filters_statuses_and_one_event(console, runtime, space, pg_url):
    browser, api = console
    with psycopg.connect(pg_url) as conn:
        set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    await trio.sleep(1.2)  # the server learns of the endpoint
    body = {
        "user_id": "ann",
        "event": "purchase.completed",
        "transaction_id": "order-1",
        "context": {"amount": 12900, "currency": "CZK"},
    }
    assert (await api.post("/v1/events", body)).status == 200
    assert (await api.post("/v1/events", body)).body["duplicate"] is True
    bad = {**body, "transaction_id": "order-2", "context": {"xp": 1}}
    assert (await api.post("/v1/events", bad)).status == 400
    await runtime.attempts.flush()
    base = f"/console/spaces/{space.slug}/events"
    listing = (await browser.get(base)).text
    assert "order-1" in listing and "duplicate" in listing and "reserved_context_key" in listing
    only = (await browser.get(base + "?status=refused")).text
    assert "order-2" in only and "badge applied" not in only
    assert "order-1" not in (await browser.get(base + "?user_id=bob")).text
    one = await browser.get(base + "/order-1")
    assert one.status == 200
    assert "purchase_points" in one.text  # the rule that awarded it, in the breakdown
    assert "dlv_" in one.text  # its webhook delivery
    assert (await browser.get(base + "/nope")).status == 404


async def test_customers_ledger_and_support_actions(console, space, pg_url):
    browser, api = console
    await api.post("/v1/identify", {"user_id": "cust-1", "traits": {"plan": "premium"}})
    body = {
        "user_id": "cust-1",
        "event": "purchase.completed",
        "transaction_id": "o-1",
        "context": {"amount": 50000, "currency": "CZK"},
    }
    assert (await api.post("/v1/events", body)).status == 200
    base = f"/console/spaces/{space.slug}/customers"
    assert "cust-1" in (await browser.get(base + "?q=cust-")).text
    assert "cust-1" in (await browser.get(base + "?q=plan=premium")).text
    assert "cust-1" not in (await browser.get(base + "?q=plan=free")).text
    page = await browser.get(f"{base}/cust-1")
    assert page.status == 200 and "purchase_points" in page.text and "o-1" in page.text
    tx = re.search(r'name="transaction_id" value="(console-\d+)"', page.text).group(1)
    token = page.csrf()
    adjusted = await browser.post(
        f"{base}/cust-1/adjust",
        {
            "csrf_token": token,
            "transaction_id": tx,
            "wallet": "points",
            "amount": "200",
            "reason": "double charge",
            "counts_toward_level": "on",
        },
    )
    assert adjusted.status == 303, adjusted.text[:500]
    after = (await api.get("/v1/profile/cust-1")).body
    assert after["adjustments"][0]["amount"] == 200
    assert after["adjustments"][0]["actor"] == browser.email
    assert audit(pg_url, "customer.adjust")[-1][0] == browser.email
    again = await browser.post(
        f"{base}/cust-1/adjust",
        {
            "csrf_token": token,
            "transaction_id": tx,
            "wallet": "points",
            "amount": "200",
            "reason": "double charge",
            "counts_toward_level": "on",
        },
    )  # a double submit
    assert again.status == 303
    assert len((await api.get("/v1/profile/cust-1")).body["adjustments"]) == 1
    redeem = {"user_id": "cust-1", "reward_key": "free_shipping", "transaction_id": "r-1"}
    assert (await api.post("/v1/rewards/redeem", redeem)).status == 200
    reversed_ = await browser.post(
        f"{base}/cust-1/reverse", {"csrf_token": token, "redemption": "r-1", "reason": "refund"}
    )
    assert reversed_.status == 303
    profile = (await api.get("/v1/profile/cust-1")).body
    assert profile["redemptions"][0]["status"] == "reversed"
    assert audit(pg_url, "customer.reverse")[-1][:2] == (browser.email, "r-1")


async def test_program_drafts_errors_diff_try_and_activate(console, space, pg_url):
    browser, api = console
    base = f"/console/spaces/{space.slug}/program"
    editor = await browser.get(base + "/events")
    assert editor.status == 200 and "purchase_points" in editor.text
    token = editor.csrf()
    broken = await browser.post_and_follow(
        base + "/events", {"csrf_token": token, "version": "v2", "body": "{not json"}
    )
    assert "not JSON" in broken.text
    invalid = await browser.post_and_follow(
        base + "/events",
        {
            "csrf_token": token,
            "version": "v2",
            "body": '{"rules": [{"key": "r", "name": "R", "event": "buy", "award": [{"wallet": "points", "amount": "ten"}]}]}',
        },
    )
    assert "body.rules[0].award[0].amount" in invalid.text
    events = demo_program()["modules"]["events"]
    events["rules"].append(
        {"key": "buy", "name": "Buy", "event": "buy", "award": [{"wallet": "points", "amount": 7}]}
    )
    good = json.dumps(events)
    saved = await browser.post(
        base + "/events", {"csrf_token": token, "version": "v2", "body": good}
    )
    assert saved.status == 303 and "draft=v2" in saved.location
    draft = await browser.get(base + "/events?draft=v2")
    assert '<span class="add">' in draft.text  # the diff against the active body
    tried = await browser.post(
        base + "/events/try",
        {"csrf_token": token, "version": "v2", "event": "buy", "context": "{}", "body": good},
    )
    assert "points: +7 instead of 0" in tried.text, tried.text[tried.text.find("</textarea>") :][
        :3000
    ]
    assert "Decimal(" not in tried.text and good in html.unescape(tried.text)  # kept as typed
    review = await browser.get(base + "/review?module:events=v2")
    assert review.status == 200 and '<span class="add">' in review.text
    activated = await browser.post(
        base + "/activate", {"csrf_token": token, "module:events": "v2", "reason": "simpler rules"}
    )
    assert activated.status == 303 and activated.location.endswith("/program")
    assert "Activated events v2" in (await browser.follow(activated)).text
    assert (await api.get("/v1/program")).body["versions"]["events"] == "v2"
    assert audit(pg_url, "program.activate")[-1][1:] == ("events@v2", "simpler rules")
    refused = await browser.post_and_follow(
        base + "/activate",
        {"csrf_token": token, "module:wallets": "demo", "module:events": "nope", "reason": "x"},
    )
    assert "Nothing was activated" in refused.text


async def test_backtests_webhooks_usage_find_and_audit(console, runtime, space, pg_url):
    browser, api = console
    with psycopg.connect(pg_url) as conn:
        set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    await trio.sleep(1.2)
    body = {"user_id": "zed", "event": "app.opened", "transaction_id": "find-me"}
    assert (await api.post("/v1/events", body)).status == 200
    s = f"/console/spaces/{space.slug}"
    token = await browser.csrf()
    refused = await browser.post_and_follow(s + "/backtests", {"csrf_token": token})
    assert "bt_" not in refused.text and "Choose a draft" in refused.text
    events = {**demo_program()["modules"]["events"], "events": []}
    draft = {"version": "bt-draft", "body": events, "active": False}
    assert (await api.post("/v1/admin/config/events", draft)).status == 200
    started = await browser.post_and_follow(
        s + "/backtests", {"csrf_token": token, "module:events": "bt-draft"}
    )
    assert "bt_" in started.text
    hooks = await browser.get(s + "/webhooks")
    delivery = re.search(r">(dlv_\w+)<", hooks.text).group(1)
    resent = await browser.post_and_follow(f"{s}/webhooks/{delivery}/resend", {"csrf_token": token})
    assert "queued again" in resent.text
    recovered = await browser.post(
        s + "/webhooks/recover", {"csrf_token": token, "since": "2026-01-01T00:00:00Z"}
    )
    assert recovered.status == 303
    usage = await browser.get(s + "/usage")
    assert usage.status == 200 and "<svg" in usage.text and "<rect" in usage.text
    found = await browser.get(s + "/find?q=find-me")
    assert found.status == 303 and found.location.endswith("/events/find-me")
    customer = await browser.get(s + "/find?q=zed")
    assert customer.location.endswith("/customers/zed")
    event_id = (await api.get("/v1/profile/zed")).body  # reachable by evt_ id as well
    with psycopg.connect(pg_url) as conn:
        evt = conn.execute(
            "SELECT event_id FROM events WHERE transaction_id = 'find-me'"
        ).fetchone()
    assert event_id and evt and evt[0].startswith("evt_")
    assert (await browser.get(s + f"/find?q={quote(evt[0])}")).location.endswith("/events/find-me")
    log = (await browser.get("/console/audit")).text
    assert "webhook.resend" in log and "backtest.start" in log and browser.email in log
