"""``perkamo browser-keys`` and ``perkamo tokens rotate-signing-key`` against real
PostgreSQL and a running runtime: the key lifecycle, and signing keys rotated (published at
once, signing 600 s later) or replaced after a compromise."""

from __future__ import annotations

import concurrent.futures
import secrets

import jwt
import psycopg
import pytest

from perkamo.access import tokens
from perkamo.cli.main import main
from storage import signing_keys
from tests.api_client import Api, app_for
from tests.browser import SHOP, browser_setup
from tests.notifications import notified


@pytest.fixture
def cli(pg_url, monkeypatch, capsys):
    monkeypatch.setenv("PERKAMO_DATABASE_URL", pg_url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_browser_keys_lifecycle(cli):
    slug = "bk-" + secrets.token_hex(3)
    assert cli("spaces", "create", slug)[0] == 0
    code, out, err = cli(
        "browser-keys", "create", slug, "--name", "Shop", "--origin", SHOP,
        "--origin", "http://localhost:*", "--events", "page.viewed,lesson.finished", "--no-stream",
    )  # fmt: skip
    assert code == 0, err
    key = next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))
    key_id = out.split()[0]
    assert key.startswith("bk_test_") and key_id.startswith("bkey_")
    assert "read+events" in out and "stream" not in out.split("\t")[5]
    code, out, _ = cli("browser-keys", "list", slug)
    assert key_id in out and key not in out and "active" in out
    code, out, _ = cli("browser-keys", "update", key_id, "--allow-stream", "--events", "*")
    assert code == 0 and "read+events+stream" in out and "events=*" in out
    code, out, _ = cli("browser-keys", "revoke", key_id)
    assert code == 0 and "revoked" in out
    assert "revoked" in cli("browser-keys", "list", slug)[1]
    code, _, err = cli("browser-keys", "create", slug, "--name", "x", "--origin", "https://a/b")
    assert code == 2 and "allowed_origins[0]" in err
    code, _, err = cli("browser-keys", "revoke", "bkey_none")
    assert code == 2 and "no browser key" in err


async def test_rotation_publishes_at_once_and_signs_600_s_later(runtime, api, space, cli):
    browser = await browser_setup(runtime, api, space)
    before = await browser.token()
    old_kid = jwt.get_unverified_header(before)["kid"]
    async with notified(runtime):
        code, out, _ = cli("tokens", "rotate-signing-key", "--environment", "test")
    assert code == 0 and "signs in 600 s" in out
    jwks = (await api.get("/.well-known/jwks.json", key=None)).body["keys"]
    new_kid = out.split()[1]
    assert {old_kid, new_kid} <= {k["kid"] for k in jwks}  # published at once
    after = await browser.token()
    assert jwt.get_unverified_header(after)["kid"] == old_kid  # the old key signs meanwhile
    for token in (before, after):
        assert (await browser.call("GET", "/v1/client/program", token)).status == 200
    with psycopg.connect(runtime.db.url) as conn:
        rows = {k.kid: k for k in signing_keys.live_keys(conn)}
    new, old = rows[new_kid], rows[old_kid]
    assert 595 <= (new.signs_from - new.created_at).total_seconds() <= 605
    assert old.retired_at is not None
    assert 2395 <= (old.retired_at - new.created_at).total_seconds() <= 2405


async def test_revoke_previous_replaces_a_compromised_key_at_once(runtime, api, space, cli):
    browser = await browser_setup(runtime, api, space)
    before = await browser.token()
    async with notified(runtime):
        code, out, _ = cli("tokens", "rotate-signing-key", "--environment", "test",
                           "--revoke-previous")  # fmt: skip
    assert code == 0
    new_kid = out.split()[1]
    refused = await browser.call("GET", "/v1/client/program", before)
    assert refused.status == 401 and refused.body["error"] == "invalid_token"
    after = await browser.token()
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert (await browser.call("GET", "/v1/client/program", after)).status == 200
    jwks = (await api.get("/.well-known/jwks.json", key=None)).body["keys"]
    assert jwt.get_unverified_header(before)["kid"] not in {k["kid"] for k in jwks}


def test_the_first_key_of_an_environment_is_made_once_however_many_start_at_once(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE signing_keys SET retired_at = now() WHERE environment = 'live'")

    def start(_: int) -> bool:
        kid, private, public = tokens.new_key_pair()
        with psycopg.connect(pg_url) as conn:
            made = signing_keys.ensure_first(conn, "live", kid, private, public)
            conn.commit()
            return made

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made = list(pool.map(start, range(8)))
    assert made.count(True) == 1
    with psycopg.connect(pg_url) as conn:
        live = [k for k in signing_keys.live_keys(conn) if k.environment == "live"]
    assert len(live) == 1


async def test_a_live_spaces_tokens_are_signed_by_the_live_key(runtime, pg_url):
    from tests.spaces import make_space

    live = make_space(pg_url, environment="live")
    api = Api(app_for(runtime), live.key)
    browser = await browser_setup(runtime, api, live)
    token = await browser.token()
    live_kid, _ = await runtime.browser.ring.signing_key("live")
    assert jwt.get_unverified_header(token)["kid"] == live_kid
    assert (await browser.call("GET", "/v1/client/program", token)).status == 200
