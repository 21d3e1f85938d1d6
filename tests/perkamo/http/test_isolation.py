"""Isolation and security: a key of Space A never reads or writes Space B on any endpoint
(the table below is checked against the route table, so a new endpoint needs a case);
signatures cannot be replayed outside their window or onto another request; error bodies
never carry SQL, paths or tracebacks; SQL is never built from strings."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from perkamo.http.handlers import program as program_handlers
from perkamo.http.routes import build_router
from tests.api_client import Api, app_for
from tests.leaks import assert_no_leak
from tests.perkamo.http.test_auth import signed_headers
from tests.server_process import demo_program
from tests.spaces import SpaceKey, make_space

ROOT = Path(__file__).resolve().parents[3]
WALLETS = {"wallets": [{"key": "points", "name": "Points"}], "rewards": []}

# Every keyed endpoint with a request that would succeed (or fail only on business rules)
# for the key's own Space.
REQUESTS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("POST", "/v1/identify"): ("/v1/identify", {"user_id": "iso", "traits": {"x": 1}}),
    ("POST", "/v1/events"): (
        "/v1/events",
        {"user_id": "iso", "event": "app.opened", "transaction_id": "iso-1"},
    ),
    ("POST", "/v1/events:batch"): (
        "/v1/events:batch",
        {"events": [{"user_id": "iso", "event": "app.opened", "transaction_id": "iso-2"}]},
    ),
    ("GET", "/v1/profile/{user_id}"): ("/v1/profile/iso", None),
    ("GET", "/v1/customer/{user_id}"): ("/v1/customer/iso", None),
    ("GET", "/v1/program"): ("/v1/program", None),
    ("GET", "/v1/usage"): ("/v1/usage", None),
    ("POST", "/v1/rewards/redeem"): (
        "/v1/rewards/redeem",
        {"user_id": "iso", "reward_key": "free_shipping", "transaction_id": "rd-1"},
    ),
    ("POST", "/v1/admin/config"): (
        "/v1/admin/config",
        {"version": "iso", "modules": {"wallets": WALLETS}},
    ),
    ("POST", "/v1/admin/config/{module}"): (
        "/v1/admin/config/wallets",
        {"version": "iso-2", "body": WALLETS},
    ),
    ("GET", "/v1/admin/config/{module}"): ("/v1/admin/config/wallets", None),
    ("POST", "/v1/admin/simulate"): (
        "/v1/admin/simulate",
        {"user_id": "iso", "events": [{"event": "app.opened"}]},
    ),
    ("POST", "/v1/admin/backtests"): ("/v1/admin/backtests", {"program": {}}),
    ("GET", "/v1/admin/backtests"): ("/v1/admin/backtests", None),
    ("GET", "/v1/admin/backtests/{backtest_id}"): ("/v1/admin/backtests/bt_none", None),
    ("DELETE", "/v1/admin/backtests/{backtest_id}"): ("/v1/admin/backtests/bt_none", None),
    ("POST", "/v1/admin/adjustments"): (
        "/v1/admin/adjustments",
        {
            "user_id": "iso",
            "wallet": "points",
            "amount": 5,
            "reason": "iso",
            "transaction_id": "adj-1",
        },
    ),  # fmt: skip
    ("POST", "/v1/admin/redemptions/{transaction_id}/reverse"): (
        "/v1/admin/redemptions/rd-1/reverse",
        {"reason": "iso"},
    ),
    ("POST", "/v1/admin/events/{transaction_id}/reverse"): (
        "/v1/admin/events/ev-1/reverse",
        {"reason": "iso"},
    ),
    ("POST", "/v1/admin/browser-keys"): (
        "/v1/admin/browser-keys",
        {"name": "iso", "allowed_origins": ["https://iso.example.com"]},
    ),
    ("GET", "/v1/admin/browser-keys"): ("/v1/admin/browser-keys", None),
    ("PATCH", "/v1/admin/browser-keys/{browser_key_id}"): (
        "/v1/admin/browser-keys/bkey_none",
        {"name": "iso"},
    ),
    ("DELETE", "/v1/admin/browser-keys/{browser_key_id}"): (
        "/v1/admin/browser-keys/bkey_none",
        None,
    ),
    ("POST", "/v1/browser-tokens"): (
        "/v1/browser-tokens",
        {"browser_key": "bk_test_none", "user_id": "iso"},
    ),
}


def test_the_table_covers_every_keyed_route():
    keyed = {(r.method, r.pattern) for r in build_router().routes if r.scope is not None}
    assert keyed == set(REQUESTS)


def footprint(pg_url: str, space: SpaceKey) -> tuple[Any, ...]:
    """Everything a Space owns, counted (with its profiles' versions)."""
    with psycopg.connect(pg_url) as conn:
        sid = conn.execute("SELECT id FROM spaces WHERE slug = %s", (space.slug,)).fetchone()
        assert sid is not None
        return tuple(
            conn.execute(query, (sid[0],)).fetchone()
            for query in (
                "SELECT count(*), coalesce(sum(version), 0) FROM profiles WHERE space_id = %s",
                "SELECT count(*) FROM events WHERE space_id = %s",
                "SELECT count(*) FROM redemptions WHERE space_id = %s",
                "SELECT count(*) FROM config_versions WHERE space_id = %s",
                "SELECT count(*) FROM adjustments WHERE space_id = %s",
                "SELECT count(*) FROM reversals WHERE space_id = %s",
                "SELECT count(*) FROM backtests WHERE space_id = %s",
                "SELECT count(*) FROM browser_keys WHERE space_id = %s",
                "SELECT coalesce(sum(used), 0) FROM usage_counters WHERE space_id = %s"
                " AND meter <> 'api_requests'",  # A's refused requests are A's to count
            )
        )


@pytest.fixture
async def two_spaces(runtime, pg_url) -> tuple[Api, SpaceKey, Api, SpaceKey]:
    a_space, b_space = make_space(pg_url), make_space(pg_url)
    a, b = Api(app_for(runtime), a_space.key), Api(app_for(runtime), b_space.key)
    for api in (a, b):
        assert (await api.post("/v1/admin/config", demo_program())).status == 200
    return a, a_space, b, b_space


@pytest.mark.parametrize("route", sorted(REQUESTS), ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("field", ["tenant", "space"])
async def test_naming_another_space_is_refused_and_changes_nothing(
    two_spaces, pg_url, route, field
):
    a, a_space, b, b_space = two_spaces
    method, _ = route
    path, body = REQUESTS[route]
    before = footprint(pg_url, a_space), footprint(pg_url, b_space)
    if body is None:
        answer = await a.request(method, f"{path}?{field}={b_space.slug}")
    else:
        answer = await a.request(method, path, json={**body, field: b_space.slug})
    assert (answer.status, answer.body["error"]) == (403, "tenant_mismatch")
    assert b_space.slug not in answer.body["message"]  # never echo another tenant's data
    assert (footprint(pg_url, a_space), footprint(pg_url, b_space)) == before


async def test_a_space_sees_only_its_own_data(two_spaces, pg_url):
    a, a_space, b, b_space = two_spaces
    for method, pattern in sorted(REQUESTS):
        path, body = REQUESTS[(method, pattern)]
        await a.request(method, path, json=body)
    b_before = footprint(pg_url, b_space)
    assert (await a.get("/v1/profile/iso")).status == 200
    assert (await b.get("/v1/profile/iso")).status == 404
    assert (await b.get("/v1/customer/iso")).status == 404
    usage = (await b.get("/v1/usage")).body
    assert usage["tenant"] == b_space.slug
    assert usage["meters"]["events"]["used"] == 0
    program = (await b.get("/v1/program")).body
    assert program["metrics"]["events"] == 0 and program["metrics"]["profiles"] == 0
    assert (await b.get("/v1/admin/browser-keys")).body["browser_keys"] == []
    versions = (await b.get("/v1/admin/config/wallets")).body["versions"]
    assert [v["version"] for v in versions] == ["demo"]
    # The same user and transaction ids in B are B's own, applied there once.
    same = {"user_id": "iso", "event": "app.opened", "transaction_id": "iso-1"}
    applied = await b.post("/v1/events", same)
    assert (applied.body["applied"], applied.body["duplicate"]) == (True, False)
    assert footprint(pg_url, b_space) != b_before
    assert (await a.post("/v1/events", same)).body["duplicate"] is True


async def test_batch_items_naming_another_space_fail_alone(two_spaces, pg_url):
    a, a_space, b, b_space = two_spaces
    items = [
        {"user_id": "u", "event": "app.opened", "transaction_id": "ok-1"},
        {"user_id": "u", "event": "app.opened", "transaction_id": "x-1", "tenant": b_space.slug},
        {"user_id": "v", "event": "app.opened", "transaction_id": "x-2", "space": b_space.slug},
        {"user_id": "u", "event": "app.opened", "transaction_id": "ok-2", "tenant": a_space.slug},
    ]
    b_before = footprint(pg_url, b_space)
    results = (await a.post("/v1/events:batch", {"events": items})).body["results"]
    assert [r["applied"] for r in results] == [True, False, False, True]
    assert [r.get("error", {}).get("error") for r in results[1:3]] == ["tenant_mismatch"] * 2
    assert footprint(pg_url, b_space) == b_before
    assert (await a.get("/v1/profile/v")).status == 404


# -- signatures -------------------------------------------------------------------------------


async def test_signatures_cannot_be_replayed_outside_their_window_or_request(api, space, pg_url):
    body = msgspec.json.encode({"user_id": "sig", "event": "app.opened", "transaction_id": "s1"})
    other = make_space(pg_url)
    # Outside the 300 s window by 5 s, whatever the second's fraction or a slow machine adds
    # between signing here and checking there (+301 was accepted when that took over 1 s).
    cases = {
        "too old": signed_headers(space.key, "POST", "/v1/events", body, int(time.time()) - 305),
        "too new": signed_headers(space.key, "POST", "/v1/events", body, int(time.time()) + 306),
        "other path": signed_headers(space.key, "POST", "/v1/identify", body),
        "other method": signed_headers(space.key, "PUT", "/v1/events", body),
        "other body": signed_headers(space.key, "POST", "/v1/events", body + b" "),
        "other key": signed_headers(other.key, "POST", "/v1/events", body),
    }
    for name, headers in cases.items():
        answer = await api.request("POST", "/v1/events", data=body, headers=headers)
        assert (answer.status, answer.body["error"]) == (401, "invalid_signature"), name
    # Within the window a replay is harmless: the event applies once.
    fresh = signed_headers(space.key, "POST", "/v1/events", body)
    first = await api.request("POST", "/v1/events", data=body, headers=fresh)
    again = await api.request("POST", "/v1/events", data=body, headers=fresh)
    assert (first.status, first.body["duplicate"]) == (200, False)
    assert (again.status, again.body["duplicate"]) == (200, True)


# -- what errors may say ------------------------------------------------------------------------


async def test_an_internal_error_says_nothing_about_its_cause(runtime, space, monkeypatch):
    """A defect deep inside answers a generic 500: no SQL, path or trace in the body."""

    def broken(*args: object) -> Any:
        raise psycopg.errors.SyntaxError(
            'syntax error at or near "SELECT * FROM profiles" in /work/main/storage/profiles.py'
        )

    monkeypatch.setattr(program_handlers, "usage_document", broken)
    client = app_for(runtime).test_client()
    response = await client.get(
        "/v1/usage",
        headers={"x-perkamo-api-key": space.key},
        scope_base={"raw_path": b"/v1/usage"},
    )
    raw = (await response.get_data()).decode()
    assert response.status_code == 500
    body = msgspec.json.decode(raw)
    assert body["error"] == "internal_error" and body["request_id"].startswith("req_")
    assert_no_leak(raw)
    assert "/work/" not in raw and "profiles.py" not in raw


# -- SQL is parameterized ------------------------------------------------------------------------


def _string_built(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr | ast.BinOp):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
    )


def test_no_sql_is_built_from_strings():
    """Every statement passed to execute() is a literal, a named constant or psycopg's sql
    composition; never an f-string, concatenation, % or str.format (ruff's S608 also
    refuses such strings in the first place)."""
    calls = 0
    for path in sorted([*ROOT.glob("storage/**/*.py"), *ROOT.glob("perkamo/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"execute", "executemany", "copy", "stream"}
                and node.args
            ):
                calls += 1
                assert not _string_built(node.args[0]), f"{path}:{node.lineno}"
    assert calls > 20  # the scan really saw the storage layer
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"S608"' in pyproject or '"S"' in pyproject
