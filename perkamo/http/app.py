"""The quart-trio application: one catch-all view hands every request to the edge, which
routes on the raw path (see router.py)."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..runtime import Runtime
from . import handlers
from .edge import MAX_BODY_BYTES, handle
from .router import Router

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_router() -> Router:
    r = Router()
    r.add("POST", "/v1/identify", handlers.identify, "events:write")
    r.add("POST", "/v1/events", handlers.ingest_event, "events:write")
    r.add("POST", "/v1/events:batch", handlers.ingest_batch, "events:write")
    r.add("GET", "/v1/profile/{user_id}", handlers.profile, "profile:read")
    r.add("GET", "/v1/customer/{user_id}", handlers.profile, "profile:read")
    r.add("GET", "/v1/program", handlers.read_program, "profile:read")
    r.add("GET", "/v1/usage", handlers.usage, "profile:read")
    r.add("POST", "/v1/rewards/redeem", handlers.redeem_reward, "rewards:redeem")
    r.add("POST", "/v1/admin/config", handlers.upload_modules, "admin:config")
    r.add("POST", "/v1/admin/config/{module}", handlers.upload_module, "admin:config")
    r.add("GET", "/v1/admin/config/{module}", handlers.read_module, "admin:config")
    r.add("POST", "/v1/browser-tokens", handlers.not_supported, None)
    for method in ("GET", "POST"):
        for depth in range(1, 5):
            r.add(method, "/v1/client" + "/*" * depth, handlers.not_supported, None)
    r.add("GET", "/healthz", handlers.healthz, None)
    r.add("GET", "/readyz", handlers.readyz, None)
    r.add("GET", "/metrics", handlers.metrics, None)
    return r


def create_app(runtime: Runtime) -> QuartTrio:
    app = QuartTrio("perkamo")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    router = build_router()

    async def dispatch(path: str = "") -> Response:
        return await handle(runtime, router, request)

    for rule, endpoint in (("/", "root"), ("/<path:path>", "any")):
        app.add_url_rule(
            rule, endpoint, dispatch, methods=_METHODS, provide_automatic_options=False
        )

    @app.errorhandler(HTTPException)
    async def refused_by_quart(exc: HTTPException) -> Response:
        # Quart's own router refuses what our raw-path router may accept (an encoded control
        # character in a user id, an unusual method): let the edge decide, as for any request.
        return await handle(runtime, router, request)

    return app
