"""Spaces and their secret keys."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from quart import Response

from perkamo.access import admin
from perkamo.access.keys import SCOPES
from perkamo.access.limits import LIMIT_NAMES, InvalidLimit, parse_limit
from perkamo.console import security
from perkamo.console.core import Page, seg
from perkamo.console.views import browser_keys
from storage import browse
from storage import console as audit_store
from storage import spaces as space_store
from storage.database import Conn

GRACE = {"now": 0, "1h": 3600, "1d": 86400, "7d": 7 * 86400}
LIMITS = LIMIT_NAMES


async def spaces(page: Page) -> Response:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await page.runtime.db.run(browse.space_summaries, today)
    return page.render("spaces.html", spaces=rows, limits=LIMITS)


async def create_space(page: Page) -> Response:
    slug = page.form.get("slug", "").strip()
    name = page.form.get("name", "").strip() or slug
    environment = page.form.get("environment", "test")

    def create(conn: Conn) -> str:
        space = admin.create_space(conn, slug, name, environment)
        audit_store.audit(conn, page.operator, "space.create", space.id, slug)
        return space.slug

    try:
        created = await page.runtime.db.run(create)
    except (admin.AdminError, psycopg.errors.UniqueViolation, psycopg.errors.CheckViolation) as exc:
        message = "That slug is taken." if isinstance(exc, psycopg.Error) else str(exc)
        return await page.back(
            "/spaces", error=f"Space not created: {message}.", keep=True, fields={"slug": message}
        )
    return await page.back(f"/spaces/{seg(created)}/keys", notice=f"Space {created} created.")


async def set_limits(page: Page) -> Response:
    assert page.space is not None
    changes: dict[str, int | None] = {}
    try:
        for name in LIMITS:
            changes[name] = parse_limit(name, page.form.get(name, ""))
    except InvalidLimit as exc:
        return await page.back("/spaces", error=f"A limit is a whole number ≥ 1, or empty: {exc}")
    space = page.space

    def apply(conn: Conn) -> None:
        space_store.set_limits(conn, space.slug, changes)
        audit_store.audit(
            conn, page.operator, "space.limits", space.id, space.slug, details={"limits": changes}
        )

    await page.runtime.db.run(apply)
    return await page.back("/spaces", notice=f"Limits of {space.slug} saved.")


async def keys(page: Page) -> Response:
    assert page.space is not None
    rows = await page.runtime.db.run(browse.keys_of, page.space.id)
    created = page.flash.get("secret")  # shown once: the flash is gone on the next page
    token = page.request.cookies.get(security.SESSION_COOKIE, "")
    key = security.unseal(token, created["sealed"]) if created else None
    return page.render(
        "keys.html",
        keys=rows,
        scopes=SCOPES,
        now=datetime.now(UTC),
        grace=GRACE,
        created=(created["id"], key) if created and key else None,
        **await browser_keys.listing(page),
    )


async def create_key(page: Page) -> Response:
    assert page.space is not None
    chosen = [s for s in SCOPES if page.form.get(f"scope:{s}")] or None
    space = page.space

    def create(conn: Conn) -> tuple[str, str]:
        key_id, secret = admin.create_key(conn, space, chosen)
        audit_store.audit(
            conn,
            page.operator,
            "key.create",
            space.id,
            key_id,
            details={"scopes": chosen or list(SCOPES)},
        )
        return key_id, secret

    key_id, secret = await page.runtime.db.run(create)
    # The key rides in the session's flash to the next GET (post-redirect-get: a refresh
    # shows the list, never creates a second key), and is gone once shown.
    return await page.back(f"/spaces/{seg(space.slug)}/keys", secret=_sealed(page, key_id, secret))


async def rotate_key(page: Page) -> Response:
    assert page.space is not None
    key_id, reason = page.params["key_id"], page.form.get("reason", "").strip()
    grace = GRACE.get(page.form.get("grace", "now"), 0)
    back = f"/spaces/{seg(page.space.slug)}/keys"
    if not reason:
        return await page.back(back, error="Say why you rotate the key (a reason).")
    space = page.space

    def rotate(conn: Conn) -> tuple[str, str]:
        record = _owned(conn, space.id, key_id)
        if record.revoked_at is not None:
            when = record.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
            raise admin.AdminError(f"Key {key_id} was already rotated: it stops working {when}.")
        new = admin.rotate_key(conn, key_id, grace)
        audit_store.audit(
            conn,
            page.operator,
            "key.rotate",
            space.id,
            key_id,
            reason,
            {"new_key": new[0], "grace_seconds": grace},
        )
        return new

    try:
        new_id, secret = await page.runtime.db.run(rotate)
    except admin.AdminError as exc:
        return await page.back(back, error=str(exc))
    return await page.back(
        back, notice=f"Key {key_id} rotated.", secret=_sealed(page, new_id, secret)
    )


async def revoke_key(page: Page) -> Response:
    assert page.space is not None
    key_id, reason = page.params["key_id"], page.form.get("reason", "").strip()
    back = f"/spaces/{seg(page.space.slug)}/keys"
    if not reason:
        return await page.back(back, error="Say why you revoke the key (a reason).")
    space = page.space

    def revoke(conn: Conn) -> None:
        _owned(conn, space.id, key_id)
        space_store.revoke_key(conn, key_id)
        audit_store.audit(conn, page.operator, "key.revoke", space.id, key_id, reason)

    try:
        await page.runtime.db.run(revoke)
    except admin.AdminError as exc:
        return await page.back(back, error=str(exc))
    return await page.back(back, notice=f"Key {key_id} revoked.")


def _sealed(page: Page, key_id: str, secret: str) -> dict[str, str]:
    token = page.request.cookies.get(security.SESSION_COOKIE, "")
    return {"id": key_id, "sealed": security.seal(token, secret)}


def _owned(conn: Conn, space_id: int, key_id: str) -> space_store.KeyRecord:
    record = space_store.get_key(conn, key_id)
    if record is None or record.space_id != space_id:
        raise admin.AdminError(f"This Space has no key {key_id!r}.")
    return record
