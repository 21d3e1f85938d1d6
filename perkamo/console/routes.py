"""Every console URL (docs/operations.md (the console)'s table) and its view; ``mutates`` marks the
admin-only POSTs (the tests check every one refuses a viewer)."""

from __future__ import annotations

from quart import Response

from perkamo.console.core import Page, Route, redirect, url
from perkamo.console.views import (
    analytics,
    auth,
    browser_keys,
    customers,
    events,
    operations,
    program,
    program_forms,
    spaces,
    webhooks,
)


async def home(page: Page) -> Response:
    return redirect(url("/spaces"))


S = "/spaces/{slug}"
H = S + "/webhooks"
P = S + "/program"

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
    Route("POST", S + "/browser-keys", browser_keys.create, mutates=True),
    Route("POST", S + "/browser-keys/{key_id}/revoke", browser_keys.revoke, mutates=True),
    Route("GET", S + "/events", events.events),
    Route("GET", S + "/live", events.tail),
    Route("GET", S + "/events/{transaction_id}", events.event),
    Route("POST", S + "/events/{transaction_id}/reverse", events.reverse, mutates=True),
    Route("GET", S + "/find", events.find),
    Route("GET", S + "/customers", customers.customers),
    Route("GET", S + "/customers.csv", customers.export),
    Route("GET", S + "/customers/{user_id}", customers.customer),
    Route("POST", S + "/customers/{user_id}/adjust", customers.adjust, mutates=True),
    Route("POST", S + "/customers/{user_id}/reverse", customers.reverse, mutates=True),
    Route("GET", S + "/analytics", analytics.analytics),
    Route("GET", P, program.program),
    Route("GET", P + "/review", program.review),
    Route("POST", P + "/activate", program.activate, mutates=True),
    Route("GET", P + "/rules", program_forms.rules),
    Route("GET", P + "/rules/edit", program_forms.rule_form),
    Route("POST", P + "/rules/save", program_forms.save_rule, mutates=True),
    Route("POST", P + "/rules/try", program_forms.try_rule),
    Route("POST", P + "/rules/change", program_forms.change_rule, mutates=True),
    Route("GET", P + "/wallets", program_forms.wallets),
    Route("GET", P + "/wallets/edit", program_forms.item_form),
    Route("POST", P + "/wallets/save", program_forms.save_item, mutates=True),
    Route("POST", P + "/wallets/change", program_forms.change_item, mutates=True),
    Route("GET", P + "/{module}", program.module),
    Route("POST", P + "/{module}", program.save_draft, mutates=True),
    Route("POST", P + "/{module}/try", program.try_event),
    Route("GET", S + "/backtests", operations.backtests),
    Route("POST", S + "/backtests", operations.start_backtest, mutates=True),
    Route("POST", S + "/backtests/{job_id}/cancel", operations.cancel_backtest, mutates=True),
    Route("GET", H, webhooks.webhooks),
    Route("POST", H + "/endpoint", webhooks.save_endpoint, mutates=True),
    Route("POST", H + "/enable", webhooks.enable, mutates=True),
    Route("POST", H + "/disable", webhooks.disable, mutates=True),
    Route("POST", H + "/rotate-secret", webhooks.rotate_secret, mutates=True),
    Route("POST", H + "/test", webhooks.send_test, mutates=True),
    Route("POST", H + "/recover", webhooks.recover, mutates=True),
    Route("GET", H + "/{delivery_id}", webhooks.delivery),
    Route("POST", H + "/{delivery_id}/resend", webhooks.resend, mutates=True),
    Route("GET", S + "/usage", operations.usage),
    Route("GET", "/audit", operations.audit),
]
