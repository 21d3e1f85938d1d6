"""``perkamo serve --demo``: ``/demo/``, a live points widget for a demo customer of the demo
Space — the browser flow end to end. The page's "backend" is ``/demo/token``: like a shop's
own backend it mints browser tokens with its server key (here, the demo Space's key) for the
customer it vouches for (here, always ``demo_customer``); the page then calls
``/v1/client/*`` through ``perkamo-browser.js`` and watches the profile live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from quart import Request, Response

from perkamo.errors import PerkamoError
from perkamo.http.browser_shapes import BrowserTokenBody
from perkamo.http.edge import error_response, json_response
from perkamo.http.errors import new_request_id
from perkamo.runtime import Runtime
from perkamo.usecases.browser import mint

DEMO_CUSTOMER = "demo_customer"


@dataclass(frozen=True, slots=True)
class DemoPage:
    runtime: Runtime
    api_key: str  # the demo Space's server key: it never leaves the server
    browser_key: str
    customer: str = DEMO_CUSTOMER

    def serves(self, raw_path: bytes) -> bool:
        return raw_path in (b"/demo", b"/demo/", b"/demo/token")

    async def handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or b"/"
        if raw == b"/demo":
            return Response(b"", status=308, headers={"location": "/demo/"})
        if raw == b"/demo/token":
            return await self._token(request)
        page = _PAGE.replace("{browser_key}", self.browser_key).replace("{customer}", self.customer)
        return Response(page, status=200, content_type="text/html; charset=utf-8")

    async def _token(self, request: Request) -> Response:
        request_id = new_request_id(None)
        stream = request.args.get("purpose") == "stream"
        try:
            record, _ = await self.runtime.auth.authenticate(self.api_key)
            purpose: Literal["client", "stream"] = "stream" if stream else "client"
            body = BrowserTokenBody(self.browser_key, self.customer, None, purpose)
            token = await mint(self.runtime, record, body)
        except PerkamoError as exc:
            return error_response(exc, request_id)
        answer = json_response(200, token, request_id)
        answer.headers["cache-control"] = "no-store"
        return answer


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Perkamo — live points widget (demo)</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; background: #f4f5f7; margin: 0;
         display: flex; min-height: 100vh; align-items: center; justify-content: center; }
  .widget { background: #fff; border-radius: 14px; box-shadow: 0 6px 24px #0002;
            padding: 28px 36px; min-width: 300px; }
  .who { color: #667; font-size: 14px; }
  .points { font-size: 56px; font-weight: 700; margin: 8px 0 0; color: #1d3b8b; }
  .unit { font-size: 18px; color: #667; font-weight: 400; }
  .level { margin: 6px 0 14px; color: #334; }
  .bar { height: 10px; border-radius: 5px; background: #e3e6ee; overflow: hidden; }
  .bar > div { height: 100%; background: #3a66e0; width: 0; transition: width .4s; }
  .last { margin-top: 14px; font-size: 14px; color: #556; min-height: 1.4em; }
  .state { margin-top: 6px; font-size: 12px; color: #889; }
  .flash { animation: flash 1s; }
  @keyframes flash { from { color: #2c9a47; } to { color: #1d3b8b; } }
</style></head>
<body>
<div class="widget">
  <div class="who">Signed in as <b>{customer}</b></div>
  <div class="points" id="points">–</div>
  <div class="level" id="level">&nbsp;</div>
  <div class="bar"><div id="progress"></div></div>
  <div class="last" id="last">&nbsp;</div>
  <div class="state" id="state">connecting…</div>
</div>
<script type="module">
import { PerkamoBrowser } from "/v1/client/perkamo-browser.js";

const token = (purpose) =>
  fetch("/demo/token" + (purpose ? "?purpose=" + purpose : "")).then((r) => r.json());
const perkamo = new PerkamoBrowser({
  baseUrl: location.origin,
  browserKey: "{browser_key}",
  getToken: () => token(),
  getStreamToken: () => token("stream"),
});
const $ = (id) => document.getElementById(id);

function showPoints(amount) {
  const el = $("points");
  el.innerHTML = `${Number(amount || 0).toLocaleString()} <span class="unit">points</span>`;
  el.dataset.points = String(amount || 0);
  el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
}
function showLevel(level) {
  if (!level) { $("level").textContent = ""; return; }
  const next = level.nextLevelAt == null ? "top level" : `next at ${level.nextLevelAt}`;
  $("level").textContent = `Level ${level.level} · ${next}`;
  $("progress").style.width = Math.round(Number(level.progress) * 100) + "%";
}
perkamo.subscribe(
  (profile) => {
    $("state").textContent = "live";
    showPoints(profile ? profile.wallets.points : 0);
    showLevel(profile ? profile.level : null);
  },
  (change) => {
    showPoints(change.wallet_state.points);
    showLevel(change.level);
    const gained = (change.delta || [])
      .map((d) => `${d.amount > 0 ? "+" : ""}${d.amount} ${d.wallet}`).join(", ");
    $("last").textContent = (change.event || change.type) + (gained ? ": " + gained : "");
  },
);
</script>
</body></html>
"""
