"""The quart-trio application: one catch-all view hands every request to the edge, which
routes on the raw path (see router.py)."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from perkamo.http.edge import MAX_BODY_BYTES, Observability, handle
from perkamo.http.routes import build_router
from perkamo.runtime import Runtime

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(runtime: Runtime, metrics: Observability) -> QuartTrio:
    app = QuartTrio("perkamo")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # The connection sweeper bounds a request's arrival (connections.py); Quart's own body
    # timeout would answer a bare 500 after 60 s.
    app.config["BODY_TIMEOUT"] = None
    router = build_router()

    async def dispatch(path: str = "") -> Response:
        return await handle(runtime, metrics, router, request)

    for rule, endpoint in (("/", "root"), ("/<path:path>", "any")):
        app.add_url_rule(
            rule, endpoint, dispatch, methods=_METHODS, provide_automatic_options=False
        )

    @app.errorhandler(HTTPException)
    async def refused_by_quart(exc: HTTPException) -> Response:
        # Quart's own router refuses what our raw-path router may accept (an encoded control
        # character in a user id, an unusual method): let the edge decide, as for any request.
        return await handle(runtime, metrics, router, request)

    return app
