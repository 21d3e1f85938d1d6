"""Events: the Space's writes newest first (filters, keyset pages, a live tail), one
event's whole outcome with its webhook deliveries and its reversal (a return: admins only,
with a reason, recorded in the audit log in the same commit), and finding any id."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from quart import Response

from perkamo.console.core import NotFound, Page, seg
from perkamo.errors import PerkamoError
from perkamo.program.timefmt import parse_rfc3339
from perkamo.usecases import support
from storage import browse
from storage import deliveries as delivery_store

PAGE = 50
STATUSES = ("applied", "duplicate", "refused")


def _filters(page: Page) -> tuple[browse.EventFilter, list[str]]:
    q = page.query
    problems: list[str] = []
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = q.get(name, "").strip()
        times[name] = None
        if text:
            try:
                times[name] = parse_rfc3339(text if "T" in text else text + "T00:00:00Z")
            except ValueError:
                problems.append(f"{name}: not a time (e.g. 2026-06-01T10:00:00Z)")
    status = q.get("status") if q.get("status") in STATUSES else None
    return browse.EventFilter(
        user_id=q.get("user_id") or None,
        event=q.get("event") or None,
        transaction_id=q.get("transaction_id") or None,
        status=status,
        since=times["since"],
        until=times["until"],
    ), problems


def _cursor(text: str | None) -> tuple[datetime, int] | None:
    """``<received_at ISO>~<seq>``: the last row of the previous page."""
    if not text or "~" not in text:
        return None
    at, _, seq = text.rpartition("~")
    try:
        return datetime.fromisoformat(at), int(seq)
    except ValueError:
        return None


async def events(page: Page) -> Response:
    assert page.space is not None
    filters, problems = _filters(page)
    rows = await page.runtime.db.run(
        browse.events_page, page.space.id, filters, _cursor(page.query.get("after")), PAGE + 1
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    after = f"{rows[-1].received_at.isoformat()}~{rows[-1].seq}" if more and rows else None
    kept = {
        k: v
        for k, v in page.query.items()
        if k in ("user_id", "event", "transaction_id", "status", "since", "until")
    }
    newest = f"{rows[0].received_at.isoformat()}~{rows[0].seq}" if rows else ""
    return page.render(
        "events.html",
        rows=rows,
        after=after,
        kept=kept,
        problems=problems,
        statuses=STATUSES,
        newest=newest,
        tail_rows=[],
    )


async def tail(page: Page) -> Response:
    """Rows newer than ``since`` (the newest one shown), for the live tail (htmx)."""
    assert page.space is not None
    filters, _ = _filters(page)
    newest = _cursor(page.query.get("newer_than"))
    rows = await page.runtime.db.run(browse.events_page, page.space.id, filters, None, PAGE)
    if newest is not None:
        rows = [r for r in rows if (r.received_at, r.seq) > newest]
    kept = {k: v for k, v in page.query.items() if k != "newer_than"}
    # Every row since the page was loaded (the mark stays), so the tail re-renders whole.
    return page.render(
        "event_tail.html", tail_rows=rows, newest=page.query.get("newer_than", ""), kept=kept
    )


async def event(page: Page) -> Response:
    assert page.space is not None
    transaction_id = page.params["transaction_id"]
    client = page.query.get("client") or None  # a browser-sent event: its customer
    found = await page.runtime.db.run(browse.event_detail, page.space.id, transaction_id, client)
    if found is None:
        raise NotFound(f"No applied event with transaction_id {transaction_id!r}.")
    deliveries = await page.runtime.db.run(
        delivery_store.deliveries_of, page.space.id, transaction_id
    )
    attempts = await page.runtime.db.run(delivery_store.attempts_of, [d.id for d in deliveries])
    return page.render(
        "event.html", event=found, outcome=found.outcome, deliveries=deliveries, attempts=attempts
    )


async def reverse(page: Page) -> Response:
    """Reverse the event (a return) through its profile's actor, like the API (docs/api.md
    "Support operations"); ``client`` in the form: a browser-sent event of that customer."""
    assert page.space is not None
    tx = page.params["transaction_id"]
    client = page.form.get("client") or None
    back = f"/spaces/{seg(page.space.slug)}/events/{seg(tx)}"
    if client is not None:
        back += "?" + urlencode({"client": client})
    reason = page.form.get("reason", "").strip()
    if not reason:
        return await page.back(
            back, error="Say why you reverse the event.", fields={"reason": "required"}
        )
    try:
        _, answer = await support.reverse_event(
            page.runtime, page.space.id, tx, reason=reason[:500], actor=page.operator,
            received_at=datetime.now(UTC), audit=page.operator,
            source="server" if client is None else "client", user_id=client,
        )  # fmt: skip
    except PerkamoError as exc:
        return await page.back(back, error=f"Not reversed: {exc}")
    if answer.duplicate:
        return await page.back(back, notice=f"Event {tx} was already reversed.")
    return await page.back(back, notice=f"Reversed event {tx}.")


async def find(page: Page) -> Response:
    assert page.space is not None
    q = page.query.get("q", "").strip()[:300]
    matches = await page.runtime.db.run(browse.find, page.space.id, q) if q else []
    kind = page.query.get("kind")
    if kind:  # a link that knows what it names (a delivery's subject: its event type)
        matches = [m for m in matches if m.kind == kind] or matches
    base = f"/spaces/{seg(page.space.slug)}"

    def link(m: browse.Match) -> str:
        if m.kind == "event":
            return f"{base}/events/{seg(m.key)}"
        if m.kind in ("redemption", "adjustment") and m.user_id is not None:
            anchor = f"tx-{m.key}" + ("-adjustment" if m.kind == "adjustment" else "")
            return f"{base}/customers/{seg(m.user_id)}#{quote(anchor)}"
        if m.kind == "delivery":
            return f"{base}/webhooks/{seg(m.key)}"
        if m.kind == "customers":
            return f"{base}/customers?{urlencode({'q': m.key})}"
        if m.kind == "customer":
            return f"{base}/customers/{seg(m.key)}"
        return f"{base}/events?{urlencode({'transaction_id': m.key})}"  # a refused attempt

    if len(matches) == 1 and matches[0].kind != "attempt":
        return page.redirect(link(matches[0]))
    return page.render("find.html", q=q, matches=[(m, link(m)) for m in matches])
