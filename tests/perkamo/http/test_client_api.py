"""The client API (docs/api.md "The browser half"): a page's calls with a browser token — what they answer, and
every way they are refused (the security tests of issue 25)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from perkamo.access import admin
from tests.api_client import Api, app_for
from tests.browser import SHOP, Browser, browser_setup
from tests.notifications import notified
from tests.spaces import make_space

EXPOSED = "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-perkamo-request-id"


@pytest.fixture
async def browser(runtime, api, space) -> Browser:
    return await browser_setup(runtime, api, space)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _cors_of(answer) -> dict[str, str | None]:
    return {
        name: answer.headers.get(name)
        for name in ("access-control-allow-origin", "vary", "access-control-expose-headers",
                     "access-control-allow-credentials")
    }  # fmt: skip


async def test_the_token_answer_is_what_the_php_sdk_reads(browser):
    """perkamo/sdk src/BrowserToken.php lines 23-53 (``fromArray``, ``requiredString``):
    ``token``, ``token_type`` and ``expires_at`` non-empty strings after trim,
    ``expires_in`` ``is_int`` (a JSON integer: 600, never 600.0 or "600"), ``expires_at``
    parsed by ``new DateTimeImmutable`` (RFC 3339). src/Client.php ``createBrowserToken``
    sends ``{browser_key, user_id[, ttl_seconds]}`` and ``createBrowserStreamToken`` adds
    ``purpose: "stream"`` with ``ttl_seconds`` 120 by default, both signed (``request(...,
    true)``) with the key in ``x-perkamo-api-key``; any non-2xx answer throws."""
    from tests.perkamo.http.test_auth import signed_headers

    for body, ttl in (
        ({"browser_key": browser.key, "user_id": "customer_123"}, 600),
        ({"browser_key": browser.key, "user_id": "customer_123", "ttl_seconds": 60}, 60),
        (
            {
                "browser_key": browser.key,
                "user_id": "customer_123",
                "purpose": "stream",
                "ttl_seconds": 120,
            },
            120,
        ),  # fmt: skip
    ):
        raw = json.dumps(body).encode()
        headers = signed_headers(browser.api.key, "POST", "/v1/browser-tokens", raw)
        headers["accept"] = "application/json"
        answer = await browser.api.request("POST", "/v1/browser-tokens", data=raw, headers=headers)
        assert answer.status == 200
        payload = json.loads(answer.raw)  # as PHP's json_decode(..., true) sees it
        for field in ("token", "token_type", "expires_at"):
            assert isinstance(payload[field], str) and payload[field].strip() != ""
        assert type(payload["expires_in"]) is int and payload["expires_in"] == ttl
        assert b'"expires_in":%d' % ttl in answer.raw  # an integer on the wire
        assert payload["token_type"] == "Bearer"
        claims = _claims(payload["token"])
        assert payload["expires_at"].endswith("Z")
        assert abs(time.mktime(time.strptime(payload["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
                   - time.timezone - claims["exp"]) <= 1  # fmt: skip


async def test_token_claims_and_the_jwks(browser, space):
    token = await browser.token("customer_9")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"]
    claims = _claims(token)
    assert claims["iss"] == "perkamo" and claims["aud"] == "perkamo:client"
    assert claims["sub"] == "customer_9" and claims["space"] == space.slug
    assert claims["bk"] == browser.key_id and claims["ak"] == space.key_id
    assert claims["purpose"] == "client" and claims["exp"] - claims["iat"] == 600
    assert claims["jti"]
    jwks = await browser.api.get("/.well-known/jwks.json", key=None)
    assert jwks.status == 200 and jwks.headers["cache-control"] == "public, max-age=300"
    assert jwks.headers.get("access-control-allow-origin") is None
    key = next(k for k in jwks.body["keys"] if k["kid"] == header["kid"])
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    public = jwt.PyJWK(key).key
    verified = jwt.decode(token, public, algorithms=["EdDSA"], audience="perkamo:client")
    assert verified["sub"] == "customer_9"


async def test_stream_tokens_are_clamped_to_300_seconds(browser):
    answer = await browser.api.post(
        "/v1/browser-tokens",
        {"browser_key": browser.key, "user_id": "c", "purpose": "stream", "ttl_seconds": 1800},
    )
    assert answer.body["expires_in"] == 300
    claims = _claims(answer.body["token"])
    assert claims["purpose"] == "stream" and claims["exp"] - claims["iat"] == 300


@pytest.mark.parametrize("ttl", [0, 1801, -5, "600", 600.5])
async def test_ttl_outside_1_to_1800_is_a_validation_error(browser, ttl):
    body = {"browser_key": browser.key, "user_id": "c", "ttl_seconds": ttl}
    answer = await browser.api.post("/v1/browser-tokens", body)
    assert answer.status == 400 and answer.body["error"] == "validation_error"


async def test_minting_refuses_unknown_revoked_foreign_and_streamless_keys(
    runtime, browser, pg_url
):
    async def mint(key: str, **extra) -> tuple[int, str]:
        a = await browser.api.post(
            "/v1/browser-tokens", {"browser_key": key, "user_id": "c", **extra}
        )
        return a.status, a.body.get("error", "")

    assert await mint("bk_test_unknown") == (400, "invalid_browser_key")
    other = make_space(pg_url)
    foreign = await browser_setup(runtime, Api(app_for(runtime), other.key), other)
    assert await mint(foreign.key) == (400, "invalid_browser_key")
    no_stream = await browser.api.post(
        "/v1/admin/browser-keys",
        {"name": "n", "allowed_origins": [SHOP], "capabilities": {"stream": False}},
    )
    assert await mint(no_stream.body["key"]) == (200, "")
    assert await mint(no_stream.body["key"], purpose="stream") == (400, "invalid_browser_key")


async def test_profile_program_and_events_with_exact_cors(browser):
    token = await browser.token("customer_1")
    missing = await browser.call("GET", "/v1/client/profile", token)
    assert missing.status == 404 and missing.body["error"] == "profile_not_found"
    assert _cors_of(missing)["access-control-allow-origin"] == SHOP  # errors too
    event = {"event": "page.viewed", "transaction_id": "pv-1", "context": {"page": "/x"}}
    sent = await browser.call("POST", "/v1/client/events", token, json=event)
    assert sent.status == 200 and sent.body["applied"] is True
    assert _cors_of(sent) == {
        "access-control-allow-origin": SHOP,
        "vary": "origin",
        "access-control-expose-headers": EXPOSED,
        "access-control-allow-credentials": None,
    }
    again = await browser.call("POST", "/v1/client/events", token, json=event)
    assert again.body["duplicate"] is True and again.body["delta"] == sent.body["delta"]
    profile = await browser.call("GET", "/v1/client/profile", token)
    assert profile.status == 200 and "traits" not in profile.body
    assert profile.body["events"][0]["source"] == "client"
    assert profile.body["version"] == 1
    program = await browser.call("GET", "/v1/client/program", token)
    blueprint = program.body["blueprint"]
    assert blueprint["earningRules"] and all(
        "conditions" not in r for r in blueprint["earningRules"]
    )
    assert all("effect" not in r for r in blueprint["rewards"])
    assert set(program.body) == {"blueprint", "versions"}
    server_view = await browser.api.get("/v1/profile/customer_1")
    assert server_view.body["events"][0]["source"] == "client"
    assert server_view.headers.get("access-control-allow-origin") is None


async def test_exposed_traits_only(runtime, api, space):
    browser = await browser_setup(runtime, api, space, expose_traits=["plan"])
    await api.post("/v1/identify", {"user_id": "c", "traits": {"plan": "gold", "email": "x@y"}})
    profile = await browser.call("GET", "/v1/client/profile", await browser.token("c"))
    assert profile.body["traits"] == {"plan": "gold"}


@pytest.mark.parametrize(
    "origin",
    ["https://shop.example.com.evil.test", "http://shop.example.com",
     "https://shop.example.com:8443", "null", "https://evil.test"],
)  # fmt: skip
async def test_an_origin_not_listed_is_refused_without_cors(browser, origin):
    answer = await browser.call("GET", "/v1/client/program", await browser.token(), origin=origin)
    assert answer.status == 403 and answer.body["error"] == "origin_not_allowed"
    assert _cors_of(answer)["access-control-allow-origin"] is None


async def test_a_request_without_origin_is_judged_by_its_token(browser):
    answer = await browser.call("GET", "/v1/client/program", await browser.token(), origin=None)
    assert answer.status == 200 and answer.headers.get("access-control-allow-origin") is None


async def _preflight(app, origin: str) -> tuple[int, dict[str, str]]:
    client = app.test_client()
    headers = {"origin": origin, "access-control-request-method": "POST"}
    response = await client.open(
        "/v1/client/events", method="OPTIONS", headers=headers,
        scope_base={"raw_path": b"/v1/client/events"},
    )  # fmt: skip
    return response.status_code, dict(response.headers)


async def test_preflight(runtime, browser):
    app = app_for(runtime)
    status, headers = await _preflight(app, SHOP)
    assert status == 204
    assert headers["access-control-allow-origin"] == SHOP and headers["vary"] == "origin"
    assert headers["access-control-allow-methods"] == "GET, POST"
    assert headers["access-control-allow-headers"] == (
        "authorization, content-type, x-perkamo-browser-key, last-event-id"
    )
    assert headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in headers
    status, headers = await _preflight(app, "https://unknown.example.org")
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers = await _preflight(app, "null")
    assert status == 403


async def test_server_endpoints_never_send_cors_headers(browser, space):
    """A server key used from a page: the browser gets no CORS headers, so it cannot read
    the answer (and a preflight of a server endpoint is refused)."""
    for method, path, body in (
        ("POST", "/v1/events", {"user_id": "u", "event": "page.viewed", "transaction_id": "s1"}),
        ("GET", "/v1/profile/u", None),
        ("GET", "/v1/admin/browser-keys", None),
        ("POST", "/v1/browser-tokens", {"browser_key": browser.key, "user_id": "u"}),
    ):
        answer = await browser.api.request(method, path, json=body, headers={"origin": SHOP})
        assert answer.status in (200, 201), answer.body
        assert not any(h.lower().startswith("access-control-") for h in answer.headers.keys())


def _forge(claims: dict, kid: str = "sk-forged") -> str:
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})


async def test_forged_expired_and_malformed_tokens_are_401(browser, runtime):
    good = await browser.token()
    claims = _claims(good)
    kid = jwt.get_unverified_header(good)["kid"]
    now = int(time.time())
    hs256 = jwt.encode(
        claims, "a-guessed-secret-of-32-bytes-long", algorithm="HS256", headers={"kid": kid}
    )
    head, body, _ = good.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","kid":"%s"}' % kid.encode())
    candidates = {
        "forged signature, real kid": _forge(claims, kid),
        "forged key": _forge(claims),
        "hs256": hs256,
        "alg none": unsigned.decode().rstrip("=") + "." + body + ".",
        "tampered payload": head + "." + base64.urlsafe_b64encode(
            json.dumps({**claims, "sub": "someone_else"}).encode()).decode().rstrip("=")
            + "." + good.split(".")[2],
        "garbage": "not-a-token",
        "empty": "",
    }  # fmt: skip
    for name, token in candidates.items():
        answer = await browser.call("GET", "/v1/client/program", token)
        assert answer.status == 401 and answer.body["error"] == "invalid_token", name
    ring = runtime.browser.ring
    signer_kid, private = await ring.signing_key("test")

    def signed(**changes) -> str:
        c = {**claims, **changes}
        c = {k: v for k, v in c.items() if v is not None}
        return jwt.encode(c, private, algorithm="EdDSA", headers={"kid": signer_kid})

    refused = {
        "expired": signed(exp=now - 10, iat=now - 700),
        "wrong aud": signed(aud="somebody-else"),
        "aud as a list": signed(aud=["perkamo:client"]),
        "wrong iss": signed(iss="not-perkamo"),
        "no jti": signed(jti=None),
        "no ak": signed(ak=None),
        "unknown purpose": signed(purpose="admin"),
        # Signed by this server, but no user id the API takes (a leaked signing key, or a
        # bug in a minter): refused, never handed to storage (PostgreSQL refuses U+0000).
        "control character in sub": signed(sub="a\u0000b"),
        "empty sub": signed(sub=""),
        "sub too long": signed(sub="u" * 257),
    }
    for name, token in refused.items():
        answer = await browser.call("GET", "/v1/client/program", token)
        assert answer.status == 401 and answer.body["error"] == "invalid_token", name
    within_leeway = signed(exp=now - 3)
    assert (await browser.call("GET", "/v1/client/program", within_leeway)).status == 200


async def test_a_token_of_another_space_or_environment_is_refused(runtime, browser, pg_url):
    other = make_space(pg_url)
    foreign = await browser_setup(runtime, Api(app_for(runtime), other.key), other)
    claims = _claims(await foreign.token())
    kid, private = await runtime.browser.ring.signing_key("test")
    # The other Space's slug with this Space's browser key: the key's Space must match.
    mixed = jwt.encode({**claims, "bk": browser.key_id}, private, algorithm="EdDSA",
                       headers={"kid": kid})  # fmt: skip
    assert (await browser.call("GET", "/v1/client/program", mixed)).status == 401
    live_kid, live_private = await runtime.browser.ring.signing_key("live")
    own = _claims(await browser.token())
    by_live_key = jwt.encode(own, live_private, algorithm="EdDSA", headers={"kid": live_kid})
    answer = await browser.call("GET", "/v1/client/program", by_live_key)
    assert answer.status == 401  # a test Space's token signed by the live key


async def test_purposes_do_not_mix(browser):
    stream_token = await browser.token(purpose="stream")
    answer = await browser.call("GET", "/v1/client/profile", stream_token)
    assert answer.status == 403 and answer.body["error"] == "wrong_token_purpose"
    client_token = await browser.token()
    answer = await browser.call("GET", f"/v1/client/stream?token={client_token}", None)
    assert answer.status == 403 and answer.body["error"] == "wrong_token_purpose"
    assert answer.headers["access-control-allow-origin"] == SHOP


async def test_the_browser_key_header_must_name_the_tokens_key(runtime, api, space, browser):
    other = await api.post("/v1/admin/browser-keys", {"name": "o", "allowed_origins": [SHOP]})
    token = await browser.token()
    ok = await browser.call("GET", "/v1/client/program", token,
                            headers={"x-perkamo-browser-key": browser.key})  # fmt: skip
    assert ok.status == 200
    wrong = await browser.call("GET", "/v1/client/program", token,
                               headers={"x-perkamo-browser-key": other.body["key"]})  # fmt: skip
    assert wrong.status == 401 and wrong.body["error"] == "invalid_token"
    assert wrong.headers["access-control-allow-origin"] == SHOP  # the header's key allows it


async def test_revoking_the_minting_server_key_invalidates_its_tokens(
    runtime, browser, space, pg_url
):
    with psycopg.connect(pg_url) as conn:
        _, minter = admin.create_key(conn, space.space)
    minted = await Api(app_for(runtime), minter).post(
        "/v1/browser-tokens", {"browser_key": browser.key, "user_id": "c"}
    )
    token = minted.body["token"]
    assert (await browser.call("GET", "/v1/client/program", token)).status == 200
    async with notified(runtime):
        with psycopg.connect(pg_url) as conn:
            admin.revoke_key(conn, _claims(token)["ak"])
    assert (await browser.call("GET", "/v1/client/program", token)).status == 401


async def test_a_token_for_a_may_not_send_for_b(browser):
    token = await browser.token("customer_a")
    event = {"event": "page.viewed", "transaction_id": "x", "user_id": "customer_b"}
    answer = await browser.call("POST", "/v1/client/events", token, json=event)
    assert answer.status == 403 and answer.body["error"] == "user_mismatch"
    same = await browser.call("POST", "/v1/client/events", token,
                              json={**event, "user_id": "customer_a"})  # fmt: skip
    assert same.status == 200


async def test_events_the_key_or_the_program_does_not_allow(runtime, api, space):
    browser = await browser_setup(runtime, api, space, allowed_events=["page.viewed", "made.up"])
    token = await browser.token()
    for event in ("purchase.completed", "made.up"):  # not allowed; allowed but not configured
        answer = await browser.call("POST", "/v1/client/events", token,
                                    json={"event": event, "transaction_id": event})  # fmt: skip
        assert answer.status == 403 and answer.body["error"] == "event_not_allowed", event
    no_events = await api.post("/v1/admin/browser-keys", {
        "name": "n", "allowed_origins": [SHOP], "allowed_events": ["*"],
        "capabilities": {"events": False},
    })  # fmt: skip
    reader = await api.post(
        "/v1/browser-tokens", {"browser_key": no_events.body["key"], "user_id": "c"}
    )
    answer = await browser.call("POST", "/v1/client/events", reader.body["token"],
                                json={"event": "page.viewed", "transaction_id": "t"})  # fmt: skip
    assert answer.status == 403 and answer.body["error"] == "event_not_allowed"
    assert answer.body["message"] == "This browser token may not send events."


async def test_occurred_at_and_big_contexts_are_refused(browser):
    token = await browser.token()
    base = {"event": "page.viewed", "transaction_id": "t1"}
    dated = await browser.call("POST", "/v1/client/events", token,
                               json={**base, "occurred_at": "2026-01-01T00:00:00Z"})  # fmt: skip
    assert dated.status == 400 and dated.body["details"][0]["path"] == "occurred_at"
    big = await browser.call("POST", "/v1/client/events", token,
                             json={**base, "context": {"x": "y" * 2100}})  # fmt: skip
    assert big.status == 400 and big.body["details"][0]["path"] == "context"


async def test_a_browser_transaction_id_never_collides_with_a_servers(browser, space, pg_url):
    server = await browser.api.post(
        "/v1/events", {"user_id": "c", "event": "page.viewed", "transaction_id": "order_1"}
    )
    assert server.status == 200
    token = await browser.token("c")
    page = await browser.call("POST", "/v1/client/events", token,
                              json={"event": "lesson.finished", "transaction_id": "order_1"})  # fmt: skip
    assert page.status == 200 and page.body["applied"] and not page.body["duplicate"]
    # And the other way round: the page's id does not use up the server's.
    first = await browser.call("POST", "/v1/client/events", token,
                               json={"event": "page.viewed", "transaction_id": "order_2"})  # fmt: skip
    assert first.body["duplicate"] is False
    later = await browser.api.post(
        "/v1/events", {"user_id": "c", "event": "purchase.completed", "transaction_id": "order_2"}
    )
    assert later.status == 200 and later.body["duplicate"] is False
    other_customer = await browser.call(
        "POST", "/v1/client/events", await browser.token("d"),
        json={"event": "page.viewed", "transaction_id": "order_2"},
    )  # fmt: skip
    assert other_customer.body["duplicate"] is False  # per customer
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT source, scope_user, user_id FROM events WHERE space_id = %s"
            " AND transaction_id = 'order_2' ORDER BY source, scope_user",
            (space.space.id,),
        ).fetchall()
    assert rows == [("client", "c", "c"), ("client", "d", "d"), ("server", "", "c")]


async def test_the_per_customer_rate(runtime, api, space):
    browser = await browser_setup(runtime, api, space, rate={"per_second": 1, "burst": 3})
    token = await browser.token("c")
    statuses = [(await browser.call("GET", "/v1/client/program", token)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = await browser.call("GET", "/v1/client/program", token)
    assert refused.body["error"] == "rate_limited" and refused.headers["retry-after"]
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["access-control-allow-origin"] == SHOP
    other = await browser.call("GET", "/v1/client/program", await browser.token("d"))
    assert other.status == 200  # another customer has a bucket of their own


async def test_client_events_meet_the_spaces_usage_limits(runtime, api, space, pg_url):
    from storage import spaces as space_store

    browser = await browser_setup(runtime, api, space)
    with psycopg.connect(pg_url) as conn:
        space_store.set_limits(conn, space.slug, {"events": 1})
    async with notified(runtime):
        with psycopg.connect(pg_url) as conn:
            conn.execute("UPDATE spaces SET name = name WHERE id = %s", (space.space.id,))
    token = await browser.token("c")
    one = await browser.call("POST", "/v1/client/events", token,
                             json={"event": "page.viewed", "transaction_id": "a"})  # fmt: skip
    two = await browser.call("POST", "/v1/client/events", token,
                             json={"event": "page.viewed", "transaction_id": "b"})  # fmt: skip
    assert one.status == 200
    assert two.status == 429 and two.body["error"] == "usage_limit_exceeded"


async def test_source_reaches_the_webhook_and_a_rule_may_test_it(runtime, api, space, pg_url):
    """A rule with ``{"path": "source", "op": "eq", "value": "server"}`` never awards a
    browser-sent event; the webhook's data says which source an event came from; replay
    (``perkamo verify``) agrees with what was applied."""
    from perkamo.access.admin import set_webhook
    from perkamo.profiles.verify import verify_space
    from storage.spaces import get_space

    browser = await browser_setup(runtime, api, space)
    with psycopg.connect(pg_url) as conn:
        set_webhook(conn, space.slug, "http://127.0.0.1:9/hook")
    body = (await api.get("/v1/admin/config/events")).body["body"]
    for rule in body["rules"]:
        if rule["event"] == "page.viewed":
            rule["conditions"] = [{"path": "source", "op": "eq", "value": "server"}]
    uploaded = await api.post("/v1/admin/config/events", {"version": "server-only", "body": body})
    assert uploaded.status == 200, uploaded.body
    token = await browser.token("c")
    from_page = await browser.call("POST", "/v1/client/events", token,
                                   json={"event": "page.viewed", "transaction_id": "p1"})  # fmt: skip
    from_server = await api.post(
        "/v1/events", {"user_id": "c", "event": "page.viewed", "transaction_id": "p1"}
    )
    assert from_server.body["delta"] != [] and from_page.body["delta"] == []
    with psycopg.connect(pg_url) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM webhook_deliveries WHERE space_id = %s AND subject = 'p1'"
            " ORDER BY created_at", (space.space.id,))]  # fmt: skip
        conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE space_id = %s",
                     (space.space.id,))  # fmt: skip
        report = verify_space(conn, get_space(conn, space.slug))
    assert sorted(b["data"]["source"] for b in bodies) == ["client", "server"]
    assert report.mismatches == []


async def test_an_unknown_kid_reloads_the_key_set_at_most_once_a_second(browser, runtime):
    ring = runtime.browser.ring
    reloads = 0
    original = ring.reload

    async def counted() -> None:
        nonlocal reloads
        reloads += 1
        await original()

    ring.reload = counted  # type: ignore[method-assign]
    claims = _claims(await browser.token())
    for n in range(20):
        forged = _forge(claims, kid=f"sk-made-up-{n}")
        assert (await browser.call("GET", "/v1/client/program", forged)).status == 401
    assert reloads <= 2  # the first unknown kid reloads; the next ones wait out the second
