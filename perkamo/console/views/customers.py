"""Customers: the list with balances and levels (search by user id prefix, by any trait
value, or ``trait=value``; CSV export), one customer's whole profile, ledger and balance
chart, and the support actions (adjust a balance, reverse a redemption; admins only,
recorded in the audit log in the same commit)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import msgspec
from quart import Response

from perkamo.console.charts import Series, line_chart
from perkamo.console.core import NotFound, Page, seg
from perkamo.console.export import csv_response
from perkamo.console.views.events import _cursor
from perkamo.errors import PerkamoError
from perkamo.http.profile_document import profile_document
from perkamo.profiles.commands import Read
from perkamo.program import ProfileState, Program
from perkamo.program.levels import level_number
from perkamo.usecases import support
from storage import browse

PAGE = 50
EXPORT_LIMIT = 100_000
CHART_POINTS = 200


def _search(page: Page) -> tuple[str, str | None, tuple[str, object] | None]:
    """(the query as typed, a user id prefix or trait value, or ``trait=value``)."""
    q = page.query.get("q", "").strip()[:256]
    name, equals, value = q.partition("=")
    if equals and name.strip() and " " not in name.strip():
        return q, None, (name.strip().removeprefix("traits."), _trait_value(value.strip()))
    return q, q or None, None


def _after(page: Page) -> tuple[datetime, str] | None:
    at, _, user = page.query.get("after", "").partition("~")
    try:
        return (datetime.fromisoformat(at), user) if at else None
    except ValueError:
        return None


def level_of(wallets: object, program: Program) -> tuple[int, str] | None:
    """(level, tier name) from a profile's stored wallets, as the engine derives it."""
    if program.leveling is None:
        return None
    state = msgspec.convert({"wallets": wallets or {}}, ProfileState, strict=False)
    number = level_number(state, program)
    names = {lv.level: lv.name for lv in program.leveling.levels}
    return number, names.get(number) or f"Level {number}"


async def customers(page: Page) -> Response:
    assert page.space is not None
    q, text, trait = _search(page)
    rows = await page.runtime.db.run(
        browse.customers_page, page.space.id, text, trait, _after(page), PAGE + 1
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    next_after = f"{rows[-1].updated_at.isoformat()}~{rows[-1].user_id}" if more else None
    program = await page.runtime.programs.get(page.space.id)
    levels = {r.user_id: level_of(r.wallets, program) for r in rows}
    return page.render(
        "customers.html", rows=rows, q=q, after=next_after, levels=levels, wallets=program.wallets
    )


async def export(page: Page) -> Response:
    """The filtered list as CSV (every match, newest first, up to EXPORT_LIMIT rows)."""
    assert page.space is not None
    _, text, trait = _search(page)
    program = await page.runtime.programs.get(page.space.id)
    wallets = [w.key for w in program.wallets]
    header = [
        "user_id",
        *(f"{w}_balance" for w in wallets),
        *(f"{w}_earned" for w in wallets),
        "level",
        "level_name",
        "traits",
        "created_at",
        "last_active_at",
    ]
    lines: list[list[str]] = [header]
    after: tuple[datetime, str] | None = None
    while len(lines) <= EXPORT_LIMIT:
        rows = await page.runtime.db.run(
            browse.customers_page, page.space.id, text, trait, after, 1000
        )
        for r in rows:
            found = r.wallets or {}
            level = level_of(found, program)
            lines.append(
                [
                    r.user_id,
                    *(str(found.get(w, {}).get("balance", 0)) for w in wallets),
                    *(str(found.get(w, {}).get("earned", 0)) for w in wallets),
                    str(level[0]) if level else "",
                    level[1] if level else "",
                    msgspec.json.encode(r.traits).decode(),
                    r.created_at.isoformat(),
                    r.updated_at.isoformat(),
                ]
            )
        if len(rows) < 1000:
            break
        after = (rows[-1].updated_at, rows[-1].user_id)
    name = f"{page.space.slug}-customers-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return csv_response(lines[: EXPORT_LIMIT + 1], name)


def _trait_value(text: str) -> object:
    """``plan=premium`` is a string; numbers and true/false/null are themselves."""
    lowered = {"true": True, "false": False, "null": None}
    if text in lowered:
        return lowered[text]
    try:
        return int(text)
    except ValueError:
        try:
            return Decimal(text) if any(c.isdigit() for c in text) else text
        except InvalidOperation:
            return text


async def customer(page: Page) -> Response:
    assert page.space is not None
    user_id = page.params["user_id"]
    view = await page.runtime.gateway.ask(
        (page.space.id, user_id), Read(received_at=datetime.now(UTC))
    )
    if view is None:
        raise NotFound(f"No customer {user_id!r} in {page.space.slug}.")
    program = await page.runtime.programs.get(page.space.id)
    document = profile_document(page.space.slug, user_id, view, program, datetime.now(UTC))
    before = _cursor(page.query.get("before"))
    ledger = await page.runtime.db.run(browse.ledger_page, page.space.id, user_id, before, PAGE + 1)
    more = len(ledger) > PAGE
    ledger = ledger[:PAGE]
    older = f"{ledger[-1].received_at.isoformat()}~{ledger[-1].seq}" if more else None
    history = await page.runtime.db.run(
        browse.balance_history, page.space.id, user_id, CHART_POINTS
    )
    names = {w.key: w.name for w in program.wallets}
    series = [
        Series(names.get(w, w), [(at, Decimal(str(s[w]))) for at, s in history if w in s])
        for w in sorted({w for _, s in history for w in s})
    ]
    chart = line_chart("Balance over time", series, "received", "balance")
    tiers = list(program.leveling.levels) if program.leveling else []
    return page.render(
        "customer.html",
        user_id=user_id,
        doc=document,
        ledger=ledger,
        older=older,
        wallets=program.wallets,
        chart=chart,
        tiers=tiers,
        state=view.state,
        leveling=program.leveling,
        new_tx=f"console-{datetime.now(UTC):%Y%m%d%H%M%S%f}",
    )


def _back(page: Page) -> str:
    assert page.space is not None
    return f"/spaces/{seg(page.space.slug)}/customers/{seg(page.params['user_id'])}"


async def adjust(page: Page) -> Response:
    """Adjust a balance through the profile's actor, like the API (docs/api.md (support
    operations)); the audit row is written by the same commit."""
    assert page.space is not None
    user_id, form = page.params["user_id"], page.form
    reason = form.get("reason", "").strip()
    fields: dict[str, str] = {}
    try:
        amount = Decimal(form.get("amount", "").strip())
        if not amount.is_finite() or amount == 0:
            raise InvalidOperation
    except InvalidOperation:
        fields["amount"] = "a non-zero number, e.g. 200 or -50"
        amount = Decimal(0)
    if not reason:
        fields["reason"] = "say why (the customer's history shows it)"
    tx = form.get("transaction_id") or ""
    if not tx:
        fields["amount"] = "the form expired; reload the page"
    if fields:
        return await page.back(
            _back(page), error="The adjustment was not made.", fields=fields, keep=True
        )
    wallet = form.get("wallet", "")
    try:
        await support.adjust(
            page.runtime, page.space.id, user_id, wallet=wallet, amount=amount,
            reason=reason[:500], transaction_id=tx,
            counts_toward_level=form.get("counts_toward_level") == "on", actor=page.operator,
            received_at=datetime.now(UTC), audit=page.operator,
        )  # fmt: skip
    except PerkamoError as exc:
        return await page.back(
            _back(page),
            error=f"The adjustment was not made: {exc}",
            keep=True,
            fields={"amount": str(exc)},
        )
    return await page.back(_back(page), notice=f"Adjusted {wallet} by {amount:+f}.")


async def reverse(page: Page) -> Response:
    assert page.space is not None
    user_id = page.params["user_id"]
    tx = page.form.get("redemption", "")
    reason = page.form.get("reason", "").strip()
    if not reason:
        return await page.back(
            _back(page),
            error="Say why you reverse the redemption.",
            fields={f"reason:{tx}": "required"},
        )
    try:
        await support.reverse_redemption(
            page.runtime, page.space.id, tx, reason=reason[:500], actor=page.operator,
            received_at=datetime.now(UTC), audit=page.operator, user_id=user_id,
        )  # fmt: skip
    except PerkamoError as exc:
        return await page.back(_back(page), error=f"Not reversed: {exc}")
    return await page.back(_back(page), notice=f"Reversed redemption {tx}.")
