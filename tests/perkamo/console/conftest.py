"""What the console's in-process tests share: a logged-in admin with the demo program
uploaded, and no webhook delivery left due for another test's dispatcher."""

from __future__ import annotations

import psycopg
import pytest

from tests.api_client import Api, app_for
from tests.perkamo.console.helpers import Browser, add_operator
from tests.server_process import demo_program


@pytest.fixture
async def console(runtime, pg_url, space):
    """(a browser logged in as a new admin, the Space's API) with the demo program active."""
    email, password = add_operator(pg_url, "admin", "admin")
    browser = Browser(app_for(runtime))
    assert (await browser.login(email, password)).status == 303
    api = Api(app_for(runtime), space.key)
    assert (await api.post("/v1/admin/config", demo_program())).status == 200
    browser.email = email  # type: ignore[attr-defined]
    return browser, api


@pytest.fixture(autouse=True)
def no_deliveries_left(request, pg_url):
    """Tests point webhooks at closed ports: settle their Space's deliveries so that no
    other test's dispatcher finds them due (the database is shared)."""
    space = request.getfixturevalue("space") if "space" in request.fixturenames else None
    yield
    if space is None:
        return
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed'"
            " WHERE space_id = %s AND status IN ('pending', 'retrying')",
            (space.space.id,),
        )
