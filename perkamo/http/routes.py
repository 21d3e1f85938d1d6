"""The route table: every endpoint with its scope, the Struct its body decodes into, the
type it answers and its rate-limit cost (router.py); ``GET /openapi.json`` is generated
from it."""

from __future__ import annotations

from perkamo.errors import Code, PerkamoError
from perkamo.http import docs_page, openapi
from perkamo.http.admin_bodies import BacktestBody, ModulesUpload, ModuleUpload, SimulateBody
from perkamo.http.bodies import (
    AdjustBody,
    BatchBody,
    EventBody,
    EventReverseBody,
    IdentifyBody,
    RedeemBody,
    ReverseBody,
    TypedBatch,
)
from perkamo.http.browser_shapes import (
    BrowserKeyBody,
    BrowserKeyDocument,
    BrowserKeyList,
    BrowserKeyPatch,
    BrowserToken,
    BrowserTokenBody,
    ClientEventBody,
    ClientProfileDocument,
    ClientProgramDocument,
    Jwks,
)
from perkamo.http.edge import Plain, RawBody, Result
from perkamo.http.handlers import (
    browser,
    client,
    events,
    operations,
    profiles,
    program,
    rewards,
    support,
    trials,
)
from perkamo.http.responses import (
    AdjustResponse,
    BacktestDocument,
    BacktestList,
    BatchResponse,
    EventOutcome,
    EventReverseResponse,
    Health,
    IdentifyResponse,
    ModuleDescription,
    ModulesUploaded,
    ModuleUploaded,
    ProfileDocument,
    ProgramDocument,
    RedeemResponse,
    ReverseResponse,
    SimulateResponse,
    UsageResponse,
)
from perkamo.http.router import Route, Router, keyed, keyless
from perkamo.http.router import client as browser_call
from perkamo.program import MODULES

_BODY = (400, 413, 415)  # what any JSON body can meet at the edge and in its schema

# Every endpoint but the document itself (which is generated from these).
ROUTES: tuple[Route, ...] = (
    keyed("POST", "/v1/identify", events.identify, "events:write",
          "Create or update a profile", IdentifyBody, IdentifyResponse, _BODY),
    keyed("POST", "/v1/events", events.ingest_event, "events:write",
          "Record one event", EventBody, EventOutcome, _BODY),
    keyed("POST", "/v1/events:batch", events.ingest_batch, "events:write",
          "Record up to 100 events", BatchBody, BatchResponse, _BODY,
          cost=events.batch_cost, fast=TypedBatch),
    keyed("GET", "/v1/profile/{user_id}", profiles.profile, "profile:read",
          "Read a profile", None, ProfileDocument, (400, 404)),
    keyed("GET", "/v1/customer/{user_id}", profiles.profile, "profile:read",
          "Read a profile (alias)", None, ProfileDocument, (400, 404)),
    keyed("GET", "/v1/program", program.read_program, "profile:read",
          "The Space's program, integration status and metrics", None, ProgramDocument),
    keyed("GET", "/v1/usage", program.usage, "profile:read",
          "Usage meters of the current period", None, UsageResponse),
    keyed("POST", "/v1/rewards/redeem", rewards.redeem_reward, "rewards:redeem",
          "Redeem a reward", RedeemBody, RedeemResponse, (*_BODY, 404)),
    keyed("POST", "/v1/admin/config", program.upload_modules, "admin:config",
          "Upload (and activate) several modules", ModulesUpload, ModulesUploaded,
          (*_BODY, 404)),
    keyed("POST", "/v1/admin/config/{module}", program.upload_module, "admin:config",
          "Upload (and activate) one module", ModuleUpload, ModuleUploaded, (*_BODY, 404)),
    keyed("GET", "/v1/admin/config/{module}", program.read_module, "admin:config",
          "A module's versions and active body", None, ModuleDescription, (404,)),
    keyed("POST", "/v1/admin/simulate", trials.simulate_events, "admin:config",
          "Evaluate events on a profile without applying them", SimulateBody,
          SimulateResponse, (*_BODY, 404)),
    keyed("POST", "/v1/admin/backtests", trials.start_backtest, "admin:config",
          "Start a back-test of a candidate program over history", BacktestBody,
          BacktestDocument, (*_BODY, 404, 409), success=202),
    keyed("GET", "/v1/admin/backtests", trials.list_backtests, "admin:config",
          "The Space's back-tests, newest first", None, BacktestList),
    keyed("GET", "/v1/admin/backtests/{backtest_id}", trials.read_backtest, "admin:config",
          "One back-test: progress, then its report", None, BacktestDocument, (404,)),
    keyed("DELETE", "/v1/admin/backtests/{backtest_id}", trials.cancel_backtest,
          "admin:config", "Cancel a running back-test", None, BacktestDocument, (404,)),
    keyed("POST", "/v1/admin/adjustments", support.adjust, "admin:support",
          "Adjust a balance with a reason (support)", AdjustBody, AdjustResponse,
          (*_BODY, 404)),
    keyed("POST", "/v1/admin/redemptions/{transaction_id}/reverse", support.reverse_redemption,
          "admin:support", "Reverse a redemption (support)", ReverseBody, ReverseResponse,
          (*_BODY, 404)),
    keyed("POST", "/v1/admin/events/{transaction_id}/reverse", support.reverse_event,
          "admin:support", "Reverse an event: a return (support)", EventReverseBody,
          EventReverseResponse, (*_BODY, 404)),
    # The browser half (docs/api.md "The browser half"): browser keys, tokens, the client API, live
    # streams.
    keyed("POST", "/v1/admin/browser-keys", browser.create_key, "admin:config",
          "Create a browser key (its key is shown once)", BrowserKeyBody, BrowserKeyDocument,
          _BODY, success=201),
    keyed("GET", "/v1/admin/browser-keys", browser.list_keys, "admin:config",
          "The Space's browser keys, newest first", None, BrowserKeyList),
    keyed("PATCH", "/v1/admin/browser-keys/{browser_key_id}", browser.update_key,
          "admin:config", "Change a browser key's policy", BrowserKeyPatch, BrowserKeyDocument,
          (*_BODY, 404)),
    keyed("DELETE", "/v1/admin/browser-keys/{browser_key_id}", browser.revoke_key,
          "admin:config", "Revoke a browser key (its tokens stop working within a second)",
          None, BrowserKeyDocument, (404,)),
    keyed("POST", "/v1/browser-tokens", browser.mint_token, "browser:tokens",
          "Mint a browser token for a customer your backend vouches for", BrowserTokenBody,
          BrowserToken, _BODY),
    keyless("GET", "/.well-known/jwks.json", browser.jwks,
            "The public keys that verify browser tokens (JWKS)", Jwks),
    browser_call("GET", "/v1/client/profile", client.profile, "read",
                 "The token's customer's profile", None, ClientProfileDocument, (404,)),
    browser_call("GET", "/v1/client/program", client.program, "read",
                 "What a widget shows of the program", None, ClientProgramDocument),
    browser_call("POST", "/v1/client/events", client.track, "events",
                 "Record an event the browser key allows, for the token's customer",
                 ClientEventBody, EventOutcome, _BODY),
    browser_call("GET", "/v1/client/stream", client.stream, "stream",
                 "Server-Sent Events of the customer's profile (token in the query)", None,
                 "text/event-stream"),
    keyless("GET", "/v1/client/perkamo-browser.js", client.script,
            "The browser client (an ES module)", "text/javascript"),
    keyless("GET", "/healthz", operations.healthz, "The process is alive", Health),
    keyless("GET", "/readyz", operations.readyz, "Storage reachable, accepting work", Health,
            (503,)),
    keyless("GET", "/metrics", operations.metrics, "Prometheus metrics", "text/plain"),
    # The reference rendered in a browser from /openapi.json (docs_page.py); the response
    # is named by its media type.
    keyless("GET", "/docs", docs_page.page, "This API's reference", "text/html"),
    keyless("GET", "/docs/" + docs_page.RENDERER, docs_page.renderer,
            "The reference's renderer (Redoc, vendored)", "text/javascript"),
)  # fmt: skip


def _module(name: str) -> None:
    if name not in MODULES:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {name!r}.")


def build_router() -> Router:
    router = Router({"module": _module})

    async def serve_openapi(_: Plain) -> Result[RawBody]:
        return Result(document)  # the document rendered below, from every route

    summary = "This document (OpenAPI 3.1)"
    for route in (*ROUTES, keyless("GET", "/openapi.json", serve_openapi, summary,
                                   "application/json")):  # fmt: skip
        router.add(route)
    document = RawBody(openapi.render(router.routes), "application/json")
    return router
