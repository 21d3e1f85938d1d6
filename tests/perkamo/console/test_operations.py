"""The screens an operator runs the program from (docs/operations.md (the console) "Next"), through the real app:
the webhook inspector against a real receiver (responses, the breaker, both signatures
after a rotation, a test event), rules and wallets as forms, customers (balances, levels,
search by any trait value, CSV export), analytics from the ledger's aggregates, and the
audit log's filters."""

from __future__ import annotations

import csv
import html
import io
import re
from decimal import Decimal

import psycopg
import trio

from perkamo.webhooks import sign
from tests.perkamo.console.helpers import text_of
from tests.perkamo.webhooks.test_webhooks import Receiver


class AnsweringReceiver(Receiver):
    """Answers with a body, so the inspector has a response to show (cut at 4 KiB)."""

    answer = b'{"error": "database is read-only"}' + b"x" * 5000


async def test_the_inspector_shows_each_attempt_and_both_signatures_after_a_rotation(
    console, runtime, space, pg_url, nursery
):
    browser, api = console
    receiver = AnsweringReceiver([503])
    await nursery.start(receiver.serve)
    hooks = f"/console/spaces/{space.slug}/webhooks"
    token = await browser.csrf()
    added = await browser.post_and_follow(
        hooks + "/endpoint", {"csrf_token": token, "url": receiver.url}
    )
    first_secret = re.search(r'<code id="new-secret">(whsec_[\w-]+)</code>', added.text).group(1)
    assert first_secret not in (await browser.get(hooks)).text  # shown once
    await trio.sleep(1.2)  # the server learns of the endpoint
    event = {"user_id": "ivy", "event": "app.opened", "transaction_id": "hook-1"}
    assert (await api.post("/v1/events", event)).status == 200
    await receiver.wait_for(1)
    with trio.fail_after(10):  # the first attempt recorded, its retry is made due now
        while True:
            with psycopg.connect(pg_url) as conn:
                moved = conn.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = now()"
                    " WHERE space_id = %s AND status = 'retrying'",
                    (space.space.id,),
                ).rowcount
            if moved:
                break
            await trio.sleep(0.05)
    runtime.webhooks.kick()
    await receiver.wait_for(2)
    delivery_id = receiver.requests[0][0]["x-perkamo-delivery"]
    page = ""
    with trio.fail_after(10):
        while "HTTP 200" not in text_of(page):
            await trio.sleep(0.1)
            page = (await browser.get(f"{hooks}/{delivery_id}")).text
    words = text_of(page)
    assert "HTTP 503 Whatever" in words and "HTTP 200 Whatever" in words
    assert "database is read-only" in words  # the response body, cut at 4 KiB
    assert max(len(b) for b in re.findall(r"(x{100,})", html.unescape(page))) < 4096
    assert "x-perkamo-webhook-signature" in words and '"transaction_id":"hook-1"' in html.unescape(
        page
    )
    rotated = await browser.post_and_follow(
        hooks + "/rotate-secret", {"csrf_token": token, "reason": "yearly"}
    )
    second = re.search(r'<code id="new-secret">(whsec_[\w-]+)</code>', rotated.text).group(1)
    tested = await browser.post_and_follow(hooks + "/test", {"csrf_token": token})
    assert "Test event queued" in tested.text
    await receiver.wait_for(3)
    headers, body = receiver.requests[2]
    assert headers["x-perkamo-event"] == "webhook.test"
    signatures = headers["x-perkamo-webhook-signature"].split(",")
    delivery = headers["x-perkamo-delivery"]
    assert signatures == [sign(second, delivery, body), sign(first_secret, delivery, body)]
    filtered = text_of((await browser.get(hooks + "?type=webhook.test")).text)
    assert "webhook.test" in filtered and "hook-1" not in filtered
    assert "two secrets until" in filtered


async def test_a_rule_made_by_form_is_tried_unsaved_saved_as_a_draft_and_disabled(
    console, space, pg_url
):
    browser, api = console
    rules = f"/console/spaces/{space.slug}/program/rules"
    listing = await browser.get(rules)
    assert "Points for purchases" in listing.text and "context.currency" not in listing.text
    token = listing.csrf()
    form = {
        "csrf_token": token,
        "base_version": "demo",
        "original_key": "",
        "key": "Big Spender",
        "name": "",
        "event": "purchase.completed",
        "conditions_0_path": "amount",
        "conditions_0_op": "gte",
        "conditions_0_value": "10000",
        "award_0_wallet": "stars",
        "award_0_amount": "",
        "label": "form-1",
    }
    refused = await browser.post_and_follow(rules + "/save", form)
    for field in ("key", "name", "conditions_0_path", "award_0_wallet", "award_0_amount"):
        assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', refused.text) or re.search(
            rf'name="{field}".*?field-error', refused.text, re.S
        ), field
    assert 'value="Big Spender"' in refused.text  # what was typed is kept
    form.update(
        {
            "key": "big_spender",
            "name": "Big spender",
            "conditions_0_path": "context.amount",
            "award_0_wallet": "points",
            "award_0_amount": "25",
        }
    )
    tried = await browser.post(rules + "/try", {**form, "try_context": '{"amount": 20000}'})
    words = text_of(tried.text)
    assert "“Big spender” gives +25 Points" in words and "points: +75 instead of +50" in words
    with psycopg.connect(pg_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM config_versions WHERE space_id = %s", (space.space.id,)
        ).fetchone()[0]
    assert count == 6  # trying saved nothing
    saved = await browser.post_and_follow(rules + "/save", form)
    assert "Draft form-1 saved" in saved.text and "Big spender" in saved.text
    assert "context.amount is at least 10000" in text_of(saved.text)
    with psycopg.connect(pg_url) as conn:
        body = conn.execute(
            "SELECT body FROM config_versions WHERE space_id = %s AND"
            " module = 'events' AND version = 'form-1'",
            (space.space.id,),
        ).fetchone()[0]
    assert body["rules"][-1] == {
        "key": "big_spender",
        "name": "Big spender",
        "event": "purchase.completed",
        "award": [{"wallet": "points", "amount": 25}],
        "conditions": [{"path": "context.amount", "op": "gte", "value": 10000}],
    }
    assert [r["key"] for r in body["rules"]][:1] == ["purchase_points"]
    disabled = await browser.post_and_follow(
        rules + "/change",
        {
            "csrf_token": token,
            "kind": "rule",
            "key": "big_spender",
            "base_version": "form-1",
            "action": "disable",
        },
    )
    assert re.search(r"big_spender.*?badge disabled", disabled.text, re.S)
    moved = await browser.post_and_follow(
        rules + "/change",
        {
            "csrf_token": token,
            "kind": "rule",
            "key": "purchase_points",
            "base_version": "form-1",
            "action": "down",
        },
    )
    order = re.findall(r'<span class="mono muted"><span class="id" title="([\w.:-]+)"', moved.text)
    assert order[:2] == ["pricing_interest", "purchase_points"]


async def test_a_reward_made_by_form_writes_the_wallets_module(console, space, pg_url):
    browser, _ = console
    wallets = f"/console/spaces/{space.slug}/program/wallets"
    page = await browser.get(wallets + "/edit?kind=reward")
    assert page.status == 200
    saved = await browser.post_and_follow(
        wallets + "/save",
        {
            "csrf_token": page.csrf(),
            "kind": "reward",
            "base_version": "",
            "original_key": "",
            "key": "mug",
            "name": "Mug",
            "cost_wallet": "points",
            "cost_amount": "300",
            "effect": '{"type": "merch"}',
            "active": "on",
            "label": "with-mug",
        },
    )
    assert "Draft with-mug saved" in saved.text and "Mug" in saved.text
    with psycopg.connect(pg_url) as conn:
        body = conn.execute(
            "SELECT body FROM config_versions WHERE space_id = %s AND"
            " module = 'wallets' AND version = 'with-mug'",
            (space.space.id,),
        ).fetchone()[0]
    assert body["rewards"][-1] == {
        "key": "mug",
        "name": "Mug",
        "active": True,
        "cost": {"wallet": "points", "amount": 300},
        "effect": {"type": "merch"},
    }
    assert [w["key"] for w in body["wallets"]] == ["points"]


async def test_customers_show_balances_levels_and_export_without_formulas(console, space):
    browser, api = console
    await api.post(
        "/v1/identify",
        {"user_id": "c-petr", "traits": {"name": "Petr Novák", "note": "=HYPERLINK(1)"}},
    )
    await api.post("/v1/identify", {"user_id": "c-other", "traits": {"name": "Eva"}})
    for n in range(3):
        body = {
            "user_id": "c-petr",
            "event": "purchase.completed",
            "transaction_id": f"cp-{n}",
            "context": {"amount": 50000, "currency": "CZK"},
        }
        assert (await api.post("/v1/events", body)).status == 200
    balance = (await api.get("/v1/profile/c-petr")).body["wallets"]["points"]
    base = f"/console/spaces/{space.slug}/customers"
    found = await browser.get(base + "?q=petr")
    words = text_of(found.text)
    assert "c-petr" in words and "c-other" not in words
    assert f"c-petr {balance} 2 · Silver" in words, words
    one = await browser.get(base + "/c-petr")
    assert "Level 2 · Silver" in text_of(one.text) and "Earned is everything ever added" in (
        text_of(one.text)
    )
    assert "<svg" in one.text and "Balance over time" in one.text and "<polyline" in one.text
    exported = await browser.get(base + ".csv?q=c-")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][:3] == ["user_id", "points_balance", "points_earned"]
    petr = next(r for r in rows if r[0] == "c-petr")
    assert petr[1] == str(balance) and petr[3:5] == ["2", "Silver"]
    risky = await browser.get(base + ".csv?q=c-other")
    assert len(list(csv.reader(io.StringIO(risky.text)))) == 2
    assert (await api.post("/v1/identify", {"user_id": "=cmd|calc!A0", "traits": {}})).status == 200
    injected = await browser.get(base + ".csv?q=%3Dcmd")
    cells = [r[0] for r in csv.reader(io.StringIO(injected.text))][1:]
    assert cells == ["'=cmd|calc!A0"]  # a spreadsheet shows it as text


async def test_analytics_add_up_the_ledger_per_wallet_and_day(console, space, pg_url):
    browser, api = console
    for n in range(4):
        body = {
            "user_id": f"a-{n % 2}",
            "event": "purchase.completed",
            "transaction_id": f"an-{n}",
            "context": {"amount": 50000, "currency": "CZK"},
        }
        assert (await api.post("/v1/events", body)).status == 200
    adjust = {
        "user_id": "a-0",
        "wallet": "points",
        "amount": -30,
        "reason": "fix",
        "transaction_id": "an-adj",
    }
    assert (await api.post("/v1/admin/adjustments", adjust)).status == 200
    redeem = {"user_id": "a-1", "reward_key": "double_points_day", "transaction_id": "an-r"}
    assert (await api.post("/v1/rewards/redeem", redeem)).status == 200
    with psycopg.connect(pg_url) as conn:
        issued, spent = conn.execute(
            "SELECT sum(issued), sum(spent) FROM ledger_daily"
            " WHERE space_id = %s AND wallet = 'points'",
            (space.space.id,),
        ).fetchone()
        balances = conn.execute(
            "SELECT sum((state -> 'wallets' -> 'points' ->> 'balance')"
            "::numeric) FROM profiles WHERE space_id = %s",
            (space.space.id,),
        ).fetchone()[0]
        fired = conn.execute(
            "SELECT sum(awarded), sum(firings) FROM rule_daily"
            " WHERE space_id = %s AND rule = 'purchase_points'",
            (space.space.id,),
        ).fetchone()
        active = conn.execute(
            "SELECT sum(active), sum(new) FROM activity_daily WHERE space_id = %s",
            (space.space.id,),
        ).fetchone()
    assert (issued, spent) == (Decimal(200), Decimal(70))
    assert issued - spent == balances  # the outstanding points are the customers' balances
    assert fired == (Decimal(200), 4) and active == (2, 2)
    page = await browser.get(f"/console/spaces/{space.slug}/analytics")
    words = text_of(page.text)
    assert page.status == 200 and "130 outstanding now" in words
    assert "200 issued, 70 spent or removed" in words
    assert page.text.count("<svg") >= 4 and 'class="axis"' in page.text
    assert "Customers per level" in page.text and "Member" in page.text


async def test_the_audit_log_filters_by_actor_space_kind_and_time(console, space):
    browser, _ = console
    token = await browser.csrf()
    await browser.post(f"/console/spaces/{space.slug}/keys", {"csrf_token": token})
    base = f"/console/audit?space={space.slug}"
    assert "key.create" in text_of((await browser.get(base + "&kind=key.")).text)
    assert "key.create" not in text_of((await browser.get(base + "&kind=webhook.")).text)
    assert "key.create" not in text_of((await browser.get(base + "&actor=cli:")).text)
    assert "key.create" not in text_of((await browser.get(base + "&since=2999-01-01")).text)
    assert "key.create" in text_of((await browser.get(base + "&until=2999-01-01")).text)
