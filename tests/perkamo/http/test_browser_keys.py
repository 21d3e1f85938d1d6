"""Browser keys (docs/api.md "The browser half"): the admin API, the policy's rules, revocation, and the scope
that mints tokens."""

from __future__ import annotations

import psycopg
import pytest

from perkamo.access import admin
from perkamo.access.browser_keys import origin_allowed, parse_origin
from tests.api_client import Api, app_for
from tests.browser import SHOP, browser_setup
from tests.notifications import notified
from tests.spaces import make_space

ORIGINS = [SHOP]


async def test_create_list_update_revoke(api):
    body = {"name": "Shop", "allowed_origins": [SHOP, "http://localhost:*"]}
    created = await api.post("/v1/admin/browser-keys", body)
    assert created.status == 201
    doc = created.body
    assert doc["key"].startswith("bk_test_") and len(doc["key"]) >= 8 + 24
    assert doc["allowed_origins"] == [SHOP, "http://localhost:*"]
    assert doc["allowed_events"] == []
    assert doc["capabilities"] == {"read": True, "events": True, "stream": True}
    assert doc["rate"] == {"per_second": 5, "burst": 20}
    assert doc["revoked_at"] is None and doc["created_at"].endswith("Z")
    second = await api.post("/v1/admin/browser-keys", {**body, "name": "Second"})
    listing = await api.get("/v1/admin/browser-keys")
    assert [k["id"] for k in listing.body["browser_keys"]] == [second.body["id"], doc["id"]]
    assert all("key" not in k and k["prefix"] == doc["key"][:12] or k["id"] != doc["id"]
               for k in listing.body["browser_keys"])  # fmt: skip
    changed = await api.request(
        "PATCH", f"/v1/admin/browser-keys/{doc['id']}",
        json={"allowed_events": ["page.viewed"], "rate": {"per_second": 2, "burst": 4}},
    )  # fmt: skip
    assert changed.status == 200
    assert changed.body["allowed_events"] == ["page.viewed"]
    assert changed.body["rate"] == {"per_second": 2, "burst": 4}
    assert changed.body["name"] == "Shop" and "key" not in changed.body
    revoked = await api.request("DELETE", f"/v1/admin/browser-keys/{doc['id']}")
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None


@pytest.mark.parametrize(
    "body, path",
    [
        ({"name": "x", "allowed_origins": []}, "allowed_origins"),
        ({"name": "x", "allowed_origins": ["https://shop.example.com/"]}, "allowed_origins[0]"),
        ({"name": "x", "allowed_origins": ["https://*.example.com"]}, "allowed_origins[0]"),
        ({"name": "x", "allowed_origins": ["shop.example.com"]}, "allowed_origins[0]"),
        ({"name": "x", "allowed_origins": ["ftp://shop.example.com"]}, "allowed_origins[0]"),
        ({"name": "x", "allowed_origins": [SHOP], "allowed_events": ["*", "a"]}, "allowed_events"),
        ({"name": "x", "allowed_origins": [SHOP], "rate": {"per_second": 0}}, "rate.per_second"),
        ({"name": "", "allowed_origins": [SHOP]}, "name"),
    ],
)
async def test_a_bad_policy_is_a_validation_error_naming_its_field(api, body, path):
    answer = await api.post("/v1/admin/browser-keys", body)
    assert answer.status == 400 and answer.body["error"] == "validation_error"
    assert answer.body["details"][0]["path"] == path


async def test_localhost_any_port_is_for_test_spaces_only(runtime, pg_url):
    live = make_space(pg_url, environment="live")
    api = Api(app_for(runtime), live.key)
    body = {"name": "x", "allowed_origins": ["http://localhost:*"]}
    answer = await api.post("/v1/admin/browser-keys", body)
    assert answer.status == 400 and answer.body["details"][0]["path"] == "allowed_origins[0]"
    created = await api.post("/v1/admin/browser-keys", {**body, "allowed_origins": [SHOP]})
    assert created.body["key"].startswith("bk_live_")


def test_origins_match_exactly():
    allowed = [SHOP, "http://localhost:*"]
    assert origin_allowed(allowed, SHOP)
    assert origin_allowed(allowed, "https://SHOP.example.com")
    assert origin_allowed(allowed, "https://shop.example.com:443")
    assert origin_allowed(allowed, "http://localhost") and origin_allowed(
        allowed, "http://localhost:5173"
    )
    for refused in (
        "https://shop.example.com.evil.test",
        "http://shop.example.com",
        "https://shop.example.com:8443",
        "https://evil.shop.example.com",
        "https://localhost:5173",
        "null",
        "",
        "https://shop.example.com/path",
        "https://user@shop.example.com",
    ):
        assert not origin_allowed(allowed, refused), refused
    assert parse_origin("https://[::1]:8443") == "https://[::1]:8443"


async def test_another_spaces_browser_key_is_not_found(runtime, api, pg_url):
    created = await api.post("/v1/admin/browser-keys", {"name": "x", "allowed_origins": ORIGINS})
    other = Api(app_for(runtime), make_space(pg_url).key)
    for method in ("PATCH", "DELETE"):
        json = {"name": "stolen"} if method == "PATCH" else None
        answer = await other.request(
            method, f"/v1/admin/browser-keys/{created.body['id']}", json=json
        )
        assert answer.status == 404
    assert (await other.get("/v1/admin/browser-keys")).body["browser_keys"] == []


async def test_browser_keys_need_admin_config(runtime, pg_url):
    space = make_space(pg_url, scopes=["events:write", "profile:read"])
    api = Api(app_for(runtime), space.key)
    answer = await api.post("/v1/admin/browser-keys", {"name": "x", "allowed_origins": ORIGINS})
    assert answer.status == 403 and answer.body["error"] == "insufficient_scope"


async def test_minting_needs_the_browser_tokens_scope(runtime, api, space, pg_url):
    browser = await browser_setup(runtime, api, space)
    with psycopg.connect(pg_url) as conn:
        _, listed_key = admin.create_key(conn, space.space, ["events:write", "profile:read"])
        _, minter = admin.create_key(conn, space.space, ["browser:tokens", "profile:read"])
    body = {"browser_key": browser.key, "user_id": "c1"}
    refused = await Api(app_for(runtime), listed_key).post("/v1/browser-tokens", body)
    assert refused.status == 403 and refused.body["error"] == "insufficient_scope"
    assert (await Api(app_for(runtime), minter).post("/v1/browser-tokens", body)).status == 200
    assert (await api.post("/v1/browser-tokens", body)).status == 200  # created without a list


def test_the_upgrade_gives_browser_tokens_to_keys_holding_events_write(pg_url):
    """Migration 0017 appended the scope to existing keys with events:write; run its
    statement again on a key made like an old one and see the scope arrive (once)."""
    from storage.migrations import available

    sql = next(s for n, _, s in available() if n == 17)
    update = sql[sql.index("UPDATE api_keys") :]
    space = make_space(pg_url, scopes=["events:write"])
    reader = make_space(pg_url, scopes=["profile:read"])
    with psycopg.connect(pg_url) as conn:
        for s in (space, reader):
            conn.execute(
                "UPDATE api_keys SET scopes = array_remove(scopes, 'browser:tokens') WHERE id = %s",
                (s.key_id,),
            )
        conn.execute(update)
        conn.execute(update)
        scopes = dict(
            conn.execute(
                "SELECT id, scopes FROM api_keys WHERE id = ANY(%s)",
                ([space.key_id, reader.key_id],),
            ).fetchall()
        )
    assert scopes[space.key_id] == ["events:write", "browser:tokens"]
    assert scopes[reader.key_id] == ["profile:read"]


async def test_revocation_reaches_a_running_server_within_a_second(runtime, api, space):
    browser = await browser_setup(runtime, api, space)
    token = await browser.token()
    assert (await browser.call("GET", "/v1/client/program", token)).status == 200
    async with notified(runtime):
        await api.request("DELETE", f"/v1/admin/browser-keys/{browser.key_id}")
    answer = await browser.call("GET", "/v1/client/program", token)
    assert answer.status == 401 and answer.body["error"] == "invalid_token"
    minted = await api.post("/v1/browser-tokens", {"browser_key": browser.key, "user_id": "c"})
    assert minted.status == 400 and minted.body["error"] == "invalid_browser_key"
