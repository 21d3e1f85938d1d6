"""Every console URL (CONSOLE.md's table) and its view; ``mutates`` marks the admin-only
POSTs (the tests check every one refuses a viewer)."""

from __future__ import annotations

from quart import Response

from perkamo.console.core import Page, Route, redirect, url
from perkamo.console.views import auth, customers, events, operations, program, spaces


async def home(page: Page) -> Response:
    return redirect(url("/spaces"))


S = "/spaces/{slug}"

ROUTES: list[Route] = [
    Route("GET", "/login", auth.login_form, anonymous=True),
    Route("POST", "/login", auth.login, anonymous=True),
    Route("POST", "/logout", auth.logout),
    Route("GET", "/", home),
    Route("GET", "/spaces", spaces.spaces),
    Route("POST", "/spaces", spaces.create_space, mutates=True),
    Route("POST", S + "/limits", spaces.set_limits, mutates=True),
    Route("GET", S + "/keys", spaces.keys),
    Route("POST", S + "/keys", spaces.create_key, mutates=True),
    Route("POST", S + "/keys/{key_id}/rotate", spaces.rotate_key, mutates=True),
    Route("POST", S + "/keys/{key_id}/revoke", spaces.revoke_key, mutates=True),
    Route("GET", S + "/events", events.events),
    Route("GET", S + "/events/tail", events.tail),
    Route("GET", S + "/events/{transaction_id}", events.event),
    Route("GET", S + "/find", events.find),
    Route("GET", S + "/customers", customers.customers),
    Route("GET", S + "/customers/{user_id}", customers.customer),
    Route("POST", S + "/customers/{user_id}/adjust", customers.adjust, mutates=True),
    Route("POST", S + "/customers/{user_id}/reverse", customers.reverse, mutates=True),
    Route("GET", S + "/program", program.program),
    Route("POST", S + "/program/activate", program.activate, mutates=True),
    Route("GET", S + "/program/{module}", program.module),
    Route("POST", S + "/program/{module}", program.save_draft, mutates=True),
    Route("POST", S + "/program/{module}/try", program.try_event),
    Route("GET", S + "/backtests", operations.backtests),
    Route("POST", S + "/backtests", operations.start_backtest, mutates=True),
    Route("POST", S + "/backtests/{job_id}/cancel", operations.cancel_backtest, mutates=True),
    Route("GET", S + "/webhooks", operations.webhooks),
    Route("POST", S + "/webhooks/{delivery_id}/resend", operations.resend, mutates=True),
    Route("POST", S + "/webhooks/recover", operations.recover, mutates=True),
    Route("POST", S + "/webhooks/disable", operations.disable, mutates=True),
    Route("GET", S + "/usage", operations.usage),
    Route("GET", "/audit", operations.audit),
]
