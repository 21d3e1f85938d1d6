"""Whatever is accepted can be stored and read back: every input field that reaches storage
(traits, contexts, ids, event names, configuration values, adjustment texts, limits) fed
with extreme values — huge and tiny numbers, many digits, long strings, deep nesting, text
from every Unicode plane — is either refused at the edge with a 400, or stored, read back
equal, and the profile's next write succeeds. (A trait of 1e309 was accepted and then made
every later write of its profile answer 503: the stored traits were decoded as binary
floats.)"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.access.limits import MAX_LIMIT, InvalidLimit, check_limits, parse_limit
from perkamo.configuration import activate_demo
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from storage import spaces as space_store
from tests.api_client import Api, app_for
from tests.conftest import forget_dead_members
from tests.spaces import SpaceKey, make_space

_encode = msgspec.json.Encoder(decimal_format="number").encode
_exact = msgspec.json.Decoder(float_hook=Decimal).decode

PLANES = [chr(c) for c in (0x41, 0xE9, 0x4E2D, 0xFFFD, 0x1F600, 0x20000, 0x30000,
                           0xE0041, 0xF0000, 0x10FFFD)]  # fmt: skip
extreme_numbers = st.one_of(
    st.sampled_from([Decimal(t) for t in ("1e309", "-1e309", "1e-1000", "1e1000", "-0",
                                          "0.0", "1.5e-7", "150.0", "1e1001", "1e-1001")]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.decimals(allow_nan=False, allow_infinity=False),
)  # fmt: skip
texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.lists(st.sampled_from(PLANES), min_size=1, max_size=300).map("".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | extreme_numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(texts, json_values, max_size=4)


def _same(sent: Any, back: Any) -> bool:
    """Equal as JSON values, numbers compared as exact decimals."""
    return _exact(_encode(sent)) == back


async def _check_identify(
    api: Api, user: str, traits: dict[str, Any], known: dict[str, dict[str, Any]]
) -> None:
    body = _encode({"user_id": user, "traits": traits})
    answer = await api.request("POST", "/v1/identify", data=body, headers=_JSON)
    assert answer.status in (200, 400), answer.body
    if answer.status == 400:
        return
    merged = {**known.get(user, {}), **traits}  # a shallow merge; null removes a trait
    known[user] = {k: v for k, v in merged.items() if v is not None}
    profile = await api.get(f"/v1/profile/{quote(user, safe='')}")
    assert profile.status == 200, profile.body
    assert _same(known[user], _exact(profile.raw)["traits"])
    await _next_write_succeeds(api, user)


async def _check_event(api: Api, user: str, name: str, tx: str, context: dict[str, Any]) -> None:
    body = _encode({"user_id": user, "event": name, "transaction_id": tx, "context": context})
    answer = await api.request("POST", "/v1/events", data=body, headers=_JSON)
    assert answer.status in (200, 400), answer.body
    if answer.status == 400:
        return
    again = await api.request("POST", "/v1/events", data=body, headers=_JSON)
    assert again.status == 200 and again.body["duplicate"] is True, again.body
    profile = await api.get(f"/v1/profile/{quote(user, safe='')}")
    assert profile.status == 200, profile.body
    assert any(e["transaction_id"] == tx for e in profile.body["events"])
    await _next_write_succeeds(api, user)


async def _check_support(api: Api, user: str, reason: str, actor: str, tx: str) -> None:
    body = {"user_id": user, "wallet": "points", "amount": 150, "reason": reason,
            "actor": actor, "transaction_id": tx}  # fmt: skip
    answer = await api.post("/v1/admin/adjustments", body)
    assert answer.status in (200, 400, 404), answer.body
    if answer.status == 200:
        redeem = {"user_id": user, "reward_key": "free_shipping", "transaction_id": tx,
                  "context": {"note": reason, "n": Decimal("1e309")}}  # fmt: skip
        redeemed = await api.request("POST", "/v1/rewards/redeem", data=_encode(redeem),
                                     headers=_JSON)  # fmt: skip
        assert redeemed.status in (200, 400), redeemed.body
        await _next_write_succeeds(api, user)


async def _check_config(api: Api, n: int, name: str, metadata: dict[str, Any]) -> None:
    perks = {"perks": [{"key": "p", "name": name, "description": name,
                        "trigger": {"type": "event_count", "event": "app.opened", "count": 3},
                        "metadata": metadata}]}  # fmt: skip
    upload = _encode({"version": f"v{n}", "active": False, "body": perks})
    answer = await api.request("POST", "/v1/admin/config/perks", data=upload, headers=_JSON)
    assert answer.status in (200, 400), answer.body
    if answer.status == 200:
        module = await api.get("/v1/admin/config/perks")
        assert module.status == 200
        assert f"v{n}" in [v["version"] for v in module.body["versions"]]


async def _next_write_succeeds(api: Api, user: str) -> None:
    event = {"user_id": user, "event": "app.opened", "transaction_id": f"next-{user[:200]}"}
    answer = await api.post("/v1/events", event)
    assert answer.status == 200, answer.body


_JSON = {"content-type": "application/json"}


async def _scenario(pg_url: str, tmp_path: Path, space: SpaceKey, cases: list[Any]) -> None:
    forget_dead_members(pg_url)
    with trio.fail_after(300):
        await _cases(pg_url, tmp_path, space, cases)


async def _cases(pg_url: str, tmp_path: Path, space: SpaceKey, cases: list[Any]) -> None:
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
        assert await activate_demo(runtime.db, runtime.programs, space.space.id)
        api = Api(app_for(runtime), space.key)
        known: dict[str, dict[str, Any]] = {}
        for n, (user, name, obj, text) in enumerate(cases):
            user = user or "u"
            await _check_identify(api, user, obj, known)
            await _check_event(api, user, name or "e", f"{text[:200]}-{n}", obj)
            await _check_support(api, user, text or "r", text or "a", f"s{n}")
            await _check_config(api, n, text or "n", obj)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases=st.lists(st.tuples(texts, texts, objects, texts), min_size=8, max_size=15))
def test_whatever_is_accepted_is_stored_and_read_back(pg_url, tmp_path, cases):
    space = make_space(pg_url)
    trio.run(_scenario, pg_url, tmp_path, space, cases)


async def test_a_trait_beyond_float_range_keeps_the_profile_writable(api):
    body = (
        b'{"user_id": "u", "traits": {"n": 1e309, "m": 0.1, "big": 123456789012345678901234567890}}'
    )
    assert (await api.request("POST", "/v1/identify", data=body, headers=_JSON)).status == 200
    answer = await api.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "t"})
    assert answer.status == 200, answer.body
    traits = _exact((await api.get("/v1/profile/u")).raw)["traits"]
    assert traits == {
        "n": Decimal("1e309"),
        "m": Decimal("0.1"),
        "big": 123456789012345678901234567890,
    }


@given(text=st.text(max_size=30))
def test_a_limit_is_a_whole_number_within_the_bound_or_refused(text):
    try:
        value = parse_limit("events", text)
    except InvalidLimit:
        return
    assert value is None or 1 <= value <= MAX_LIMIT
    check_limits({"events": value})


@pytest.mark.parametrize("value", [0, -1, MAX_LIMIT + 1, 10**23])
def test_limits_beyond_the_bound_are_refused(value):
    with pytest.raises(InvalidLimit):
        check_limits({"events": value})
    with pytest.raises(InvalidLimit):
        parse_limit("events", str(value))


async def test_a_space_at_the_largest_limit_still_ingests(pg_url, api, space):
    with psycopg.connect(pg_url) as conn:
        space_store.set_limits(conn, space.slug, {"events": MAX_LIMIT, "profiles": MAX_LIMIT})
    answer = await api.post("/v1/events", {"user_id": "v", "event": "e", "transaction_id": "t"})
    assert answer.status == 200, answer.body


async def test_the_console_refuses_a_limit_beyond_the_bound(pg_url, runtime, space):
    from tests.perkamo.console.helpers import Browser, add_operator

    email, password = add_operator(pg_url, "limits", "admin")
    browser = Browser(app_for(runtime))
    assert (await browser.login(email, password)).status == 303
    form = {"events": "100000000000000000000000", "csrf_token": await browser.csrf()}
    page = await browser.post(f"/console/spaces/{space.slug}/limits", form)
    assert page.status == 303
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT limits FROM spaces WHERE id = %s", (space.space.id,)).fetchone()
    assert row is not None and "events" not in row[0]
