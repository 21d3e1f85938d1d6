"""The console's security rules at the HTTP level (docs/operations.md (the console), "Operators and sessions"):
CSRF, same origin, roles (checked against the route table), sessions (expiry, logout, a new
id at login), throttled login, escaping, headers, and the wall between API keys and
console sessions."""

from __future__ import annotations

import re

import psycopg
import pytest

from perkamo.console import ROUTES, security
from tests.api_client import Api, app_for
from tests.perkamo.console.helpers import ORIGIN, Browser, add_operator

# No "/" here: Quart's in-process client decodes %2F (real HTTP keeps it; the browser
# test walks a user id with one).
HOSTILE = '<script>alert("x")<img src=x onerror=alert(1)>'


@pytest.fixture
def browser(runtime):
    return Browser(app_for(runtime))


@pytest.fixture
async def admin(pg_url, browser):
    email, password = add_operator(pg_url, "admin", "admin")
    assert (await browser.login(email, password)).status == 303
    return browser


@pytest.fixture
async def viewer(pg_url, runtime):
    email, password = add_operator(pg_url, "viewer", "viewer")
    browser = Browser(app_for(runtime))
    assert (await browser.login(email, password)).status == 303
    return browser


def audit_rows(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


def concrete(pattern: str, slug: str) -> str:
    path = pattern.replace("{slug}", slug)
    return "/console" + re.sub(r"\{\w+\}", "x", path)


async def test_every_page_needs_a_session_and_an_api_key_does_not_open_it(browser, space):
    for route in ROUTES:
        if route.anonymous or route.method != "GET":
            continue
        page = await browser.get(
            concrete(route.pattern, space.slug), headers={"x-perkamo-api-key": space.key}
        )
        assert page.status == 303 and page.location.startswith("/console/login"), route.pattern


async def test_a_console_session_never_authorizes_the_api(admin, runtime, space):
    api = Api(app_for(runtime), None)
    cookie = admin.client.cookie_jar  # the browser's cookies, sent with an API request
    assert cookie is not None
    answer = await api.get("/v1/program", key=None)
    assert (answer.status, answer.body["error"]) == (401, "missing_api_key")
    raw = await admin.client.get("/v1/program")
    assert raw.status_code == 401


async def test_security_headers_on_every_console_page(admin, browser, space):
    paths = [concrete(r.pattern, space.slug) for r in ROUTES if r.method == "GET"]
    for path in [*paths, "/console/login", "/console/nope"]:
        page = await browser.get(path)
        for name, value in security.HEADERS.items():
            assert page.headers.get(name) == value, (path, name)
        assert "unsafe-inline" not in page.headers["content-security-policy"]


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_csrf_is_required_and_nothing_changes(admin, pg_url, token):
    before = audit_rows(pg_url)
    form = {"slug": "csrf-victim", "name": "x", "environment": "test"}
    if token is not None:
        form["csrf_token"] = token
    page = await admin.post("/console/spaces", form)
    assert page.status == 403
    assert audit_rows(pg_url) == before
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1 FROM spaces WHERE slug = 'csrf-victim'").fetchone() is None


async def test_another_origin_is_refused_even_with_the_token(admin, pg_url):
    token = await admin.csrf()
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        page = await admin.post(
            "/console/spaces", {"slug": "cross", "csrf_token": token}, headers=headers
        )
        assert page.status == 403, headers
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1 FROM spaces WHERE slug = 'cross'").fetchone() is None


async def test_a_viewer_can_read_but_every_mutation_is_refused(viewer, pg_url, space):
    token = await viewer.csrf()
    before = audit_rows(pg_url)
    mutating = [r for r in ROUTES if r.mutates]
    assert len(mutating) >= 10 and all(r.method == "POST" for r in mutating)
    for route in mutating:
        page = await viewer.post(concrete(route.pattern, space.slug), {"csrf_token": token})
        assert page.status == 403, route.pattern
    assert audit_rows(pg_url) == before
    page = await viewer.get(f"/console/spaces/{space.slug}/keys")
    assert page.status == 200 and "Create key" not in page.text and "Revoke" not in page.text


async def test_login_gives_a_new_session_id_and_logout_ends_it(pg_url, browser):
    email, password = add_operator(pg_url, "s", "viewer")
    # A session id planted before login (fixation) is never the one login hands out.
    browser.client.set_cookie("localhost", security.SESSION_COOKIE, "planted", path="/console")
    first = await browser.login(email, password)
    new = first.headers.get("set-cookie", "")
    assert security.SESSION_COOKIE in new and "planted" not in new
    assert "HttpOnly" in new and "SameSite=Lax" in new
    other = Browser(browser.client.app)
    second = await other.login(email, password)
    assert second.headers["set-cookie"].split(";")[0] != new.split(";")[0]
    token = await browser.csrf()
    assert (await browser.post("/console/logout", {"csrf_token": token})).status == 303
    assert (await other.post("/console/logout", {"csrf_token": await other.csrf()})).status == 303
    assert (await browser.get("/console/spaces")).status == 303  # back to the login page
    with psycopg.connect(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM operator_sessions s JOIN operators o ON o.id = s.operator_id"
            " WHERE o.email = %s",
            (email,),
        ).fetchone()
    assert left == (0,)


@pytest.mark.parametrize(
    ("field", "age"), [("last_seen_at", "2 hours"), ("created_at", "13 hours")]
)
async def test_sessions_expire_idle_after_an_hour_and_at_twelve_hours(admin, pg_url, field, age):
    assert (await admin.get("/console/spaces")).status == 200
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE operator_sessions SET last_seen_at = CASE WHEN %s THEN now() - %s::interval"
            " ELSE last_seen_at END, created_at = CASE WHEN %s THEN now() - %s::interval"
            " ELSE created_at END",
            (field == "last_seen_at", age, field == "created_at", age),
        )
    page = await admin.get("/console/spaces")
    assert page.status == 303 and page.location.startswith("/console/login")


async def test_failed_logins_are_throttled_per_account(pg_url, browser):
    email, password = add_operator(pg_url, "t", "admin")
    for _ in range(5):
        assert (await browser.login(email, "wrong")).status == 401
    refused = await browser.login(email, password)  # even the right one, for now
    assert refused.status == 429 and int(refused.headers["retry-after"]) > 0
    assert "Too many failed logins" in refused.text


async def test_login_never_redirects_off_the_console(pg_url, browser):
    email, password = add_operator(pg_url, "r", "viewer")
    form = await browser.get("/console/login?next=//evil.example/x")
    page = await browser.post(
        "/console/login",
        {
            "email": email,
            "password": password,
            "csrf_token": form.csrf(),
            "next": "//evil.example/x",
        },
    )
    assert page.status == 303 and page.location == "/console/spaces"


async def test_hostile_customer_data_is_escaped(admin, runtime, space):
    api = Api(app_for(runtime), space.key)
    assert (
        await api.post("/v1/identify", {"user_id": HOSTILE, "traits": {"nick": HOSTILE}})
    ).status == 200
    event = {
        "user_id": HOSTILE,
        "event": "ev<b>il",
        "transaction_id": HOSTILE,
        "context": {"x": HOSTILE},
    }
    assert (await api.post("/v1/events", event)).status == 200
    from urllib.parse import quote

    pages = [
        f"/console/spaces/{space.slug}/customers",
        f"/console/spaces/{space.slug}/customers/{quote(HOSTILE, safe='')}",
        f"/console/spaces/{space.slug}/events",
        f"/console/spaces/{space.slug}/events/{quote(HOSTILE, safe='')}",
    ]
    for path in pages:
        page = await admin.get(path)
        assert page.status == 200, path
        assert "<script>" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;" in page.text, path


def test_the_origin_rule():
    assert security.same_origin(None, None, "localhost")
    assert security.same_origin(ORIGIN, "same-origin", "localhost")
    assert not security.same_origin("http://other", None, "localhost")
    assert not security.same_origin("null", None, "localhost")
    assert not security.same_origin(None, "cross-site", "localhost")


@pytest.mark.parametrize("zone", ["America", "x" * 300, "../../etc/passwd", "Europe/Prague"])
async def test_any_time_zone_cookie_shows_the_page(admin, space, zone):
    """The browser's zone comes from a cookie anyone can set: a directory of the zone
    database or an overlong name is shown in UTC, never a 500."""
    admin.client.set_cookie("localhost", "perkamo_tz", zone)
    page = await admin.get(f"/console/spaces/{space.slug}/events")
    assert page.status == 200
