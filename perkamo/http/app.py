"""The quart-trio application: one catch-all view hands every request to the edge, which
routes on the raw path (see router.py)."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart.routing import QuartMap
from quart.wrappers import BaseRequestWebsocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from perkamo.console import ROUTES, Console
from perkamo.http import client_edge
from perkamo.http.demo_page import DemoPage
from perkamo.http.edge import MAX_BODY_BYTES, Observability, handle
from perkamo.http.routes import build_router
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _EveryRequest:
    """Binds every request to the one catch-all rule: the edge routes on the raw path itself
    (router.py). Werkzeug's matcher builds a self-referencing closure per request — cyclic
    garbage (a function, five cells and a set) that only the collector frees; under load it
    was most of what each young-generation collection walked (bench/notes.md)."""

    def __init__(self, rule: Rule) -> None:
        self._rule = rule

    def match(
        self, *args: object, return_rule: bool = False, **kwargs: object
    ) -> tuple[Rule | str, JsonObject]:
        return (self._rule if return_rule else self._rule.endpoint), {}


class _CatchAllMap(QuartMap):
    # An _EveryRequest where quart expects a MapAdapter: it has the one method quart calls.
    def bind_to_request(
        self, request: BaseRequestWebsocket, subdomain: str | None, server_name: str | None
    ) -> Any:
        return _EveryRequest(self._rules_by_endpoint["any"][0])


class _App(QuartTrio):
    url_map_class = _CatchAllMap


def create_app(runtime: Runtime, metrics: Observability, demo: DemoPage | None = None) -> QuartTrio:
    """``demo``: ``perkamo serve --demo`` also serves the live widget's page (/demo/)."""
    app = _App("perkamo")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # The connection sweeper bounds a request's arrival (connections.py); Quart's own body
    # timeout would answer a bare 500 after 60 s.
    app.config["BODY_TIMEOUT"] = None
    router = build_router()
    console = Console(runtime, ROUTES)

    async def dispatch(path: str = "") -> Response:
        raw = request.scope.get("raw_path") or b"/"
        if raw == b"/console" or raw.startswith(b"/console/"):
            return await console.handle(request)
        if raw.startswith(
            b"/v1/client/"
        ):  # browser calls: tokens and CORS (docs/api.md "The browser half")
            return await handle(runtime, metrics, router, request, client_edge.dispatch)
        if demo is not None and demo.serves(raw):
            return await demo.handle(request)
        return await handle(runtime, metrics, router, request)

    app.add_url_rule(
        "/<path:path>", "any", dispatch, methods=_METHODS, provide_automatic_options=False
    )

    @app.errorhandler(HTTPException)
    async def refused_by_quart(exc: HTTPException) -> Response:
        # Quart's own router refuses what our raw-path router may accept (an encoded control
        # character in a user id, an unusual method): let the edge decide, as for any request.
        return await dispatch()

    return app
