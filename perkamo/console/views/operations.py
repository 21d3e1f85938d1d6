"""Back-tests, webhooks, usage and the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from quart import Response

from perkamo.console.core import Page, seg
from perkamo.errors import PerkamoError
from perkamo.program import MODULES
from perkamo.program.timefmt import parse_rfc3339
from storage import backtests as backtest_store
from storage import browse
from storage import config as config_store
from storage import console as audit_store
from storage import webhooks as hook_store

Conn = psycopg.Connection[Any]
PAGE = 50


async def backtests(page: Page, error: str | None = None) -> Response:
    assert page.space is not None
    jobs = await page.runtime.db.run(backtest_store.list_jobs, page.space.id, 20)
    stored = await page.runtime.db.run(_versions, page.space.id)
    running = any(j.status == "running" for j in jobs)
    return page.render("backtests.html", jobs=jobs, stored=stored, running=running,
                       error=error or page.query.get("error"))  # fmt: skip


def _versions(conn: Conn, space_id: int) -> dict[str, list[Any]]:
    return {m: config_store.list_versions(conn, space_id, m) for m in MODULES}


async def start_backtest(page: Page) -> Response:
    assert page.space is not None
    chosen = {m: v for m in MODULES if (v := page.form.get(f"module:{m}", "").strip())}
    bounds: list[datetime | None] = []
    for name in ("from", "to"):
        text = page.form.get(name, "").strip()
        try:
            bounds.append(parse_rfc3339(text) if text else None)
        except ValueError:
            return await backtests(page, f"{name}: not a time (e.g. 2026-11-01T00:00:00Z)")
    try:
        job = await page.runtime.backtests.start(page.space.id, chosen, bounds[0], bounds[1])
    except PerkamoError as exc:
        return await backtests(page, str(exc))
    space = page.space
    await page.runtime.db.run(audit_store.audit, page.operator, "backtest.start", space.id, job.id,
                              None, {"program": chosen})  # fmt: skip
    return page.redirect(f"/spaces/{seg(page.space.slug)}/backtests")


async def cancel_backtest(page: Page) -> Response:
    assert page.space is not None
    try:
        await page.runtime.backtests.cancel(page.space.id, page.params["job_id"])
    except PerkamoError as exc:
        return await backtests(page, str(exc))
    await page.runtime.db.run(audit_store.audit, page.operator, "backtest.cancel",
                              page.space.id, page.params["job_id"])  # fmt: skip
    return page.redirect(f"/spaces/{seg(page.space.slug)}/backtests")


async def webhooks(page: Page, notice: str | None = None) -> Response:
    assert page.space is not None
    space_id = page.space.id
    endpoint = (await page.runtime.db.run(hook_store.endpoints, [space_id])).get(space_id)
    after = None
    if page.query.get("after") and "~" in page.query["after"]:
        at, _, key = page.query["after"].partition("~")
        try:
            after = (datetime.fromisoformat(at), key)
        except ValueError:
            after = None
    rows = await page.runtime.db.run(browse.deliveries_page, space_id, after, PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    attempts = await page.runtime.db.run(browse.attempts_of, [d.id for d in rows])
    older = f"{rows[-1].created_at.isoformat()}~{rows[-1].id}" if more else None
    return page.render("webhooks.html", endpoint=endpoint, rows=rows, attempts=attempts,
                       older=older, highlight=page.query.get("delivery"),
                       notice=notice or page.query.get("notice"))  # fmt: skip


async def resend(page: Page) -> Response:
    assert page.space is not None
    delivery_id, space_id = page.params["delivery_id"], page.space.id

    def requeue(conn: Conn) -> bool:
        done = browse.resend(conn, space_id, delivery_id)
        if done:
            audit_store.audit(conn, page.operator, "webhook.resend", space_id, delivery_id)
        return done

    done = await page.runtime.db.run(requeue)
    page.runtime.webhooks.kick()
    notice = f"Delivery {delivery_id} queued again." if done else "No such delivery."
    return page.redirect(f"/spaces/{seg(page.space.slug)}/webhooks", notice=notice)


async def recover(page: Page) -> Response:
    assert page.space is not None
    space_id = page.space.id
    try:
        since = parse_rfc3339(page.form.get("since", "").strip())
    except ValueError:
        return await webhooks(page, "since: not a time (e.g. 2026-11-01T00:00:00Z)")

    def requeue(conn: Conn) -> int:
        count = browse.recover_failed(conn, space_id, since)
        audit_store.audit(conn, page.operator, "webhook.recover", space_id, None, None,
                          {"since": since.isoformat(), "requeued": count})  # fmt: skip
        return count

    count = await page.runtime.db.run(requeue)
    page.runtime.webhooks.kick()
    return page.redirect(f"/spaces/{seg(page.space.slug)}/webhooks",
                         notice=f"{count} failed deliveries queued again.")  # fmt: skip


async def disable(page: Page) -> Response:
    assert page.space is not None
    space_id = page.space.id

    def off(conn: Conn) -> None:
        hook_store.disable_endpoint(conn, space_id)
        audit_store.audit(conn, page.operator, "webhook.disable", space_id)

    await page.runtime.db.run(off)
    return page.redirect(f"/spaces/{seg(page.space.slug)}/webhooks", notice="Webhook disabled.")


async def usage(page: Page) -> Response:
    assert page.space is not None
    now = datetime.now(UTC)
    limits = await page.runtime.db.run(_limits, page.space.id)
    meters = await page.runtime.usage.meters(page.space.id, now, limits)
    start = meters.start.date()
    days = await page.runtime.db.run(browse.daily_usage, page.space.id, start, meters.end.date())
    chart = _chart(start, meters.end.date(), days)
    return page.render("usage.html", meters=meters, chart=chart)


def _limits(conn: Conn, space_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT limits FROM spaces WHERE id = %s", (space_id,)).fetchone()
    return dict(row[0]) if row else {}


def _chart(start: date, end: date, days: dict[date, dict[str, int]]) -> dict[str, Any]:
    """Daily events as SVG bars (drawn on the server: no script, no inline style)."""
    span = (end - start).days
    values = [days.get(start + timedelta(d), {}).get("events", 0) for d in range(span)]
    top = max(values) or 1
    width, height, gap = 22, 160, 4
    bars = [
        {"x": i * width + gap, "h": round(v / top * (height - 20)), "v": v,
         "day": (start + timedelta(i)).day}
        for i, v in enumerate(values)
    ]  # fmt: skip
    return {"bars": bars, "width": span * width + gap, "height": height, "bar": width - gap,
            "top": top}  # fmt: skip


async def audit(page: Page) -> Response:
    before = page.query.get("before")
    before_id = int(before) if before and before.isdigit() else None
    rows = await page.runtime.db.run(audit_store.audit_entries, before_id, PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return page.render("audit.html", rows=rows, older=rows[-1].id if more else None)
