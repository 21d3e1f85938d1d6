"""The route table: every endpoint with its scope and the msgspec types of its bodies, from
which ``GET /openapi.json`` is generated."""

from __future__ import annotations

from perkamo.http import docs_page, handlers, openapi, requests, responses
from perkamo.http.edge import RawBody
from perkamo.http.router import Route, Router

_PREVIEW = "Not offered (a Perkamo preview feature)"


_BODY = (400, 413, 415)  # what any JSON body can meet at the edge and in its schema

# Every endpoint but the document itself (which is generated from these).
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/identify",
        handlers.identify,
        "events:write",
        "Create or update a profile",
        requests.IdentifyBody,
        responses.IdentifyResponse,
        _BODY,
    ),
    Route(
        "POST",
        "/v1/events",
        handlers.ingest_event,
        "events:write",
        "Record one event",
        requests.EventBody,
        responses.EventOutcome,
        _BODY,
        fast=requests.typed(requests.EventBody),
    ),
    Route(
        "POST",
        "/v1/events:batch",
        handlers.ingest_batch,
        "events:write",
        "Record up to 100 events",
        requests.BatchBody,
        responses.BatchResponse,
        _BODY,
        fast=requests.typed(requests.TypedBatch),
    ),
    Route(
        "GET",
        "/v1/profile/{user_id}",
        handlers.profile,
        "profile:read",
        "Read a profile",
        None,
        responses.ProfileDocument,
        (400, 404),
    ),
    Route(
        "GET",
        "/v1/customer/{user_id}",
        handlers.profile,
        "profile:read",
        "Read a profile (alias)",
        None,
        responses.ProfileDocument,
        (400, 404),
    ),
    Route(
        "GET",
        "/v1/program",
        handlers.read_program,
        "profile:read",
        "The Space's program, integration status and metrics",
        None,
        responses.ProgramDocument,
    ),
    Route(
        "GET",
        "/v1/usage",
        handlers.usage,
        "profile:read",
        "Usage meters of the current period",
        None,
        responses.UsageResponse,
    ),
    Route(
        "POST",
        "/v1/rewards/redeem",
        handlers.redeem_reward,
        "rewards:redeem",
        "Redeem a reward",
        requests.RedeemBody,
        responses.RedeemResponse,
        (*_BODY, 404),
        fast=requests.typed(requests.RedeemBody),
    ),
    Route(
        "POST",
        "/v1/admin/config",
        handlers.upload_modules,
        "admin:config",
        "Upload (and activate) several modules",
        requests.ModulesUpload,
        responses.ModulesUploaded,
        (*_BODY, 404),
    ),
    Route(
        "POST",
        "/v1/admin/config/{module}",
        handlers.upload_module,
        "admin:config",
        "Upload (and activate) one module",
        requests.ModuleUpload,
        responses.ModuleUploaded,
        (*_BODY, 404),
    ),
    Route(
        "GET",
        "/v1/admin/config/{module}",
        handlers.read_module,
        "admin:config",
        "A module's versions and active body",
        None,
        responses.ModuleDescription,
        (404,),
    ),
    Route(
        "POST",
        "/v1/admin/simulate",
        handlers.simulate_events,
        "admin:config",
        "Evaluate events on a profile without applying them",
        requests.SimulateBody,
        responses.SimulateResponse,
        (*_BODY, 404),
    ),
    Route(
        "POST",
        "/v1/admin/backtests",
        handlers.start_backtest,
        "admin:config",
        "Start a back-test of a candidate program over history",
        requests.BacktestBody,
        responses.BacktestDocument,
        (*_BODY, 404, 409),
        success=202,
    ),
    Route(
        "GET",
        "/v1/admin/backtests",
        handlers.list_backtests,
        "admin:config",
        "The Space's back-tests, newest first",
        None,
        responses.BacktestList,
    ),
    Route(
        "GET",
        "/v1/admin/backtests/{backtest_id}",
        handlers.read_backtest,
        "admin:config",
        "One back-test: progress, then its report",
        None,
        responses.BacktestDocument,
        (404,),
    ),
    Route(
        "DELETE",
        "/v1/admin/backtests/{backtest_id}",
        handlers.cancel_backtest,
        "admin:config",
        "Cancel a running back-test",
        None,
        responses.BacktestDocument,
        (404,),
    ),
    Route(
        "POST",
        "/v1/admin/adjustments",
        handlers.adjust,
        "admin:support",
        "Adjust a balance with a reason (support)",
        requests.AdjustBody,
        responses.AdjustResponse,
        (*_BODY, 404),
    ),
    Route(
        "POST",
        "/v1/admin/redemptions/{transaction_id}/reverse",
        handlers.reverse_redemption,
        "admin:support",
        "Reverse a redemption (support)",
        requests.ReverseBody,
        responses.ReverseResponse,
        (*_BODY, 404),
    ),
    *(
        Route(method, path, handlers.not_supported, None, _PREVIEW, errors=(501,))
        for method, path in [
            ("POST", "/v1/browser-tokens"),
            *((m, "/v1/client" + "/*" * depth) for m in ("GET", "POST") for depth in range(1, 5)),
        ]
    ),
    Route(
        "GET",
        "/healthz",
        handlers.healthz,
        None,
        "The process is alive",
        None,
        responses.Health,
    ),
    Route(
        "GET",
        "/readyz",
        handlers.readyz,
        None,
        "Storage reachable, accepting work",
        None,
        responses.Health,
        (503,),
    ),
    Route("GET", "/metrics", handlers.metrics, None, "Prometheus metrics", None, str),
    # The reference rendered in a browser from /openapi.json (docs_page.py); the response
    # is named by its media type.
    Route("GET", "/docs", docs_page.page, None, "This API's reference", None, "text/html"),
    Route(
        "GET",
        "/docs/" + docs_page.RENDERER,
        docs_page.renderer,
        None,
        "The reference's renderer (Redoc, vendored)",
        None,
        "text/javascript",
    ),
)


def build_router() -> Router:
    router = Router()

    async def serve_openapi(_: object) -> tuple[int, RawBody]:
        return 200, document  # the document rendered below, from every route

    summary = "This document (OpenAPI 3.1)"
    for route in (*ROUTES, Route("GET", "/openapi.json", serve_openapi, None, summary, None, dict)):
        router.add(route)
    document = RawBody(openapi.render(router.routes), "application/json")
    return router
