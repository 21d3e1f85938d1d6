"""The authentication matrix and the documented order of checks (docs/api.md (authentication), §5)."""

from __future__ import annotations

import time

import msgspec
import psycopg
import pytest

from perkamo.access import admin, signing
from storage import spaces as space_store
from tests.api_client import Api, app_for
from tests.notifications import notified
from tests.spaces import make_space

EVENT = {"user_id": "u1", "event": "app.opened", "transaction_id": "t1"}


def signed_headers(key: str, method: str, path: str, body: bytes, ts: int | None = None):
    stamp = str(int(time.time()) if ts is None else ts)
    return {
        "x-perkamo-timestamp": stamp,
        "x-perkamo-signature": signing.signature(key, stamp, method, path, body),
        "content-type": "application/json",
    }


def test_signature_test_vector():
    assert (
        signing.signature("sk_test", "1700000000", "POST", "/v1/events", b'{"tenant":"demo"}')
        == "v1=fe762eb8c15ef0eb3731e3a2d53a918a4dd918abdbd42bf04a5522646d79dcae"
    )


def test_the_signature_window_is_300_seconds_either_way():
    now = 1_700_000_000.0
    body = b'{"tenant":"demo"}'

    def accepted(stamp: int) -> bool:
        given = signing.signature("sk_test", str(stamp), "POST", "/v1/events", body)
        return signing.verify("sk_test", str(stamp), given, "POST", "/v1/events", body, now)

    assert accepted(1_700_000_000 - 300) and accepted(1_700_000_000 + 300)
    assert not accepted(1_700_000_000 - 301) and not accepted(1_700_000_000 + 301)


def test_key_format_and_storage(pg_url):
    s = make_space(pg_url, environment="live")
    assert s.key.startswith("sk_live_") and len(s.key) >= 8 + 32
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute(
            "SELECT key_hash, prefix FROM api_keys WHERE id = %s", (s.key_id,)
        ).fetchone()
    assert stored is not None
    assert s.key.encode() not in bytes(stored[0]) and stored[1] == s.key[:12]


async def test_missing_key(api):
    a = await api.post("/v1/events", EVENT, key=None)
    assert (a.status, a.body["error"]) == (401, "missing_api_key")
    assert a.body["message"] and a.body["request_id"].startswith("req_")


async def test_unknown_key(api):
    a = await api.post("/v1/events", EVENT, key="sk_test_" + "x" * 40)
    assert (a.status, a.body["error"]) == (401, "invalid_api_key")


async def test_revoked_key_stops_working_within_a_second(api, space, pg_url, runtime):
    assert (await api.post("/v1/events", EVENT)).status == 200  # cached now
    async with notified(runtime, within=1.0):
        with psycopg.connect(pg_url) as conn:
            admin.revoke_key(conn, space.key_id)
    a = await api.post("/v1/events", EVENT)
    assert a.body["error"] == "invalid_api_key"


async def test_rotated_key_replaces_the_old_one(api, space, pg_url, runtime):
    assert (await api.get("/v1/profile/nobody")).status == 404
    async with notified(runtime, within=1.0):
        with psycopg.connect(pg_url) as conn:
            _, new_key = admin.rotate_key(conn, space.key_id)
            listed = space_store.list_keys(conn, space.slug)
    assert (await api.get("/v1/profile/nobody")).status == 401
    assert (await api.get("/v1/profile/nobody", key=new_key)).status == 404
    assert [k.revoked_at is not None for k in listed] == [True, False]
    assert listed[1].scopes == listed[0].scopes


async def test_wrong_scope(runtime, pg_url):
    reader = make_space(pg_url, scopes=["profile:read"])
    api = Api(app_for(runtime), reader.key)
    a = await api.post("/v1/events", EVENT)
    assert (a.status, a.body["error"]) == (403, "insufficient_scope")
    assert (await api.get("/v1/profile/nobody")).status == 404


async def test_customer_read_alias(runtime, pg_url):
    reader = make_space(pg_url, scopes=["customer:read"])
    api = Api(app_for(runtime), reader.key)
    assert (await api.get("/v1/customer/nobody")).status == 404
    assert (await api.post("/v1/identify", {"user_id": "x"})).status == 403


def test_unknown_scope_is_refused(pg_url):
    s = make_space(pg_url)
    with psycopg.connect(pg_url) as conn, pytest.raises(admin.AdminError):
        admin.create_key(conn, s.space, ["events:read"])


@pytest.mark.parametrize("field", ["tenant", "space"])
async def test_tenant_in_body(api, space, field):
    ok = await api.post("/v1/events", {**EVENT, field: space.slug})
    assert ok.status == 200
    bad = await api.post("/v1/events", {**EVENT, field: "another-space"})
    assert (bad.status, bad.body["error"]) == (403, "tenant_mismatch")


@pytest.mark.parametrize("field", ["tenant", "space"])
async def test_tenant_in_query(api, space, field):
    await api.post("/v1/identify", {"user_id": "q"})
    assert (await api.get(f"/v1/profile/q?{field}={space.slug}")).status == 200
    bad = await api.get(f"/v1/profile/q?{field}=another-space")
    assert (bad.status, bad.body["error"]) == (403, "tenant_mismatch")


async def test_keys_never_reach_another_space(runtime, pg_url):
    a_space, b_space = make_space(pg_url), make_space(pg_url)
    a = Api(app_for(runtime), a_space.key)
    b = Api(app_for(runtime), b_space.key)
    assert (await a.post("/v1/identify", {"user_id": "shared", "traits": {"s": "a"}})).status == 200
    assert (await b.get("/v1/profile/shared")).status == 404
    mismatch = await a.post("/v1/identify", {"user_id": "x", "tenant": b_space.slug})
    assert mismatch.status == 403


async def test_good_signature(api, space):
    body = msgspec.json.encode(EVENT)
    a = await api.request(
        "POST",
        "/v1/events",
        data=body,
        headers=signed_headers(space.key, "POST", "/v1/events", body),
    )
    assert a.status == 200, a.body


async def test_bad_signature(api, space):
    body = msgspec.json.encode(EVENT)
    headers = signed_headers(space.key, "POST", "/v1/events", body + b" ")
    a = await api.request("POST", "/v1/events", data=body, headers=headers)
    assert (a.status, a.body["error"]) == (401, "invalid_signature")


async def test_stale_signature_timestamp(api, space):
    body = msgspec.json.encode(EVENT)
    old = int(time.time()) - 301
    headers = signed_headers(space.key, "POST", "/v1/events", body, ts=old)
    a = await api.request("POST", "/v1/events", data=body, headers=headers)
    assert (a.status, a.body["error"]) == (401, "invalid_signature")


async def test_signature_over_the_raw_encoded_path(api, space):
    await api.post("/v1/identify", {"user_id": "a/b"})
    path = "/v1/profile/a%2Fb"
    headers = signed_headers(space.key, "GET", path, b"")
    a = await api.request("GET", path, headers=headers)
    assert a.status == 200, a.body
    assert a.body["user_id"] == "a/b"


async def test_space_requiring_signatures(api, space, pg_url, runtime):
    async with notified(runtime, within=1.0):
        with psycopg.connect(pg_url) as conn:
            space_store.set_require_signatures(conn, space.slug, True)
    a = await api.post("/v1/events", EVENT)
    assert a.body["error"] == "signature_required"
    body = msgspec.json.encode(EVENT)
    signed = await api.request(
        "POST",
        "/v1/events",
        data=body,
        headers=signed_headers(space.key, "POST", "/v1/events", body),
    )
    assert signed.status == 200
    assert (await api.get("/v1/profile/u1")).status == 200  # reads need no signature


async def test_request_id_on_every_response(api):
    for answer in (
        await api.post("/v1/events", EVENT),
        await api.get("/v1/nowhere", key=None),
        await api.request("DELETE", "/v1/events"),
        await api.get("/healthz", key=None),
    ):
        assert answer.headers["x-perkamo-request-id"].startswith("req_")
    echoed = await api.get("/healthz", key=None, headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-perkamo-request-id"] == "abc-123"
    insane = await api.get("/healthz", key=None, headers={"x-request-id": "a b\tc"})
    assert insane.headers["x-perkamo-request-id"].startswith("req_")


async def test_order_of_checks(api):
    # route before key
    assert (await api.get("/v1/nowhere", key=None)).status == 404
    assert (await api.request("PUT", "/v1/events", key=None)).status == 405
    # body size before key
    big = b"{" + b" " * (1024 * 1024) + b"}"
    assert (await api.request("POST", "/v1/events", data=big, key=None)).status == 413
    # key before JSON
    broken = await api.request("POST", "/v1/events", data=b"{", key="sk_test_nope")
    assert broken.status == 401
    # content type before JSON
    typed = await api.request(
        "POST", "/v1/events", data=b"{", headers={"content-type": "text/plain"}
    )
    assert (typed.status, typed.body["error"]) == (415, "unsupported_media_type")
    # JSON before tenant, tenant before schema
    assert (await api.request("POST", "/v1/events", data=b"{")).body["error"] == "invalid_json"
    mismatch = await api.post("/v1/events", {"tenant": "elsewhere", "user_id": 5})
    assert mismatch.body["error"] == "tenant_mismatch"


async def test_the_program_reports_the_share_of_signed_requests(api, space):
    integration = (await api.get("/v1/program")).body["integration"]
    assert integration["signed_request_share"] is None  # no mutating request yet
    for n in range(2):
        await api.post("/v1/events", {**EVENT, "transaction_id": f"plain-{n}"})
    body = msgspec.json.encode({**EVENT, "transaction_id": "signed"})
    headers = signed_headers(space.key, "POST", "/v1/events", body)
    assert (await api.request("POST", "/v1/events", data=body, headers=headers)).status == 200
    bad = signed_headers(space.key, "POST", "/v1/events", body + b" ")
    assert (await api.request("POST", "/v1/events", data=body, headers=bad)).status == 401
    await api.get("/v1/usage")  # reads are not mutating requests
    integration = (await api.get("/v1/program")).body["integration"]
    # 1 of the 3 mutating requests that passed the signature check (the refused one is not
    # counted: it never got past authentication).
    assert integration["signed_request_share"] == 0.333
