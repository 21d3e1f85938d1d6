"""The webhook inspector: the endpoint's real health (the breaker included), deliveries
filtered by status and type, one page per delivery (headers and payload as sent, every
attempt with its answer), and the endpoint's life: add, edit, enable, disable (with a
reason), rotate the signing secret (24 h of both signatures), send a test event, resend,
recover."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import msgspec
from quart import Response

from perkamo.access import admin
from perkamo.console import security
from perkamo.console.core import NotFound, Page, pretty, seg
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import parse_rfc3339
from perkamo.webhooks import new_secret, test_delivery
from storage import console as audit_store
from storage import deliveries as delivery_store
from storage import webhooks as hook_store
from storage.database import Conn

T = TypeVar("T")

PAGE = 50
OVERLAP = timedelta(hours=24)  # both secrets sign for this long after a rotation
_decoder = msgspec.json.Decoder(float_hook=Decimal)


def _base(page: Page) -> str:
    assert page.space is not None
    return f"/spaces/{seg(page.space.slug)}/webhooks"


async def webhooks(page: Page) -> Response:
    assert page.space is not None
    space_id, now = page.space.id, datetime.now(UTC)
    endpoint = (await page.runtime.db.run(hook_store.endpoints, [space_id])).get(space_id)
    status = page.query.get("status") or None
    status = status if status in delivery_store.STATUSES else None
    event_type = (page.query.get("type") or "").strip()[:128] or None
    after = None
    if "~" in page.query.get("after", ""):
        at, _, key = page.query["after"].partition("~")
        try:
            after = (datetime.fromisoformat(at), key)
        except ValueError:
            after = None
    rows = await page.runtime.db.run(
        delivery_store.deliveries_page, space_id, status, event_type, after, PAGE + 1
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    health = await page.runtime.db.run(delivery_store.health, space_id, now, now - OVERLAP)
    types = await page.runtime.db.run(delivery_store.event_types, space_id)
    secret = page.flash.get("secret")
    token = page.request.cookies.get(security.SESSION_COOKIE, "")
    return page.render(
        "webhooks.html",
        endpoint=endpoint,
        rows=rows,
        health=health,
        now=now,
        state=endpoint_state(endpoint, now),
        statuses=delivery_store.STATUSES,
        types=types,
        chosen_status=status or "",
        event_type=event_type or "",
        older=f"{rows[-1].created_at.isoformat()}~{rows[-1].id}" if more else None,
        new_secret=security.unseal(token, secret) if secret else None,
    )


def endpoint_state(endpoint: hook_store.Endpoint | None, now: datetime) -> str:
    """``none``, ``disabled``, ``paused`` (the breaker: unreachable) or ``enabled``."""
    if endpoint is None:
        return "none"
    if not endpoint.enabled:
        return "disabled"
    if endpoint.paused_until is not None and endpoint.paused_until > now:
        return "paused"
    return "enabled"


async def delivery(page: Page) -> Response:
    assert page.space is not None
    found = await page.runtime.db.run(
        delivery_store.delivery, page.space.id, page.params["delivery_id"]
    )
    if found is None:
        raise NotFound(f"No delivery {page.params['delivery_id']!r} in {page.space.slug}.")
    record, body = found
    attempts = await page.runtime.db.run(delivery_store.attempts_of, [record.id])
    now = datetime.now(UTC)
    endpoint = (await page.runtime.db.run(hook_store.endpoints, [page.space.id])).get(page.space.id)
    try:
        shown = pretty(_decoder.decode(body.encode()))
    except msgspec.DecodeError:
        shown = body
    return page.render(
        "delivery.html",
        d=record,
        body=body,
        shown=shown,
        attempts=attempts,
        endpoint=endpoint,
        now=now,
        state=endpoint_state(endpoint, now),
        subject_kind=_subject_kind(record.event_type),
    )


def _subject_kind(event_type: str) -> str:
    """What a delivery's subject (a transaction id) names, for the Find link."""
    if event_type in ("reward.redeemed", "redemption.reversed"):
        return "redemption"
    if event_type == "adjustment.created":
        return "adjustment"
    return "event"


async def _audited(
    page: Page,
    action: str,
    change: Callable[[Conn], T],
    target: str | None = None,
    reason: str | None = None,
    details: JsonObject | None = None,
) -> T:
    """Run ``change(conn)`` and its audit row in one transaction."""
    assert page.space is not None
    space_id = page.space.id

    def apply(conn: Conn) -> T:
        done = change(conn)
        if done:
            audit_store.audit(conn, page.operator, action, space_id, target, reason, details)
        return done

    return await page.runtime.db.run(apply)


async def save_endpoint(page: Page) -> Response:
    """Add the endpoint (a new secret, shown once) or change its URL (the secret stays)."""
    assert page.space is not None
    space, url = page.space, page.form.get("url", "").strip()
    try:
        admin.check_webhook_url(space, url)
    except admin.AdminError as exc:
        return await page.back(
            _base(page), error=f"Not saved: {exc}.", keep=True, fields={"url": str(exc)}
        )
    existing = (await page.runtime.db.run(hook_store.endpoints, [space.id])).get(space.id)
    if existing is not None:
        await _audited(page, "webhook.edit", lambda c: hook_store.set_url(c, space.id, url), url)
        page.runtime.webhooks.forget_breaker(space.id)
        return await page.back(_base(page), notice="Endpoint URL saved; the secret is unchanged.")
    secret = await _audited(
        page, "webhook.set", lambda c: admin.set_webhook(c, space.slug, url), url
    )
    return await page.back(_base(page), notice="Endpoint added.", secret=_sealed(page, secret))


async def rotate_secret(page: Page) -> Response:
    assert page.space is not None
    space_id, reason = page.space.id, page.form.get("reason", "").strip()
    if not reason:
        return await page.back(_base(page), error="Say why you rotate the secret (a reason).")
    secret = new_secret()
    done = await _audited(
        page,
        "webhook.rotate_secret",
        lambda c: hook_store.rotate_secret(c, space_id, secret, OVERLAP),
        None,
        reason,
    )
    if not done:
        return await page.back(_base(page), error="There is no endpoint to rotate.")
    return await page.back(
        _base(page),
        secret=_sealed(page, secret),
        notice="New signing secret: for 24 h deliveries carry both signatures.",
    )


async def disable(page: Page) -> Response:
    assert page.space is not None
    space_id, reason = page.space.id, page.form.get("reason", "").strip()
    if not reason:
        return await page.back(
            _base(page),
            error="Say why you disable the endpoint (a reason).",
            fields={"reason": "required"},
        )
    await _audited(
        page,
        "webhook.disable",
        lambda c: hook_store.disable_endpoint(c, space_id, reason[:500]),
        None,
        reason,
    )
    return await page.back(_base(page), notice="Webhook disabled: nothing is sent until enabled.")


async def enable(page: Page) -> Response:
    assert page.space is not None
    space_id = page.space.id
    await _audited(page, "webhook.enable", lambda c: hook_store.enable_endpoint(c, space_id))
    page.runtime.webhooks.forget_breaker(space_id)
    page.runtime.webhooks.kick()
    return await page.back(_base(page), notice="Webhook enabled; waiting deliveries go out now.")


async def send_test(page: Page) -> Response:
    assert page.space is not None
    space = page.space
    row = test_delivery(
        {"slug": space.slug, "name": space.name, "environment": space.environment},
        space.id,
        datetime.now(UTC),
    )

    def queue(conn: Conn) -> bool:
        hook_store.queue_delivery(
            conn, row.id, row.space_id, row.event_type, row.body, row.created_at
        )
        return True

    await _audited(page, "webhook.test", queue, row.id)
    page.runtime.webhooks.kick()
    return await page.back(f"{_base(page)}/{seg(row.id)}", notice="Test event queued.")


async def resend(page: Page) -> Response:
    assert page.space is not None
    delivery_id, space_id = page.params["delivery_id"], page.space.id
    done = await _audited(
        page,
        "webhook.resend",
        lambda c: delivery_store.resend(c, space_id, delivery_id),
        delivery_id,
    )
    page.runtime.webhooks.kick()
    if not done:
        return await page.back(_base(page), error=f"No delivery {delivery_id}.")
    return await page.back(
        f"{_base(page)}/{seg(delivery_id)}", notice=f"Delivery {delivery_id} queued again."
    )


async def recover(page: Page) -> Response:
    assert page.space is not None
    space_id = page.space.id
    try:
        since = parse_rfc3339(page.form.get("since", "").strip())
    except ValueError:
        return await page.back(
            _base(page),
            error="since: not a time (e.g. 2026-11-01T00:00:00Z)",
            keep=True,
            fields={"since": "not a time"},
        )

    def requeue(conn: Conn) -> int:
        count = delivery_store.recover_failed(conn, space_id, since)
        audit_store.audit(
            conn,
            page.operator,
            "webhook.recover",
            space_id,
            None,
            None,
            {"since": since.isoformat(), "requeued": count},
        )
        return count

    count = await page.runtime.db.run(requeue)
    page.runtime.webhooks.kick()
    return await page.back(_base(page), notice=f"{count} failed deliveries queued again.")


def _sealed(page: Page, secret: str) -> str:
    return security.seal(page.request.cookies.get(security.SESSION_COOKIE, ""), secret)
