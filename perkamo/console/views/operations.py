"""Back-tests, usage and the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from quart import Response

from perkamo.console.charts import Chart, bar_chart
from perkamo.console.core import Page, seg
from perkamo.errors import PerkamoError
from perkamo.program import MODULES
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import parse_rfc3339
from storage import backtests as backtest_store
from storage import browse
from storage import config as config_store
from storage import console as audit_store
from storage.config import ConfigVersion
from storage.database import Conn

PAGE = 50


async def backtests(page: Page) -> Response:
    assert page.space is not None
    jobs = await page.runtime.db.run(backtest_store.list_jobs, page.space.id, 20)
    stored, active = await page.runtime.db.run(_versions, page.space.id)
    running = any(j.status == "running" for j in jobs)
    return page.render("backtests.html", jobs=jobs, stored=stored, active=active, running=running)


def _versions(conn: Conn, space_id: int) -> tuple[dict[str, list[ConfigVersion]], dict[str, str]]:
    active = {r.module: r.version for r in config_store.active_versions(conn, space_id)}
    return {m: config_store.list_versions(conn, space_id, m) for m in MODULES}, active


async def start_backtest(page: Page) -> Response:
    assert page.space is not None
    chosen = {m: v for m in MODULES if (v := page.form.get(f"module:{m}", "").strip())}
    back = f"/spaces/{seg(page.space.slug)}/backtests"
    _, active = await page.runtime.db.run(_versions, page.space.id)
    if not any(active.get(m) != v for m, v in chosen.items()):
        return await page.back(
            back,
            keep=True,
            error="Choose a draft (a version that is not "
            "active) for at least one module: a back-test of the active "
            "program would compare it with itself.",
        )
    bounds: list[datetime | None] = []
    for name in ("from", "to"):
        text = page.form.get(name, "").strip()
        try:
            bounds.append(parse_rfc3339(text) if text else None)
        except ValueError:
            return await page.back(
                back,
                keep=True,
                fields={name: "not a time"},
                error=f"{name}: not a time (e.g. 2026-11-01T00:00:00Z)",
            )
    try:
        job = await page.runtime.backtests.start(page.space.id, chosen, bounds[0], bounds[1])
    except PerkamoError as exc:
        return await page.back(back, error=str(exc), keep=True)
    space = page.space
    await page.runtime.db.run(
        audit_store.audit,
        page.operator,
        "backtest.start",
        space.id,
        job.id,
        None,
        {"program": chosen},
    )
    return await page.back(back, notice=f"Back-test {job.id} started.")


async def cancel_backtest(page: Page) -> Response:
    assert page.space is not None
    back = f"/spaces/{seg(page.space.slug)}/backtests"
    try:
        await page.runtime.backtests.cancel(page.space.id, page.params["job_id"])
    except PerkamoError as exc:
        return await page.back(back, error=str(exc))
    await page.runtime.db.run(
        audit_store.audit, page.operator, "backtest.cancel", page.space.id, page.params["job_id"]
    )
    return await page.back(back, notice=f"Back-test {page.params['job_id']} cancelled.")


async def usage(page: Page) -> Response:
    assert page.space is not None
    now = datetime.now(UTC)
    limits = await page.runtime.db.run(_limits, page.space.id)
    meters = await page.runtime.usage.meters(page.space.id, now, limits)
    start = meters.start.date()
    days = await page.runtime.db.run(browse.daily_usage, page.space.id, start, meters.end.date())
    chart = _chart(start, meters.end.date(), days)
    return page.render("usage.html", meters=meters, chart=chart)


def _limits(conn: Conn, space_id: int) -> JsonObject:
    row = conn.execute("SELECT limits FROM spaces WHERE id = %s", (space_id,)).fetchone()
    return dict(row[0]) if row else {}


def _chart(start: date, end: date, days: dict[date, dict[str, int]]) -> Chart:
    """Daily events this period, as bars with axes."""
    span = (end - start).days
    bars = [
        (start + timedelta(d), Decimal(days.get(start + timedelta(d), {}).get("events", 0)))
        for d in range(span)
    ]
    return bar_chart("Events per day", bars, "day (UTC)", "events")


KINDS = ("login", "space.", "key.", "program.", "customer.", "webhook.", "backtest.", "operator.")


async def audit(page: Page) -> Response:
    q = page.query
    before = q.get("before")
    before_id = int(before) if before and before.isdigit() else None
    times: dict[str, datetime | None] = {}
    problems: list[str] = []
    for name in ("since", "until"):
        text = q.get(name, "").strip()
        try:
            times[name] = (
                parse_rfc3339(text if "T" in text else text + "T00:00:00Z") if text else None
            )
        except ValueError:
            times[name] = None
            problems.append(f"{name}: not a time (e.g. 2026-06-01 or 2026-06-01T10:00:00Z)")
    filters = audit_store.AuditFilter(
        actor=q.get("actor", "").strip() or None,
        space_slug=q.get("space", "").strip() or None,
        action=q.get("kind", "").strip() or None,
        since=times["since"],
        until=times["until"],
    )
    rows = await page.runtime.db.run(audit_store.audit_entries, filters, before_id, PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    kept = {k: q.get(k, "") for k in ("actor", "space", "kind", "since", "until")}
    return page.render(
        "audit.html",
        rows=rows,
        older=rows[-1].id if more else None,
        kept=kept,
        kinds=KINDS,
        problems=problems,
    )
