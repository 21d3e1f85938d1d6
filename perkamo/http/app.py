"""The quart-trio application: one catch-all view hands every request to the edge, which
routes on the raw path (see router.py)."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..errors import MethodNotAllowed, NotFound, PerkamoError
from ..runtime import Runtime
from . import handlers
from .edge import MAX_BODY_BYTES, error_response, handle, new_request_id
from .router import Router

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_router() -> Router:
    r = Router()
    r.add("POST", "/v1/identify", handlers.identify, "events:write")
    r.add("POST", "/v1/events", handlers.ingest_event, "events:write")
    r.add("POST", "/v1/events:batch", handlers.ingest_batch, "events:write")
    r.add("GET", "/v1/profile/{user_id}", handlers.profile, "profile:read")
    r.add("GET", "/v1/customer/{user_id}", handlers.profile, "profile:read")
    r.add("POST", "/v1/browser-tokens", handlers.not_supported, None)
    for method in ("GET", "POST"):
        for depth in range(1, 5):
            r.add(method, "/v1/client" + "/*" * depth, handlers.not_supported, None)
    r.add("GET", "/healthz", handlers.healthz, None)
    r.add("GET", "/readyz", handlers.readyz, None)
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
    async def http_error(exc: HTTPException) -> Response:
        # Only reached for requests Quart refuses before our view runs (an unusual method).
        request_id = new_request_id(request.headers.get("x-request-id"))
        error: PerkamoError
        try:
            router.match(request.method, request.scope.get("raw_path") or b"/")
            error = NotFound("No such endpoint.")
        except PerkamoError as routed:
            error = routed
        if exc.code == 405 and not isinstance(error, MethodNotAllowed):
            error = MethodNotAllowed("This method is not allowed here.")
        return error_response(error, request_id)

    return app
