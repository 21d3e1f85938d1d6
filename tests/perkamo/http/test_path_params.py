"""Path parameters are validated by one rule on every route, API and console alike:
percent-encoded UTF-8 without control characters, else 400 ``validation_error`` naming the
parameter (a ``%00`` in a back-test id once reached PostgreSQL and answered 500)."""

from __future__ import annotations

import re

import pytest

from perkamo.http.routes import ROUTES
from tests.api_client import app_for
from tests.perkamo.console.helpers import Browser, add_operator

_PARAM = re.compile(r"\{(\w+)\}")
WITH_PARAMS = [r for r in ROUTES if _PARAM.search(r.pattern) and r.scope is not None]
BAD = ["%00", "a%07b", "%7F", "x%C2%85", "%0A"]


def test_routes_with_parameters_exist():
    assert {p for r in WITH_PARAMS for p in _PARAM.findall(r.pattern)} >= {
        "user_id", "transaction_id", "module", "backtest_id"
    }  # fmt: skip


@pytest.mark.parametrize("route", WITH_PARAMS, ids=lambda r: f"{r.method} {r.pattern}")
@pytest.mark.parametrize("bad", BAD)
async def test_control_characters_in_a_path_parameter_are_refused(api, route, bad):
    name = _PARAM.search(route.pattern).group(1)  # type: ignore[union-attr]
    path = _PARAM.sub(lambda m: bad if m.group(1) == name else "x", route.pattern)
    body = {"reason": "r"} if route.method == "POST" else None
    answer = await api.request(route.method, path, json=body)
    assert answer.status == 400, (path, answer.body)
    assert answer.body["error"] == "validation_error"
    assert answer.body["details"][0]["path"] == name


@pytest.mark.parametrize("bad", BAD)
async def test_the_console_answers_such_a_path_with_its_404_page(pg_url, runtime, space, bad):
    email, password = add_operator(pg_url, "paths", "viewer")
    browser = Browser(app_for(runtime))
    assert (await browser.login(email, password)).status == 303
    for path in (f"/console/spaces/{bad}/keys", f"/console/spaces/{space.slug}/customers/{bad}",
                 f"/console/spaces/{space.slug}/events/{bad}"):  # fmt: skip
        page = await browser.get(path)
        assert page.status == 404, (path, page.text[:300])
