"""Browser keys in the console's Secret keys screen (docs/operations.md "The console"): create one with origins,
events and capabilities (the key shown once), see it listed, revoke it — audited, and
effective through the API."""

from __future__ import annotations

import html
import re

import psycopg

from tests.api_client import Api, app_for


async def test_create_show_once_and_revoke_a_browser_key(console, runtime, space, pg_url):
    browser, api = console
    token = await browser.csrf()
    keys = f"/console/spaces/{space.slug}/keys"
    form = {
        "csrf_token": token, "name": "Storefront",
        "origins": "https://shop.example.com\nhttp://localhost:*",
        "events": "page.viewed, lesson.finished", "capability:read": "on",
        "capability:events": "on", "per_second": "2", "burst": "8",
    }  # fmt: skip
    created = await browser.post_and_follow(keys.replace("/keys", "/browser-keys"), form)
    assert created.status == 200, created.text[:500]
    secret = re.search(r'<code id="new-browser-key">(bk_test_\w+)</code>', created.text)
    assert secret, created.text[:800]
    key_id = re.search(r"New browser key (bkey_\w+)", created.text).group(1)
    page = html.unescape((await browser.get(keys)).text)
    assert secret.group(1) not in page  # shown once
    assert key_id in page and "https://shop.example.com" in page and "2/s, burst 8" in page
    listed = (await api.get("/v1/admin/browser-keys")).body["browser_keys"][0]
    assert listed["capabilities"] == {"read": True, "events": True, "stream": False}
    assert listed["allowed_events"] == ["page.viewed", "lesson.finished"]
    minted = await api.post("/v1/browser-tokens", {"browser_key": secret.group(1), "user_id": "c"})
    assert minted.status == 200
    revoked = await browser.post_and_follow(
        keys.replace("/keys", f"/browser-keys/{key_id}/revoke"), {"csrf_token": token}
    )
    assert "revoked" in revoked.text
    with psycopg.connect(pg_url) as conn:
        actions = [a for (a,) in conn.execute(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (key_id,))]  # fmt: skip
    assert actions == ["browser_key.create", "browser_key.revoke"]
    again = await Api(app_for(runtime), space.key).post(
        "/v1/browser-tokens", {"browser_key": secret.group(1), "user_id": "c"}
    )
    assert again.body["error"] == "invalid_browser_key"


async def test_a_bad_origin_keeps_the_form_and_says_why(console, space):
    browser, _ = console
    token = await browser.csrf()
    answer = await browser.post_and_follow(
        f"/console/spaces/{space.slug}/browser-keys",
        {"csrf_token": token, "name": "Typo", "origins": "https://shop.example.com/cart",
         "capability:read": "on"},
    )  # fmt: skip
    text = html.unescape(answer.text)
    assert "Browser key not created: allowed_origins[0]" in text
    assert ">https://shop.example.com/cart</textarea>" in text and 'value="Typo"' in text
