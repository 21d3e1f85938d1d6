"""Browser keys in the console's Secret keys screen (docs/api.md "The browser half"): create one
with its origins, events and capabilities (its key shown once), and revoke one — through the same
use cases as the API and the CLI, each with its audit row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from quart import Response

from perkamo.access.browser_keys import CAPABILITIES, PolicyError
from perkamo.console.core import Page, seg
from perkamo.usecases import browser
from storage.browser_keys import BrowserKeyRecord
from storage.database import Conn


class Listing(TypedDict):
    """The Secret keys screen's browser-key part of the template context."""

    browser_keys: list[BrowserKeyRecord]
    browser_created: object  # the flash {id, key} of a key just created, else None
    capabilities: tuple[str, ...]


async def listing(page: Page) -> Listing:
    """What the Secret keys screen shows of browser keys."""
    assert page.space is not None
    records = await page.runtime.db.run(browser.list_keys, page.space.id)
    created = page.flash.get("browser_key")  # shown once (public, but shown once anyway)
    return {
        "browser_keys": records,
        "browser_created": created,
        "capabilities": CAPABILITIES,
    }


def _given(form: Mapping[str, str]) -> dict[str, object]:
    origins = [o.strip() for o in form.get("origins", "").splitlines() if o.strip()]
    events = [e.strip() for e in form.get("events", "").split(",") if e.strip()]
    given: dict[str, object] = {
        "name": form.get("name", "").strip(),
        "allowed_origins": origins,
        "allowed_events": events,
        "capabilities": {c: bool(form.get(f"capability:{c}")) for c in CAPABILITIES},
    }
    rate, burst = form.get("per_second", "").strip(), form.get("burst", "").strip()
    if rate or burst:
        try:
            given["rate"] = {"per_second": float(rate or 5), "burst": int(burst or 20)}
        except ValueError:
            raise PolicyError("rate", "a number of events per second and a whole burst") from None
    return given


async def create(page: Page) -> Response:
    assert page.space is not None
    space = page.space
    back = f"/spaces/{seg(space.slug)}/keys"
    try:
        given = _given(page.form)

        def make(conn: Conn) -> tuple[BrowserKeyRecord, str]:
            made = browser.create_key(conn, space.id, space.environment, given, page.operator)
            return made.record, made.key

        record, key = await page.runtime.db.run(make)
    except PolicyError as exc:
        return await page.back(back, error=f"Browser key not created: {exc}", keep=True)
    return await page.back(
        back,
        notice=f"Browser key {record.id} created.",
        browser_key={"id": record.id, "key": key},
    )


async def revoke(page: Page) -> Response:
    assert page.space is not None
    space, key_id = page.space, page.params["key_id"]
    back = f"/spaces/{seg(space.slug)}/keys"
    record = await page.runtime.db.run(browser.revoke_key, space.id, key_id, page.operator)
    if record is None:
        return await page.back(back, error=f"This Space has no browser key {key_id!r}.")
    return await page.back(
        back, notice=f"Browser key {key_id} revoked: its tokens stop working within a second."
    )
