"""Customers: search, one customer's whole profile and ledger, and the support actions
(adjust a balance, reverse a redemption; admins only, recorded in the audit log)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from quart import Response

from perkamo.console.core import NotFound, Page, seg
from perkamo.console.views.events import _cursor
from perkamo.errors import PerkamoError
from perkamo.http.profile_document import profile_document
from perkamo.profiles.commands import Read
from perkamo.usecases import support
from storage import browse

PAGE = 50


async def customers(page: Page) -> Response:
    assert page.space is not None
    q = page.query.get("q", "").strip()[:256]
    prefix, trait = (None, None)
    if "=" in q:
        name, _, value = q.partition("=")
        trait = (name.strip().removeprefix("traits."), _trait_value(value.strip()))
    elif q:
        prefix = q
    after = None
    if page.query.get("after"):
        at, _, user = page.query["after"].partition("~")
        try:
            after = (datetime.fromisoformat(at), user)
        except ValueError:
            after = None
    rows = await page.runtime.db.run(
        browse.customers_page, page.space.id, prefix, trait, after, PAGE + 1
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    next_after = f"{rows[-1].updated_at.isoformat()}~{rows[-1].user_id}" if more else None
    return page.render("customers.html", rows=rows, q=q, after=next_after)


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


async def customer(page: Page, notice: str | None = None, error: str | None = None) -> Response:
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
    return page.render(
        "customer.html", user_id=user_id, doc=document, ledger=ledger, older=older,
        wallets=program.wallets, notice=notice or page.query.get("notice"),
        error=error or page.query.get("error"),
    )  # fmt: skip


async def adjust(page: Page) -> Response:
    assert page.space is not None
    user_id = page.params["user_id"]
    form = page.form
    reason = form.get("reason", "").strip()
    try:
        amount = Decimal(form.get("amount", "").strip())
    except InvalidOperation:
        return await customer(page, error="The amount is not a number.")
    if not reason:
        return await customer(page, error="Say why (a reason).")
    tx = form.get("transaction_id") or ""
    if not tx:
        return await customer(page, error="The form expired; reload the page.")
    wallet = form.get("wallet", "")
    try:
        await support.adjust(
            page.runtime, page.space.id, user_id, wallet=wallet, amount=amount,
            reason=reason[:500], transaction_id=tx,
            counts_toward_level=form.get("counts_toward_level") == "on", actor=page.operator,
            received_at=datetime.now(UTC), audit=page.operator,
        )  # fmt: skip
    except PerkamoError as exc:
        return await customer(page, error=str(exc))
    return page.redirect(f"/spaces/{seg(page.space.slug)}/customers/{seg(user_id)}",
                         notice=f"Adjusted {wallet} by {amount}.")  # fmt: skip


async def reverse(page: Page) -> Response:
    assert page.space is not None
    user_id = page.params["user_id"]
    tx = page.form.get("redemption", "")
    reason = page.form.get("reason", "").strip()
    if not reason:
        return await customer(page, error="Say why (a reason).")
    try:
        await support.reverse_redemption(
            page.runtime, page.space.id, tx, reason=reason[:500], actor=page.operator,
            received_at=datetime.now(UTC), audit=page.operator, user_id=user_id,
        )  # fmt: skip
    except PerkamoError as exc:
        return await customer(page, error=str(exc))
    return page.redirect(f"/spaces/{seg(page.space.slug)}/customers/{seg(user_id)}",
                         notice=f"Reversed redemption {tx}.")  # fmt: skip
